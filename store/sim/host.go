package sim

import (
	"fmt"
	"maps"
	"slices"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/vsr"
)

// host is one simulated machine: a replica, its disk and the state machine
// it applies committed ops to.
type host struct {
	id uint64
	w  *world

	// Disk: survives crashes unless wiped. corrupt marks stored ops that
	// no longer read back (the op itself stays, so that a repair can be
	// checked against it).
	log      []*kmblog.Op
	corrupt  map[uint64]bool
	hs       vsr.HardState
	hasState bool
	// unsynced counts the ops at the end of log that were written but are
	// not durable yet: the appends of pending, the Readys taken with
	// SyncLater and not finished. A crash keeps a random prefix of them.
	unsynced int
	pending  []taken

	up        bool
	wiped     bool // lost its disk and has not recovered yet
	restartAt int
	r         *vsr.Replica
	// A new member boots joining the configuration replicas until it has
	// state; a retired host failed for good and never restarts.
	join     bool
	replicas []uint64
	retired  bool

	// The checkpoint, on disk: the state machine at ckpt.op. With
	// retention the ops up to it are gone (unreadable; they stay in log
	// so that op n is log[n-1]).
	ckpt *checkpoint
	gone uint64
	// The configuration of the last config op applied (nil: the initial
	// one), which a checkpoint records.
	cfgEpoch uint64
	cfgIDs   []uint64

	// Memory: lost at every crash and rebuilt from the disk.
	applied uint64
	kv      map[string]string
	table   map[uint64]tableEntry // client → last request applied
	waiting map[[2]uint64]bool    // (client, request) proposed here
}

// taken is a Ready with the first op the replica held as faulty when it
// was taken (0: none): a commit number decided before the replica found
// an op corrupt may pass it, and is applied only up to it.
type taken struct {
	rd     vsr.Ready
	faulty uint64
}

func (h *host) take() taken {
	t := taken{rd: h.r.Ready()}
	if runs := h.r.FaultyRuns(); len(runs) > 0 {
		t.faulty = runs[0].First
	}
	return t
}

type tableEntry struct {
	request uint64
	result  string
}

// checkpoint is a host's state machine after op.
type checkpoint struct {
	op       uint64
	kv       map[string]string
	table    map[uint64]tableEntry
	cfgEpoch uint64
	cfgIDs   []uint64
}

func (h *host) takeCheckpoint() *checkpoint {
	return &checkpoint{op: h.applied, kv: maps.Clone(h.kv), table: maps.Clone(h.table), cfgEpoch: h.cfgEpoch, cfgIDs: slices.Clone(h.cfgIDs)}
}

// restore makes the state machine the checkpoint's.
func (h *host) restore(c *checkpoint) {
	h.kv, h.table = maps.Clone(c.kv), maps.Clone(c.table)
	h.applied, h.cfgEpoch, h.cfgIDs = c.op, c.cfgEpoch, slices.Clone(c.cfgIDs)
}

// maybeCheckpoint takes a checkpoint every CheckpointEvery applied ops
// and, with retention, deletes the ops it covers.
func (h *host) maybeCheckpoint() {
	w := h.w
	if w.opts.CheckpointEvery <= 0 || h.r == nil {
		return
	}
	last := uint64(0)
	if h.ckpt != nil {
		last = h.ckpt.op
	}
	if h.applied < last+uint64(w.opts.CheckpointEvery) {
		return
	}
	h.ckpt = h.takeCheckpoint()
	if !w.opts.Retention {
		return
	}
	op := h.ckpt.op
	if err := h.r.SetLogStart(vsr.BaseOf(h.log[op-1])); err != nil {
		return // not durable yet: the next checkpoint deletes them
	}
	h.gone = op
	for n := range h.corrupt {
		if n <= op {
			delete(h.corrupt, n) // rotted, and deleted before anyone read it
		}
	}
	w.tracef("replica %d checkpoints op %d and deletes the ops up to it", h.id, op)
}

// storage serves the replica's reads from the host's disk.
type storage struct{ h *host }

func (s storage) Read(op uint64) (kmblog.Op, error) {
	if op == 0 || op > uint64(len(s.h.log)) || op <= s.h.gone {
		return kmblog.Op{}, fmt.Errorf("sim: op %d not on disk (%d ops, the first %d gone)", op, len(s.h.log), s.h.gone)
	}
	if op > s.h.durableOps() {
		// The replica holds what it has not seen durable in memory.
		s.h.w.fail("replica %d: read of op %d, which is not durable yet (%d durable)", s.h.id, op, s.h.durableOps())
		return kmblog.Op{}, fmt.Errorf("sim: op %d is not durable", op)
	}
	if s.h.corrupt[op] {
		return kmblog.Op{}, fmt.Errorf("sim: op %d: %w", op, kmblog.ErrCorrupt)
	}
	return *s.h.log[op-1], nil
}

