package sim

import (
	"fmt"
	"slices"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/vsr"
)

// Reconfiguration faults. Now and then the world asks the primary to
// change the configuration: replace a member (half the time one that then
// fails for good, as a dead machine does), grow by two, or shrink by two.
// New members boot joining, with the new configuration and no state. Other
// faults go on meanwhile, the proposer itself sometimes crashing right
// after it proposed.
//
// The fault budget spans every configuration in force: the current one,
// the proposed one (whose joiners count as failures until they enter its
// epoch) and, until a quorum of the current one holds its epoch, the
// previous one (whose removed members count as failures). Beyond it VSR
// promises nothing.

// proposal is a configuration change the primary accepted whose epoch has
// not started.
type proposal struct {
	epoch   uint64
	members []uint64
	op      uint64 // the config op's number
	joiners []uint64
	retired uint64 // the member replaced because it failed for good, or 0
}

// reconfigure proposes a configuration change at the primary of the
// current epoch, if the last one is complete and the budget allows it.
func (w *world) reconfigure() {
	w.trackProposal()
	if w.proposal != nil || w.prevConfig != nil {
		return // one change at a time
	}
	var primary *host
	for _, id := range w.config {
		if h := w.hosts[id]; h.up && h.r.State().IsPrimary && h.r.State().Epoch == w.epoch {
			primary = h
		}
	}
	if primary == nil {
		return
	}
	var others []uint64
	for _, id := range w.config {
		if id != primary.id {
			others = append(others, id)
		}
	}
	kinds := []string{"replace"}
	if len(w.config)+2 <= w.opts.MaxReplicas {
		kinds = append(kinds, "grow")
	}
	if len(w.config)-2 >= w.opts.Replicas {
		kinds = append(kinds, "shrink")
	}
	kind := kinds[w.rng.IntN(len(kinds))]
	next := slices.Clone(w.config)
	var joiners []uint64
	var retire uint64
	switch kind {
	case "replace":
		victim := others[w.rng.IntN(len(others))]
		next[slices.Index(next, victim)] = w.nextID
		joiners = []uint64{w.nextID}
		if w.rng.IntN(2) == 0 {
			retire = victim
		}
	case "grow":
		joiners = []uint64{w.nextID, w.nextID + 1}
		next = append(next, joiners...)
	case "shrink":
		w.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
		next = slices.DeleteFunc(next, func(id uint64) bool { return id == others[0] || id == others[1] })
	}
	// The change must leave a quorum of healthy members in both
	// configurations: joiners are not yet, a retired victim never again.
	newFailures := len(joiners) + w.failuresIn(slices.DeleteFunc(slices.Clone(next), func(id uint64) bool { return slices.Contains(joiners, id) }))
	oldFailures := w.failuresIn(w.config)
	if retire != 0 && w.healthy(w.hosts[retire]) {
		oldFailures++
	}
	if newFailures > (len(next)-1)/2 || oldFailures > (len(w.config)-1)/2 {
		return
	}
	members := make([]vsr.Member, len(next))
	for i, id := range next {
		members[i] = vsr.Member{ID: id, Addr: fmt.Sprintf("sim%d", id)}
	}
	op, err := primary.r.ProposeConfig(members, "sim")
	if err != nil {
		return // busy: nothing changed
	}
	w.nextID += uint64(len(joiners))
	w.res.Reconfigs++
	w.faults[FaultReconfigure]++
	w.proposal = &proposal{epoch: w.epoch + 1, members: next, op: op, joiners: joiners, retired: retire}
	w.tracef("reconfigure (%s) at primary %d: %v -> %v, config op %d", kind, primary.id, w.config, next, op)
	for _, id := range joiners {
		h := &host{id: id, w: w, join: true, replicas: next}
		w.hosts[id] = h
		w.ids = append(w.ids, id)
		h.start()
	}
	// The victim fails before the primary handles its Ready: handling it
	// may crash the primary and lose the proposal, and trackProposal then
	// brings the victim back, which it can only do once it is retired.
	if retire != 0 {
		if h := w.hosts[retire]; h.up {
			h.crash(false)
		}
		w.hosts[retire].retired = true
		w.tracef("replica %d fails for good", retire)
	}
	primary.handleReady()
	// A replica crashing mid-change: sometimes the proposer itself.
	if primary.up && w.opts.CrashRate > 0 && w.chance(0.2) && w.budget() > 0 {
		primary.crash(false)
	}
}

