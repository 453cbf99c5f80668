package vsr

import (
	"slices"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// Tick advances logical time by one tick.
func (r *Replica) Tick() {
	r.tick++
	r.checkRepairStall()
	hb := uint64(r.cfg.HeartbeatTicks)
	switch r.status {
	case StatusJoining:
		// The primary of the epoch that adds it calls; a replica fetching
		// the rest of a snapshot's epoch asks again (a message lost).
		if r.joinFrom != 0 && r.joinEpoch > r.epoch && r.tick-r.repairTick >= 2*hb {
			r.requestEpochOps(r.joinFrom, true)
			r.joinFrom = r.nextPeer(r.joinFrom) // it may be down for good: ask the others in turn
		}
		return
	case StatusRemoved:
		return
	case StatusNormal:
		if r.isPrimary() {
			if r.n > 1 && r.tick-r.lastSent >= hb {
				r.broadcast(wire.Message{Type: wire.TypeCommit, Op: r.op, Commit: r.commit})
				r.lastSent = r.tick
			}
			return
		}
		if r.tick-r.lastHeard >= r.timeout {
			r.beginViewChange(r.view + 1)
		}
	case StatusViewChange:
		if r.tick-r.lastHeard >= r.timeout {
			r.beginViewChange(r.view + 1)
			return
		}
		if (r.tick-r.lastHeard)%hb == 0 {
			// Messages may have been lost: say it again.
			r.broadcast(wire.Message{Type: wire.TypeStartViewChange, Commit: r.commit})
			if r.dvcSent && r.primaryOf(r.view) != r.id {
				m := r.lastDVC
				r.send(m)
			}
		}
	case StatusRecovering:
		if r.learnEpoch != 0 {
			if r.tick-r.lastHeard >= 2*hb {
				r.startRecovery() // the fetch stalled (a message lost): ask again
			}
			return
		}
		if r.tick%(2*hb) == 0 {
			if r.recoveryTarget == 0 {
				r.broadcast(wire.Message{Type: wire.TypeRecovery, Nonce: r.nonce})
			} else {
				r.requestRepair(true)
			}
		}
	}
}

// nextPeer is the replica after id, in id order, among those of this
// configuration and the one before (this replica aside); id itself when
// there is no other.
func (r *Replica) nextPeer(id uint64) uint64 {
	var peers []uint64
	for _, p := range append(slices.Clone(r.config), r.prevConfig...) {
		if p != r.id && !slices.Contains(peers, p) {
			peers = append(peers, p)
		}
	}
	slices.Sort(peers)
	for _, p := range peers {
		if p > id {
			return p
		}
	}
	if len(peers) > 0 {
		return peers[0]
	}
	return id
}

// Step processes one message.
func (r *Replica) Step(m wire.Message) {
	if m.To != r.id || m.From == r.id {
		return
	}
	if r.status == StatusRemoved {
		// A removed replica takes part in nothing, but still tells the
		// replicas that missed the epoch that removed it (and serves
		// them its committed prefix): it may be the last to hold it.
		if m.Epoch < r.epoch {
			r.stepOtherEpoch(m)
		}
		return
	}
	// The recovery protocol spans epochs: a replica that lost its state
	// knows none, and learns it from the answers.
	switch m.Type {
	case wire.TypeRecovery:
		// Members of the previous configuration are answered too: the
		// answer's epoch is how a replica that lost its disk and was
		// given the old configuration learns of the new one.
		if !r.joining && (r.known(m.From) || slices.Contains(r.prevConfig, m.From)) {
			r.lastContact[m.From] = r.tick
			r.onRecovery(m)
		}
		return
	case wire.TypeRecoveryResponse:
		if r.known(m.From) {
			r.lastContact[m.From] = r.tick
			r.onRecoveryResponse(m)
		}
		return
	}
	if m.Epoch != r.epoch || r.joining {
		if r.joining && m.Epoch <= r.epoch {
			return // a joining replica takes part in nothing of its epoch
		}
		r.lastContact[m.From] = r.tick
		r.stepOtherEpoch(m)
		return
	}
	if !r.known(m.From) {
		return
	}
	r.lastContact[m.From] = r.tick
	if r.status == StatusRecovering {
		r.stepRecovering(m)
		return
	}
	if m.View < r.view {
		return // stale; its sender learns the new view from our traffic
	}
	primaryTraffic := (m.Type == wire.TypePrepare || m.Type == wire.TypeCommit || m.Type == wire.TypeOps) &&
		m.From == r.primaryOf(m.View) && m.Flags&wire.FlagNormal != 0
	if primaryTraffic && m.View == r.view && r.status == StatusNormal && r.catchingUp && r.catchUpTo == catchUpUnknown {
		r.catchUpTo = primaryOp(m) // the primary of the view, heard at last
		// It may hold that much already (then the message's handler
		// acknowledges); otherwise the handler fetches the rest.
		r.maybeCaughtUp()
	}
	if m.View == r.view && r.status == StatusViewChange && primaryTraffic {
		// The view change completed without us: its StartView was lost.
		r.joinView(m.View, primaryOp(m))
	}
	if m.View > r.view {
		switch m.Type {
		case wire.TypeStartViewChange, wire.TypeDoViewChange:
			r.beginViewChange(m.View)
		case wire.TypeStartView:
			// handled below
		case wire.TypePrepare, wire.TypeCommit, wire.TypeOps:
			if !primaryTraffic {
				return
			}
			r.joinView(m.View, primaryOp(m))
		default:
			return
		}
	}
	switch m.Type {
	case wire.TypePrepare, wire.TypeOps:
		r.onOps(m)
	case wire.TypePrepareOK:
		r.onPrepareOK(m)
	case wire.TypeCommit:
		r.onCommit(m)
	case wire.TypeGetOps:
		r.onGetOps(m)
	case wire.TypeStartViewChange:
		r.onStartViewChange(m)
	case wire.TypeDoViewChange:
		r.onDoViewChange(m)
	case wire.TypeStartView:
		r.onStartView(m)
	case wire.TypeStateTransfer:
		if r.status == StatusNormal && (m.From == r.primaryOf(r.view) || r.catchingUp) {
			r.onStateTransfer(m)
		}
	}
}

func (r *Replica) known(id uint64) bool { return r.member(id) }

// fromPrimary reports whether m comes from the primary of the current view
// while this replica is a normal backup.
func (r *Replica) fromPrimary(m wire.Message) bool {
	return r.status == StatusNormal && !r.isPrimary() && m.From == r.primaryOf(r.view) && m.Flags&wire.FlagNormal != 0
}

// joinView moves a replica that missed a view change into view v, whose
// primary's log reaches at least target. Only its committed prefix is known
// to be in v's log; it keeps the rest of its log (it may hold ops another
// view change needs) and verifies or replaces it op by op from the primary.
func (r *Replica) joinView(v, target uint64) {
	r.verified = min(r.commit, r.op)
	r.enterNormal(v, target)
}

// enterNormal makes the replica a normal member of view v. A backup whose
// log is not yet verified up to target catches up first: it neither claims
// v's log (logView) nor acknowledges until then.
func (r *Replica) enterNormal(v, target uint64) {
	r.view, r.status = v, StatusNormal
	r.lastHeard = r.tick
	r.resetTimeout()
	r.candidates, r.replacing = nil, false
	r.svc, r.dvc, r.dvcSent, r.haveVCBase = nil, nil, false, false
	r.match = map[uint64]uint64{}
	r.catchingUp, r.catchUpTo = true, target
	r.persistHardState() // the view, before anything is sent in it
	if r.maybeCaughtUp() {
		r.ack()
	} else {
		r.requestRepair(true)
	}
}

// catchUpUnknown is the catch-up target of a replica that entered a view
// without hearing from its primary (after a snapshot): it learns the
// target from the primary's first normal message.
const catchUpUnknown = ^uint64(0)

// maybeCaughtUp completes a catch-up once the log is verified up to the
// target: ops past the verified prefix were never in this view's log and
// go; the replica claims the view's log and acknowledges it.
func (r *Replica) maybeCaughtUp() bool {
	if !r.catchingUp {
		return true
	}
	if r.verified < r.catchUpTo {
		return false
	}
	r.catchingUp = false
	r.truncateLog(r.verified)
	r.logView = r.view
	r.persistHardState()
	r.event(Event{Kind: EventViewStarted, View: r.view, Primary: r.primaryOf(r.view), Op: r.op, Commit: r.commit})
	if r.isPrimary() {
		r.lastSent = r.tick
		r.event(Event{Kind: EventBecamePrimary, View: r.view, Primary: r.id, Op: r.op, Commit: r.commit})
	}
	return true
}

// installOp adds op from the primary's log at verified+1: identical to the
// local op there (same number, same view of preparation), it only extends
// the verified prefix; different, it replaces the local op and everything
// after it, which therefore were never committed. It reports false on a
// gap.
//
// Before anything else the op's chain hash must follow the verified
// prefix's: an op that does not is refused (reported false, and as an
// EventChainMismatch), whoever sent it. Identity is the chain hash, which
// covers the op and everything before it.
func (r *Replica) installOp(op *kmblog.Op) bool {
	// While a faulty run is fetched, the copies collected so far follow
	// the verified prefix.
	next := r.verified + 1 + uint64(len(r.candidates))
	switch {
	case op.Op < next:
		return true
	case op.Op > next || r.replacing:
		return false
	}
	var prev kmblog.Chain
	if n := len(r.candidates); n > 0 {
		prev = r.candidates[n-1].Chain
	} else {
		var err error
		if prev, err = r.chainAt(next - 1); err != nil {
			return false
		}
	}
	if r.chainOf(prev, op) != op.Chain {
		r.event(Event{Kind: EventChainMismatch, View: r.view, Primary: r.primaryOf(r.view), Op: op.Op})
		return false
	}
	if run, bad := r.faultyRunAt(op.Op); bad {
		return r.installCandidate(run, op)
	}
	if op.Op <= r.op {
		local, err := r.readPersisted(op.Op)
		if err != nil {
			if run, bad := r.faultyRunAt(op.Op); bad {
				return r.installCandidate(run, op) // just found corrupt
			}
			return false
		}
		if local.Chain == op.Chain {
			r.verified = op.Op
			r.prevOp, r.prev = op.Op, op.Chain
			return true
		}
		r.truncateLog(op.Op - 1)
	}
	r.appendOp(op)
	return true
}

// onOps installs the ops of a Prepare or Ops message from the primary.
func (r *Replica) onOps(m wire.Message) {
	if !r.fromPrimary(m) {
		return
	}
	r.lastHeard = r.tick
	r.primaryOp = primaryOp(m)
	gap := false
	for _, op := range m.Ops {
		if !r.installOp(op) {
			gap = true
			break
		}
	}
	r.setCommit(m.Commit)
	caughtUp := r.maybeCaughtUp()
	r.keptPromise()
	if gap || !caughtUp || (m.Type == wire.TypeOps && m.Op > r.verified) {
		r.requestRepair(m.Type == wire.TypeOps)
	}
	if caughtUp {
		r.ack()
	}
}

// ack tells the primary how far this backup's log goes: up to its first
// faulty op, if any. A backup that is catching up says nothing: its log is
// not yet the view's.
func (r *Replica) ack() {
	if r.catchingUp || r.status != StatusNormal || r.isPrimary() {
		return
	}
	r.send(wire.Message{Type: wire.TypePrepareOK, To: r.primaryOf(r.view), Op: r.capVerified(r.op)})
}

func (r *Replica) onPrepareOK(m wire.Message) {
	if r.status != StatusNormal || !r.isPrimary() {
		return
	}
	if m.Op > r.match[m.From] {
		r.match[m.From] = min(m.Op, r.op)
		r.maybeCommit()
	}
}

func (r *Replica) onCommit(m wire.Message) {
	if !r.fromPrimary(m) {
		return
	}
	r.lastHeard = r.tick
	r.primaryOp = m.Op
	r.setCommit(m.Commit)
	r.keptPromise()
	if m.Op > r.verified {
		r.requestRepair(false)
	}
	r.ack()
}

// requestRepair asks the primary for the ops after the verified prefix.
// Unless force is set, a request for the same op is not repeated within a
// heartbeat.
func (r *Replica) requestRepair(force bool) {
	from := r.verified + 1 + uint64(len(r.candidates))
	if !force && r.repairOp == from && r.tick-r.repairTick < uint64(r.cfg.HeartbeatTicks) {
		return
	}
	r.repairOp, r.repairTick = from, r.tick
	r.send(wire.Message{Type: wire.TypeGetOps, To: r.primaryOf(r.view), Op: from})
	r.event(Event{Kind: EventRepairRequested, View: r.view, Op: from})
}

// onGetOps serves repair from the primary's log.
func (r *Replica) onGetOps(m wire.Message) {
	if r.status != StatusNormal || !r.isPrimary() {
		return
	}
	r.serveOps(m, r.op)
}

// opsRange returns ops from..to, or false when one cannot be read.
func (r *Replica) opsRange(from, to uint64) ([]*kmblog.Op, bool) {
	if from > to {
		return nil, true
	}
	ops := make([]*kmblog.Op, 0, to-from+1)
	for n := from; n <= to; n++ {
		op, err := r.readPersisted(n)
		if err != nil {
			return nil, false
		}
		ops = append(ops, op)
	}
	return ops, true
}

// beginViewChange moves to view v in status view_change.
func (r *Replica) beginViewChange(v uint64) {
	if v < r.view || (v == r.view && r.status == StatusViewChange && r.svc != nil) {
		return
	}
	r.view, r.status = v, StatusViewChange
	r.lastHeard = r.tick
	r.resetTimeout()
	r.candidates, r.replacing = nil, false // copies from the old view's primary
	r.svc, r.dvc, r.dvcSent = map[uint64]bool{}, map[uint64]wire.Message{}, false
	r.haveVCBase = false
	if r.primaryOf(v) == r.id {
		r.vcBase, r.haveVCBase = r.commit, true
	}
	r.persistHardState()
	r.event(Event{Kind: EventViewChangeStarted, View: v, Primary: r.primaryOf(v)})
	r.broadcast(wire.Message{Type: wire.TypeStartViewChange, Commit: r.commit})
	r.maybeSendDVC()
}

func (r *Replica) onStartViewChange(m wire.Message) {
	if r.status != StatusViewChange {
		return // a StartViewChange for the view we are normal in is stale
	}
	r.svc[m.From] = true
	if m.From == r.primaryOf(r.view) && !r.haveVCBase {
		r.vcBase, r.haveVCBase = m.Commit, true
	}
	r.maybeSendDVC()
}

// maybeSendDVC sends DoViewChange once f other replicas started the view
// change and the new primary's base is known. A replica that cannot vouch
// for its whole log (faulty ops, an unkept promise) does not vote.
func (r *Replica) maybeSendDVC() {
	if r.dvcSent || !r.haveVCBase || len(r.svc) < r.quorum-1 || !r.canVote() {
		return
	}
	base := min(r.vcBase, r.op)
	var ops []*kmblog.Op
	if r.primaryOf(r.view) != r.id {
		last := min(r.op, base+uint64(maxViewChangeOps(r.cfg)))
		var ok bool
		if ops, ok = r.opsRange(base+1, last); !ok {
			return
		}
	}
	m := wire.Message{
		Type: wire.TypeDoViewChange, To: r.primaryOf(r.view), View: r.view,
		LogView: r.logView, Op: r.op, Commit: r.commit, Ops: ops,
	}

	r.dvcSent = true
	if m.To == r.id {
		m.From = r.id
		r.dvc[r.id] = m
		r.maybeStartView()
		return
	}
	r.lastDVC = m
	r.lastDVC.From = r.id
	r.send(m)
}

func (r *Replica) onDoViewChange(m wire.Message) {
	if r.status != StatusViewChange || r.primaryOf(r.view) != r.id {
		return
	}
	r.dvc[m.From] = m
	r.lastHeard = r.tick // progress
	r.maybeStartView()
}

// maybeStartView completes the view change at the new primary once a quorum
// of DoViewChange messages (its own included) arrived.
func (r *Replica) maybeStartView() {
	if len(r.dvc) < r.quorum {
		return
	}
	if _, ok := r.dvc[r.id]; !ok || !r.canLead() {
		return
	}
	best := r.dvc[r.id]
	var maxCommit uint64
	for _, m := range r.dvc {
		if m.LogView > best.LogView || (m.LogView == best.LogView && m.Op > best.Op) {
			best = m
		}
		maxCommit = max(maxCommit, m.Commit)
	}
	// Ops up to base are committed, so ours are right; the rest of the
	// new log is best's suffix, which must be complete.
	base := min(r.vcBase, r.op)
	r.verified = base
	target := r.op
	if best.From != r.id {
		target = max(best.Op, base)
		if best.Op > base && (len(best.Ops) == 0 || best.Ops[0].Op != base+1 || best.Ops[len(best.Ops)-1].Op != best.Op) {
			return // incomplete suffix; the view change times out and moves on
		}
		for _, op := range best.Ops {
			// A chain that does not follow, or a local copy found
			// corrupt on the way (the replica may not lead then): the
			// view change times out and moves on.
			if !r.installOp(op) || !r.canLead() {
				return
			}
		}
	} else {
		r.verified = r.op
	}
	r.truncateLog(target)
	r.setCommit(maxCommit)
	r.enterNormal(r.view, target)
	last := min(r.op, base+uint64(maxViewChangeOps(r.cfg)))
	ops, ok := r.opsRange(base+1, last)
	if !ok {
		ops = nil
	}
	r.broadcast(wire.Message{Type: wire.TypeStartView, Op: r.op, Commit: r.commit, LogView: base, Ops: ops})
	r.lastSent = r.tick
	r.maybeCommit()
}

// onStartView joins the view the new primary started. LogView carries the
// primary's base: Ops holds its ops after it, up to Op.
func (r *Replica) onStartView(m wire.Message) {
	if m.From != r.primaryOf(m.View) || m.View < r.view || (m.View == r.view && r.status == StatusNormal) {
		return
	}
	r.verified = min(r.commit, r.op)
	for _, op := range m.Ops {
		if !r.installOp(op) {
			break
		}
	}
	r.setCommit(m.Commit)
	r.enterNormal(m.View, m.Op)
}

// primaryOp is how far the primary's log reached when it sent m.
func primaryOp(m wire.Message) uint64 {
	if m.Type == wire.TypePrepare && len(m.Ops) > 0 {
		return m.Ops[len(m.Ops)-1].Op
	}
	return m.Op
}

// maxViewChangeOps bounds the log suffix of a DoViewChange or StartView. A
// new primary further behind than this cannot complete the view change; the
// view change then times out and moves on to the next replica.
func maxViewChangeOps(c Config) int { return max(8*c.MaxOpsPerMessage, c.MaxPipeline) }

// chainOf is op's chain hash after prev: from its encoding as it arrived
// when the driver has it (Config.Encoded), else from op.
func (r *Replica) chainOf(prev kmblog.Chain, op *kmblog.Op) kmblog.Chain {
	if r.cfg.Encoded != nil {
		if enc := r.cfg.Encoded(op); len(enc) >= kmblog.ChainSize {
			return r.chainer.Payload(prev, enc)
		}
	}
	return r.chainer.Op(prev, op)
}