// damaged reports whether the replica holds corrupt ops or a promise it
// has not kept: it cannot vote, so it counts against the fault budget.
func (h *host) damaged() bool {
	if len(h.corrupt) > 0 {
		return true
	}
	if h.r != nil {
		s := h.r.State()
		return s.Faulty > 0 || s.Promised > 0
	}
	return h.hs.Promised > 0
}

// corruptSome marks up to n stored ops corrupt: never the last op, whose
// damage recovery would take for a torn write.
func (h *host) corruptSome(n int) {
	w := h.w
	if len(h.log) < 2 {
		return
	}
	if uint64(len(h.log)) < h.gone+2 {
		return
	}
	for range n {
		op := h.gone + 1 + uint64(w.rng.IntN(len(h.log)-1-int(h.gone)))
		if c := max(h.hs.Commit, h.gone); c+1 < uint64(len(h.log)) && w.rng.IntN(2) == 0 {
			// Half the time past the commit lower bound: ops that may
			// never commit, whose repair must not assume they did.
			op = c + 1 + uint64(w.rng.IntN(len(h.log)-1-int(c)))
		}
		if h.corrupt[op] {
			continue
		}
		if h.corrupt == nil {
			h.corrupt = map[uint64]bool{}
		}
		h.corrupt[op] = true
		w.res.Corruptions++
		w.faults[FaultCorrupt]++
		w.tracef("replica %d: op %d corrupt on disk", h.id, op)
	}
}