// trackProposal notices that a proposed configuration started its epoch,
// or was lost (no log holds its config op any more: a view change replaced
// it), and that a change is complete.
func (w *world) trackProposal() {
	if p := w.proposal; p != nil {
		switch {
		case w.epoch >= p.epoch:
			w.proposal = nil
		case !w.proposalHeld(p):
			w.tracef("configuration %v (op %d) lost before it committed", p.members, p.op)
			for _, id := range p.joiners {
				h := w.hosts[id]
				if h.up {
					h.crash(false)
				}
				h.retired = true // joined nothing; they never will
			}
			if p.retired != 0 {
				// Still a member: the machine that failed comes back
				// (the operator would retry the change otherwise).
				w.hosts[p.retired].retired = false
			}
			w.proposal = nil
		}
	}
	if w.prevConfig != nil {
		n := 0
		for _, id := range w.config {
			if h := w.hosts[id]; w.healthy(h) && h.r.State().Epoch == w.epoch {
				n++
			}
		}
		if n >= len(w.config)/2+1 {
			w.prevConfig = nil
		}
	}
}

// proposalHeld reports whether a replica, a log that may still count, or
// a message in flight holds p's config op.
func (w *world) proposalHeld(p *proposal) bool {
	isConfig := func(op *kmblog.Op) bool {
		if op.Op != p.op || op.Kind != kmblog.KindConfig {
			return false
		}
		c, err := vsr.ParseConfig(op)
		return err == nil && c.Epoch == p.epoch
	}
	for _, e := range w.net {
		for _, op := range e.m.Ops {
			if isConfig(op) {
				return true
			}
		}
	}
	for _, id := range w.ids {
		h := w.hosts[id]
		if h.up && h.r != nil && h.r.State().Reconfiguring {
			return true // in memory, not yet on disk (the world proposes one change at a time)
		}
		if h.retired || uint64(len(h.log)) < p.op {
			continue
		}
		if isConfig(h.log[p.op-1]) {
			return true
		}
	}
	return false
}

// budget is how many more replicas may fail: f minus the failures, in the
// tightest of the configurations in force.
func (w *world) budget() int {
	w.trackProposal()
	b := (len(w.config)-1)/2 - w.failuresIn(w.config)
	if w.prevConfig != nil {
		b = min(b, (len(w.prevConfig)-1)/2-w.failuresIn(w.prevConfig))
	}
	if p := w.proposal; p != nil {
		b = min(b, (len(p.members)-1)/2-w.failuresIn(p.members))
	}
	return b
}

func (w *world) failuresIn(cfg []uint64) int {
	n := 0
	for _, id := range cfg {
		if !w.healthy(w.hosts[id]) {
			n++
		}
	}
	return n
}

// healthy reports whether h can take part in a view change: up, with its
// disk, none of it corrupt, and neither recovering, joining nor removed.
// A replica of an earlier epoch is healthy: it catches up from any member
// of a later one.
func (w *world) healthy(h *host) bool {
	if h == nil || !h.up || h.wiped || h.damaged() {
		return false
	}
	switch h.r.State().Status {
	case vsr.StatusRecovering, vsr.StatusJoining, vsr.StatusRemoved:
		return false
	}
	return true
}

// configCommitted records the configuration of a config op a replica
// applied: one configuration per epoch.
func (w *world) configCommitted(h *host, op *kmblog.Op) {
	c, err := vsr.ParseConfig(op)
	if err != nil {
		w.fail("replica %d applied config op %d: %v", h.id, op.Op, err)
		return
	}
	ids := c.IDs()
	if prev, ok := w.configs[c.Epoch]; ok && !slices.Equal(prev, ids) {
		w.fail("two configurations committed for epoch %d: %v and %v", c.Epoch, prev, ids)
		return
	}
	w.configs[c.Epoch] = ids
}

// epochStarted checks that a replica entered an epoch only once its
// config op committed, and moves the world to the first epoch entered.
func (w *world) epochStarted(h *host, e vsr.Event) {
	if h.applied < e.Op && h.corrupt[h.applied+1] {
		return // it found an op below rotten as it applied: held for repair
	}
	want, ok := w.committed[e.Op]
	if !ok || uint64(len(h.log)) < e.Op || identity(h.log[e.Op-1]) != want || h.applied < e.Op {
		w.fail("replica %d entered epoch %d before its config op %d committed (applied %d)", h.id, e.Epoch, e.Op, h.applied)
		return
	}
	members, ok := w.configs[e.Epoch]
	if !ok {
		w.fail("replica %d entered epoch %d, whose configuration never committed", h.id, e.Epoch)
		return
	}
	if slices.Contains(members, h.id) {
		h.join = false // a member now: losing its disk is amnesia, not a fresh start
	}
	if e.Epoch > w.epoch {
		w.tracef("epoch %d starts: %v", e.Epoch, members)
		w.prevConfig, w.config, w.epoch = w.config, members, e.Epoch
		// A new member still joining that the change left out (grown,
		// then shrunk before it caught up) hears from no one again: the
		// operator stops it.
		for _, id := range w.ids {
			if j := w.hosts[id]; j.join && !j.hasState && !slices.Contains(members, id) && !j.retired {
				if j.up {
					j.crash(false)
				}
				j.retired = true
				w.tracef("replica %d, left out while it was joining, is stopped", id)
			}
		}
	}
}
