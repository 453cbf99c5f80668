package vsr

import (
	"slices"

	"github.com/kmb-db/kmb/store/wire"
)

// formatNewCluster starts a brand-new cluster: view 0, empty log.
func (r *Replica) formatNewCluster() {
	r.fresh = false
	r.recovery = nil
	r.verified = r.op
	r.enterNormal(0, 0)
	r.event(Event{Kind: EventClusterFormed, View: 0, Primary: r.primaryOf(0)})
}

// startRecovery begins (or restarts) the recovery protocol with a new nonce.
func (r *Replica) startRecovery() {
	r.status = StatusRecovering
	r.learnEpoch = 0
	r.nonce = uint64(r.cfg.Rand(1<<31))<<32 | uint64(r.cfg.Rand(1<<31)) | 1
	r.recovery = map[uint64]wire.Message{}
	r.recoveryTarget = 0
	r.event(Event{Kind: EventRecoveryStarted, View: r.view})
	r.broadcast(wire.Message{Type: wire.TypeRecovery, Nonce: r.nonce})
}

// onRecovery answers a replica that runs recovery.
func (r *Replica) onRecovery(m wire.Message) {
	var flags uint8
	switch {
	case r.status == StatusNormal:
		flags = wire.FlagNormal
	case r.status == StatusRecovering && r.fresh && r.recoveryTarget == 0:
		flags = wire.FlagFresh
	}
	r.send(wire.Message{
		Type: wire.TypeRecoveryResponse, To: m.From, View: r.view, LogView: r.logView,
		Op: r.op, Commit: r.commit, Nonce: m.Nonce, Flags: flags,
	})
}

// onRecoveryResponse collects answers until it can decide how to rejoin.
func (r *Replica) onRecoveryResponse(m wire.Message) {
	if r.status != StatusRecovering || r.recoveryTarget != 0 || r.learnEpoch != 0 || m.Nonce != r.nonce {
		return
	}
	if m.Epoch > r.epoch {
		// The cluster is in a later epoch than the one this replica knows
		// (a lost disk knows none): its configuration may not be the one
		// the replica was given, nor its members those who answer. Read
		// it from the log first, the committed prefix of the answerer,
		// then recover in it.
		r.learnEpoch, r.lastHeard = m.Epoch, r.tick
		r.requestEpochOps(m.From, true)
		return
	}
	if m.Epoch < r.epoch {
		return // it learns of this epoch from its own traffic
	}
	r.recovery[m.From] = m
	// Answers from n-q+1 others always include a member of every quorum
	// that excludes this replica, so one of them knows the latest view.
	if len(r.recovery) < r.n-r.quorum+1 {
		return
	}
	var maxView uint64
	for _, resp := range r.recovery {
		maxView = max(maxView, resp.View)
	}
	// The paper's rule: enough answers, including the normal primary of
	// the latest view among them. Adopt that view and fetch its log.
	if p, ok := r.recovery[r.primaryOf(maxView)]; ok && p.View == maxView && p.Flags&wire.FlagNormal != 0 {
		r.adopt(maxView, p.Op)
		return
	}
	// A new cluster: every other replica answered and none holds an op.
	// Then no op was ever committed (a commit needs a quorum, which with
	// more than one replica includes another replica), so starting with an
	// empty log in view 0 is safe; replicas already in a later view pull
	// this one into it with their view-change traffic.
	//
	// The primary of view 0 is stricter: it formats only when no replica
	// ever held state. Otherwise it may be a primary of view 0 that lost its
	// disk, with prepares of its earlier life still in flight; leading view
	// 0 again would give two different ops the same number and view. It
	// waits for the others to elect view 1 and recovers from it instead.
	if len(r.recovery) < r.n-1 {
		return
	}
	allFresh := true
	for _, resp := range r.recovery {
		if resp.Op != 0 {
			return
		}
		allFresh = allFresh && resp.Flags&wire.FlagFresh != 0
	}
	if r.primaryOf(0) == r.id && !allFresh {
		return
	}
	r.formatNewCluster()
}

// adopt makes the recovering replica a (not yet acknowledging) member of
// view v that must fetch the primary's log up to target before it turns
// normal.
func (r *Replica) adopt(v, target uint64) {
	r.fresh = false
	r.view = v
	r.verified = min(r.commit, r.op)
	r.recoveryTarget = max(target, 1) // non-zero marks "adopted"
	r.lastHeard = r.tick
	if r.verified >= target {
		r.finishRecovery()
		return
	}
	r.requestRepair(true)
}

func (r *Replica) finishRecovery() {
	r.recoveryTarget = 0
	r.recovery = nil
	r.enterNormal(r.view, r.verified)
	r.event(Event{Kind: EventRecovered, View: r.view, Primary: r.primaryOf(r.view), Op: r.op, Commit: r.commit})
}

// stepRecovering handles traffic while recovering: only ops from the
// adopted view's primary, which are installed but never acknowledged.
func (r *Replica) stepRecovering(m wire.Message) {
	if r.recoveryTarget == 0 {
		return
	}
	if m.View > r.view {
		// The view changed under us: start over with a new nonce.
		r.startRecovery()
		return
	}
	if m.View != r.view || m.From != r.primaryOf(r.view) || m.Flags&wire.FlagNormal == 0 {
		return
	}
	switch m.Type {
	case wire.TypePrepare, wire.TypeOps:
		for _, op := range m.Ops {
			if !r.installOp(op) {
				break
			}
		}
	case wire.TypeCommit:
	case wire.TypeStateTransfer:
		r.onStateTransfer(m)
		return
	default:
		return
	}
	r.setCommit(m.Commit)
	r.lastHeard = r.tick
	if r.verified >= r.recoveryTarget && r.durable >= r.recoveryTarget {
		r.finishRecovery()
		return
	}
	if m.Type == wire.TypeOps || primaryOp(m) > r.verified {
		r.requestRepair(m.Type == wire.TypeOps)
	}
}

// learnConfig reads the configuration of epoch upTo from the ops a
// recovering replica fetched (see onRecoveryResponse): once the config op
// that starts it is in the committed prefix, the replica takes that
// configuration and recovers in it, or, left out, is removed.
func (r *Replica) learnConfig(m wire.Message) {
	r.lastHeard = r.tick
	for _, op := range m.Ops {
		if !r.installOp(op) {
			break
		}
	}
	r.setCommit(m.Commit)
	last := -1
	for i, p := range r.pending {
		if p.op <= r.commit && p.cfg.Epoch <= r.learnEpoch {
			last = i
		}
	}
	if last < 0 || r.pending[last].cfg.Epoch < r.learnEpoch {
		r.requestEpochOps(m.From, true)
		return
	}
	p := r.pending[last]
	r.pending = slices.Clone(r.pending[last+1:])
	r.epoch = p.cfg.Epoch
	r.setConfig(p.cfg.IDs())
	if !r.member(r.id) {
		r.status = StatusRemoved
		r.persistHardState()
		r.event(Event{Kind: EventRemoved, View: r.view})
		return
	}
	r.startRecovery()
}
