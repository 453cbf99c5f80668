package sim

import (
	"fmt"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/vsr"
)

// host is one simulated machine: a replica, its disk and the state machine
// it applies committed ops to.
type host struct {
	id uint64
	w  *world

	// Disk: survives crashes unless wiped.
	log      []*kmblog.Op
	hs       vsr.HardState
	hasState bool

	up        bool
	wiped     bool // lost its disk and has not recovered yet
	restartAt int
	r         *vsr.Replica

	// Memory: lost at every crash and rebuilt from the disk.
	applied uint64
	kv      map[string]string
	table   map[uint64]tableEntry // client → last request applied
	waiting map[[2]uint64]bool    // (client, request) proposed here
}

type tableEntry struct {
	request uint64
	result  string
}

// storage serves the replica's reads from the host's disk.
type storage struct{ h *host }

func (s storage) Read(op uint64) (kmblog.Op, error) {
	if op == 0 || op > uint64(len(s.h.log)) {
		return kmblog.Op{}, fmt.Errorf("sim: op %d not on disk (%d ops)", op, len(s.h.log))
	}
	return *s.h.log[op-1], nil
}

func (h *host) start() {
	w := h.w
	h.up = true
	h.kv, h.table, h.waiting = map[string]string{}, map[uint64]tableEntry{}, map[[2]uint64]bool{}
	h.applied = 0
	// Replay what is known committed, as the node does at start.
	for h.applied < min(h.hs.Commit, uint64(len(h.log))) {
		h.apply(h.log[h.applied])
	}
	r, err := vsr.New(vsr.Config{
		NodeID:          h.id,
		Replicas:        w.ids,
		HeartbeatTicks:  1,
		ViewChangeTicks: 10,
		Rand:            func(n int) int { return w.rng.IntN(n) },
		Storage:         storage{h},
	}, h.hs, h.hasState, uint64(len(h.log)))
	if err != nil {
		w.fail("replica %d: start: %v", h.id, err)
		h.up = false
		return
	}
	h.r = r
	h.handleReady()
}

func (h *host) crash(wipe bool) {
	w := h.w
	h.up, h.r = false, nil
	h.restartAt = w.step + w.opts.StepsPerTick*(5+w.rng.IntN(50))
	w.res.Crashes++
	w.faults[FaultCrash]++
	w.tracef("replica %d crashes (wipe=%v), disk has %d ops, hs=%+v", h.id, wipe, len(h.log), h.hs)
	if wipe {
		h.log, h.hs, h.hasState, h.wiped = nil, vsr.HardState{}, false, true
		w.res.Wipes++
		w.faults[FaultLostDisk]++
	}
}

// handleReady does what the replica asked, in the order the driver
// contract requires, possibly crashing part way.
func (h *host) handleReady() {
	w := h.w
	for h.up && h.r.HasReady() && w.err == nil {
		rd := h.r.Ready()

		crashAt := -1 // 0 before persisting, 1 torn append, 2 before sending
		if w.faulty && w.chance(w.opts.CrashRate*4) && w.failures() < (w.opts.Replicas-1)/2 {
			crashAt = w.rng.IntN(3)
		}
		if crashAt == 0 {
			h.crash(false)
			return
		}

		if rd.Truncate {
			w.tracef("replica %d truncates after %d (had %d)", h.id, rd.TruncateAfter, len(h.log))
			if rd.TruncateAfter > uint64(len(h.log)) {
				w.fail("replica %d: truncate after %d beyond log end %d", h.id, rd.TruncateAfter, len(h.log))
				return
			}
			h.log = h.log[:rd.TruncateAfter]
		}
		appends := rd.Append
		if crashAt == 1 && len(appends) > 0 {
			appends = appends[:w.rng.IntN(len(appends))] // a torn write keeps a prefix
		}
		for _, op := range appends {
			if op.Op != uint64(len(h.log))+1 {
				w.fail("replica %d: append of op %d after op %d", h.id, op.Op, len(h.log))
				return
			}
			h.log = append(h.log, op)
		}
		if crashAt == 1 {
			if len(appends) < len(rd.Append) {
				w.faults[FaultTornWrite]++
			}
			h.crash(false)
			return
		}
		// The hard state goes after the log: a replica must hold a view's
		// log before it claims it.
		if rd.MustPersist {
			if rd.HardState.View < h.hs.View {
				w.fail("replica %d: persisted view went back from %d to %d", h.id, h.hs.View, rd.HardState.View)
				return
			}
			h.hs.View, h.hs.LogView = rd.HardState.View, rd.HardState.LogView
			h.hasState = true
		}

		h.hs.Commit = max(h.hs.Commit, min(rd.CommitTo, uint64(len(h.log))))
		if crashAt == 2 {
			h.crash(false)
			return
		}

		for _, m := range rd.Messages {
			w.send(m)
		}
		if rd.CommitTo > uint64(len(h.log)) {
			w.fail("replica %d: commit %d beyond its log (%d ops)", h.id, rd.CommitTo, len(h.log))
			return
		}
		for h.applied < rd.CommitTo {
			op := h.log[h.applied]
			id := identity(op)
			if prev, ok := w.committed[op.Op]; ok && prev != id {
				w.fail("agreement: replica %d committed op %d as %s, committed elsewhere as %s", h.id, op.Op, id, prev)
				return
			}
			w.committed[op.Op] = id
			w.tracef("replica %d applies %s", h.id, id)
			h.apply(op)
		}
		for _, e := range rd.Events {
			w.tracef("replica %d event %+v", h.id, e)
			switch e.Kind {
			case vsr.EventBecamePrimary:
				if prev, ok := w.primaries[e.View]; ok && prev != h.id {
					w.fail("two primaries in view %d: %d and %d", e.View, prev, h.id)
					return
				}
				w.primaries[e.View] = h.id
			case vsr.EventViewStarted:
				w.res.ViewChanges++
			case vsr.EventRecovered, vsr.EventClusterFormed:
				h.wiped = false
			}
		}
		h.r.Advance(rd)
		if s := h.r.State(); s.Commit > s.Op {
			w.fail("replica %d: commit %d > op %d", h.id, s.Commit, s.Op)
			return
		}
	}
}

// apply runs one committed op against the key/value state machine, at most
// once per (client, request).
func (h *host) apply(op *kmblog.Op) {
	h.applied = op.Op
	if len(op.Entries) == 0 {
		return
	}
	if t, ok := h.table[op.ClientID]; !ok || op.RequestID > t.request {
		key := op.Entries[0].Key
		var result string
		switch op.Tenant {
		case "put":
			h.kv[key] = string(op.Entries[0].Value)
		case "get":
			result = h.kv[key]
		}
		h.table[op.ClientID] = tableEntry{request: op.RequestID, result: result}
	}
	k := [2]uint64{op.ClientID, op.RequestID}
	if h.waiting[k] {
		delete(h.waiting, k)
		if t := h.table[op.ClientID]; t.request == op.RequestID {
			h.w.clients[op.ClientID-1].complete(op.RequestID, t.result)
		}
	}
}