// faultyRuns is what recovery finds: the corrupt ops, as runs. A canary
// build instead cuts the log at the first of them, as a log that took
// every bad record for a torn tail would.
func (h *host) faultyRuns() []vsr.Run {
	var ops []uint64
	for op := range h.corrupt {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	if h.w.opts.CanaryTruncateCorrupt && len(ops) > 0 {
		h.log = h.log[:ops[0]-1]
		h.corrupt = nil
		return nil
	}
	var runs []vsr.Run
	for _, op := range ops {
		if n := len(runs); n > 0 && runs[n-1].Last+1 == op {
			runs[n-1].Last = op
			continue
		}
		runs = append(runs, vsr.Run{First: op, Last: op})
	}
	return runs
}

func (h *host) start() {
	w := h.w
	if !h.hasState && !h.join {
		// A lost disk boots with the current configuration, as an
		// operator gives it: not while a change is in progress (which
		// configuration is current then?), and not at all for a replica
		// the configuration left out, which has nothing to rejoin.
		if !slices.Contains(w.config, h.id) {
			h.retired = true
			w.tracef("replica %d lost its disk and is no longer a member: it stays down", h.id)
			return
		}
		if w.trackProposal(); w.proposal != nil || w.prevConfig != nil {
			h.restartAt = w.step + w.opts.StepsPerTick*10
			return
		}
	}
	h.up = true
	h.kv, h.table, h.waiting = map[string]string{}, map[uint64]tableEntry{}, map[[2]uint64]bool{}
	h.applied, h.cfgEpoch, h.cfgIDs = 0, 0, nil
	if h.ckpt != nil {
		h.restore(h.ckpt)
	}
	faulty := h.faultyRuns() // first: the canary cuts the log
	// Replay what is known committed, as the node does at start, up to
	// the first corrupt op.
	for h.applied < min(h.hs.Commit, uint64(len(h.log))) && !h.corrupt[h.applied+1] {
		if !h.recordCommitted(h.log[h.applied]) {
			return
		}
		h.apply(h.log[h.applied])
	}
	var base vsr.Base
	var startEpoch uint64
	var startConfig []uint64
	if h.gone > 0 {
		base = vsr.BaseOf(h.log[h.gone-1])
		if h.ckpt != nil && h.ckpt.op == h.gone {
			startEpoch, startConfig = h.ckpt.cfgEpoch, slices.Clone(h.ckpt.cfgIDs)
		}
	}
	// The configuration to boot with when the disk holds none: a new
	// member's, or (a lost disk) the current one, as an operator gives it.
	replicas := w.config
	if h.join {
		replicas = h.replicas
	}
	if !slices.Contains(replicas, h.id) {
		replicas = append(slices.Clone(replicas), h.id)
	}
	r, err := vsr.New(vsr.Config{
		NodeID:          h.id,
		Replicas:        replicas,
		HeartbeatTicks:  1,
		ViewChangeTicks: 10,
		Rand:            func(n int) int { return w.rng.IntN(n) },
		Storage:         storage{h},
	}, vsr.Durable{HardState: h.hs, HasState: h.hasState, LastOp: uint64(len(h.log)), Faulty: faulty, Join: h.join && !h.hasState, Start: base,
		StartEpoch: startEpoch, StartConfig: startConfig})
	if err != nil {
		w.fail("replica %d: start: %v", h.id, err)
		h.up = false
		return
	}
	h.r = r
	h.handleReady()
}

// durableOps is how many ops of the log are durable.
func (h *host) durableOps() uint64 { return uint64(len(h.log) - h.unsynced) }

func (h *host) crash(wipe bool) {
	w := h.w
	h.up, h.r = false, nil
	if h.unsynced > 0 {
		// What was written but not synced may or may not have reached
		// the disk: some prefix of it did.
		lost := h.unsynced - w.rng.IntN(h.unsynced+1)
		h.log = h.log[:len(h.log)-lost]
		w.tracef("replica %d loses %d unsynced ops of %d", h.id, lost, h.unsynced)
	}
	h.unsynced, h.pending = 0, nil
	h.restartAt = w.step + w.opts.StepsPerTick*(5+w.rng.IntN(50))
	w.res.Crashes++
	w.faults[FaultCrash]++
	w.tracef("replica %d crashes (wipe=%v), disk has %d ops, hs=%+v", h.id, wipe, len(h.log), h.hs)
	if wipe {
		h.log, h.hs, h.hasState, h.wiped, h.corrupt = nil, vsr.HardState{}, false, true, nil
		h.ckpt, h.gone = nil, 0
		w.res.Wipes++
		w.faults[FaultLostDisk]++
		return
	}
	// Its disk may have rotted while it was down, if the fault budget
	// allows one more damaged replica (this one is down, so counted).
	if w.faulty && w.chance(w.opts.CorruptRate) && !h.damaged() && w.budget() >= 0 {
		h.corruptSome(1 + w.rng.IntN(3))
	}
}

// handleReady does what the replica asked, in the order the driver
// contract requires, possibly crashing part way.
func (h *host) handleReady() {
	w := h.w
	for h.up && h.r.HasReady() && w.err == nil {
		t := h.take()
		rd := t.rd

		crashAt := -1 // 0 before persisting, 1 torn append, 2 before sending
		if w.faulty && w.chance(w.opts.CrashRate*4) && w.budget() > 0 {
			crashAt = w.rng.IntN(3)
		}
		// The primary's early prepares leave first, while the rest is made
		// durable: a crash below may lose ops the backups receive.
		for _, m := range rd.Early {
			w.send(m)
		}
		if crashAt == 0 {
			h.crash(false)
			return
		}
		// A Ready taken with SyncLater finishes once its appends are
		// synced (syncPending); any other waits for the earlier ones.
		if !rd.SyncLater && len(h.pending) > 0 {
			h.syncPending()
			if !h.up || w.err != nil {
				return
			}
		}

		for _, op := range rd.Repair {
			switch {
			case op.Op > uint64(len(h.log)) || !h.corrupt[op.Op]:
				w.fail("replica %d: repair of op %d, which is not corrupt on its disk", h.id, op.Op)
				return
			case identity(op) != identity(h.log[op.Op-1]) || op.Chain != h.log[op.Op-1].Chain:
				w.fail("replica %d: repair of op %d wrote %s, the disk held %s", h.id, op.Op, identity(op), identity(h.log[op.Op-1]))
				return
			}
			delete(h.corrupt, op.Op)
			w.res.Repaired++
			w.tracef("replica %d repairs op %d", h.id, op.Op)
		}
		if rd.Truncate {
			w.tracef("replica %d truncates after %d (had %d)", h.id, rd.TruncateAfter, len(h.log))
			if rd.TruncateAfter > uint64(len(h.log)) {
				w.fail("replica %d: truncate after %d beyond log end %d", h.id, rd.TruncateAfter, len(h.log))
				return
			}
			if rd.TruncateAfter < h.gone {
				w.fail("replica %d: truncate after %d, before the log's start (op %d gone)", h.id, rd.TruncateAfter, h.gone)
				return
			}
			h.log = h.log[:rd.TruncateAfter]
			for op := range h.corrupt {
				if op > rd.TruncateAfter {
					delete(h.corrupt, op)
				}
			}
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
		if rd.SyncLater && (len(rd.Append) > 0 || len(h.pending) > 0) {
			h.unsynced += len(appends)
			if crashAt == 1 {
				h.crash(false)
				return
			}
			h.pending = append(h.pending, t)
			continue
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
			hs := rd.HardState
			if hs.Epoch < h.hs.Epoch || (hs.Epoch == h.hs.Epoch && hs.View < h.hs.View) {
				w.fail("replica %d: persisted (epoch, view) went back from (%d, %d) to (%d, %d)", h.id, h.hs.Epoch, h.hs.View, hs.Epoch, hs.View)
				return
			}
			hs.Commit, hs.Config = h.hs.Commit, slices.Clone(hs.Config)
			h.hs = hs
			h.hasState = true
		}

		h.noteCommit(rd.CommitTo)
		if crashAt == 2 {
			h.crash(false)
			return
		}
		h.finish(t)
	}
}

// noteCommit raises the commit lower bound on disk to c, or to the
// durable log's end.
func (h *host) noteCommit(c uint64) {
	h.hs.Commit = max(h.hs.Commit, min(c, h.durableOps()))
}

// syncPending makes the appends of the Readys taken with SyncLater
// durable, then finishes those Readys in the order they were taken.
func (h *host) syncPending() {
	w := h.w
	pending := h.pending
	h.pending, h.unsynced = nil, 0
	w.tracef("replica %d syncs %d pending Readys", h.id, len(pending))
	for _, t := range pending {
		if !h.up || w.err != nil {
			return
		}
		h.noteCommit(t.rd.CommitTo)
		h.finish(t)
	}
}

// finish does what a Ready asks once its log changes and hard state are
// durable: send, apply, observe, Advance.
func (h *host) finish(t taken) {
	w, rd := h.w, t.rd
	for _, m := range rd.Messages {
		w.send(m)
	}
	if rd.CommitTo > uint64(len(h.log)) {
		w.fail("replica %d: commit %d beyond its log (%d ops)", h.id, rd.CommitTo, len(h.log))
		return
	}
	for h.applied < rd.CommitTo {
		op := h.log[h.applied]
		if h.corrupt[op.Op] {
			if t.faulty != 0 && op.Op >= t.faulty {
				w.fail("replica %d: commit %d reaches op %d, which it holds as faulty", h.id, rd.CommitTo, op.Op)
				return
			}
			// Rotted while running: the driver finds out now, as the
			// node does when its read fails.
			w.tracef("replica %d finds op %d corrupt while applying", h.id, op.Op)
			h.r.MarkCorrupt(op.Op)
			break
		}
		if !h.recordCommitted(op) {
			return
		}
		w.tracef("replica %d applies %s", h.id, identity(op))
		h.apply(op)
	}
	for _, e := range rd.Events {
		w.tracef("replica %d event %+v", h.id, e)
		switch e.Kind {
		case vsr.EventBecamePrimary:
			key := [2]uint64{e.Epoch, e.View}
			if prev, ok := w.primaries[key]; ok && prev != h.id {
				w.fail("two primaries in epoch %d view %d: %d and %d", e.Epoch, e.View, prev, h.id)
				return
			}
			w.primaries[key] = h.id
		case vsr.EventEpochStarted:
			w.epochStarted(h, e)
			if w.err != nil {
				return
			}
		case vsr.EventViewStarted:
			w.res.ViewChanges++
		case vsr.EventRecovered, vsr.EventClusterFormed:
			h.wiped = false
		case vsr.EventRepairReplaced:
			w.res.Replaced++
		}
	}
	h.r.Advance(rd)
	if s := h.r.State(); s.Commit > s.Op {
		w.fail("replica %d: commit %d > op %d", h.id, s.Commit, s.Op)
		return
	}
	h.maybeCheckpoint()
	if rd.StateTransfer != nil {
		w.requestTransfer(h, rd.StateTransfer)
	}
}

// apply runs one committed op against the key/value state machine, at most
// once per (client, request).
// recordCommitted checks that op, which the replica is about to apply,
// is what every other replica committed at its number, and records it;
// false after a violation. Applying at a restart (the replay up to the
// persisted commit number) is checked the same way.
func (h *host) recordCommitted(op *kmblog.Op) bool {
	w := h.w
	id := identity(op)
	if prev, ok := w.committed[op.Op]; ok && prev != id {
		w.fail("agreement: replica %d committed op %d as %s, committed elsewhere as %s", h.id, op.Op, id, prev)
		return false
	}
	w.committed[op.Op] = id
	if _, ok := w.chains[op.Op]; !ok {
		w.chains[op.Op] = op.Chain
	}
	return true
}

func (h *host) apply(op *kmblog.Op) {
	h.applied = op.Op
	if op.Kind == kmblog.KindConfig {
		h.w.configCommitted(h, op)
		if c, err := vsr.ParseConfig(op); err == nil {
			h.cfgEpoch, h.cfgIDs = c.Epoch, c.IDs()
		}
		return
	}
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
