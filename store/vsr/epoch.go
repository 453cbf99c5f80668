package vsr

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// Reconfiguration follows Viewstamped Replication Revisited, section 7.
// The cluster's configuration (its members) changes by epochs. The primary
// of epoch e proposes the new configuration as an op (KindConfig) like any
// other, and nothing is proposed after it in epoch e: the config op is the
// epoch's last op. Once it is committed, epoch e+1 begins:
//
//   - Its first view is fixed by the config op itself (Configuration.View:
//     the first view after the proposer's in which the new configuration
//     makes the proposer primary), and so is its log: every op up to the
//     config op, all committed. Every replica that enters epoch e+1 enters
//     that same state, however it learned the config op committed and
//     whichever view of epoch e it was in. That is what makes the change
//     safe: there is one starting point, not one per old view. If the
//     proposer still leads, it goes on leading without a view change;
//     otherwise the new members elect another primary as usual.
//   - A replica enters the new epoch when its commit number reaches the
//     config op. A canary build (kmb_canary_epoch) enters when the op is
//     merely in its log; the simulator must catch that.
//   - A new member starts joining (Durable.Join): it takes part in
//     nothing until it learns of an epoch that includes it, from that
//     epoch's traffic. It then fetches the log (get_ops) up to the config
//     op, checking every op against the chain hashes, enters the epoch,
//     and catches up with the current view like any backup that missed
//     it. It acknowledges, counting in quorums, only once it holds the
//     view's log.
//   - A member that the new configuration leaves out is removed: it stops
//     taking part and says so (StatusRemoved).
//
// Messages carry their sender's epoch. One from a later epoch means this
// replica missed the end of its own: it fetches the log from the sender,
// from its commit number on (only its committed prefix is known to be in
// every later log). One from an earlier epoch comes from a replica that
// missed the change: a normal replica tells it (a Commit of its epoch) and
// serves its get_ops, the primary its whole log, a backup its committed
// prefix. A config op that a view change of epoch e replaces before it
// commits never starts an epoch.

// Member is one replica of a configuration: its node id and replication
// address (the address is the driver's; the replica uses ids only).
type Member struct {
	ID   uint64
	Addr string
}

// Configuration is what a config op holds: the epoch it starts, that
// epoch's first view, and its members, in order (the primary of view v is
// Members[v % len(Members)]).
type Configuration struct {
	Epoch   uint64
	View    uint64
	Members []Member
}

// IDs returns the members' node ids, in order.
func (c Configuration) IDs() []uint64 { return memberIDs(c.Members) }

// Keys of a config op's first two entries; one entry per member follows.
const (
	configEpochKey = "epoch"
	configViewKey  = "view"
)

// ConfigEntries encodes a configuration as a config op's entries: the
// epoch, the first view, then one entry per member in order, its id as
// the key and its address as a JSON string.
func ConfigEntries(c Configuration) []kmblog.Entry {
	entries := []kmblog.Entry{
		{Key: configEpochKey, Value: strconv.AppendUint(nil, c.Epoch, 10)},
		{Key: configViewKey, Value: strconv.AppendUint(nil, c.View, 10)},
	}
	for _, m := range c.Members {
		addr, _ := json.Marshal(m.Addr)
		entries = append(entries, kmblog.Entry{Key: strconv.FormatUint(m.ID, 10), Value: addr})
	}
	return entries
}

// ParseConfig decodes a config op.
func ParseConfig(op *kmblog.Op) (Configuration, error) {
	var c Configuration
	if op.Kind != kmblog.KindConfig || len(op.Entries) < 3 || op.Entries[0].Key != configEpochKey || op.Entries[1].Key != configViewKey {
		return c, fmt.Errorf("vsr: op %d is not a configuration", op.Op)
	}
	var err error
	if c.Epoch, err = strconv.ParseUint(string(op.Entries[0].Value), 10, 64); err != nil {
		return c, fmt.Errorf("vsr: op %d: epoch %q", op.Op, op.Entries[0].Value)
	}
	if c.View, err = strconv.ParseUint(string(op.Entries[1].Value), 10, 64); err != nil {
		return c, fmt.Errorf("vsr: op %d: view %q", op.Op, op.Entries[1].Value)
	}
	for _, e := range op.Entries[2:] {
		id, err := strconv.ParseUint(e.Key, 10, 64)
		if err != nil || id == 0 {
			return c, fmt.Errorf("vsr: op %d: member id %q", op.Op, e.Key)
		}
		var addr string
		if err := json.Unmarshal(e.Value, &addr); err != nil {
			return c, fmt.Errorf("vsr: op %d: member %d address: %v", op.Op, id, err)
		}
		c.Members = append(c.Members, Member{ID: id, Addr: addr})
	}
	if err := checkMembers(c.Members); err != nil {
		return c, fmt.Errorf("vsr: op %d: %w", op.Op, err)
	}
	return c, nil
}

func memberIDs(members []Member) []uint64 {
	ids := make([]uint64, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	return ids
}

// checkMembers refuses an empty member list, node id 0, and an id or an
// address that appears twice.
func checkMembers(members []Member) error {
	if len(members) == 0 {
		return fmt.Errorf("%w: no replica", ErrBadConfig)
	}
	ids, addrs := map[uint64]bool{}, map[string]bool{}
	for _, m := range members {
		switch {
		case m.ID == 0:
			return fmt.Errorf("%w: node id 0", ErrBadConfig)
		case ids[m.ID]:
			return fmt.Errorf("%w: node id %d appears twice", ErrBadConfig, m.ID)
		case m.Addr != "" && addrs[m.Addr]:
			return fmt.Errorf("%w: address %s appears twice", ErrBadConfig, m.Addr)
		}
		ids[m.ID], addrs[m.Addr] = true, true
	}
	return nil
}

// Errors of ProposeConfig (and of Propose during a reconfiguration).
var (
	// ErrReconfiguring: a configuration change is under way; the new epoch
	// takes ops once it commits.
	ErrReconfiguring = errors.New("vsr: a configuration change is in progress")
	// ErrBadConfig wraps the reasons a configuration is refused.
	ErrBadConfig = errors.New("vsr: configuration refused")
)

// pendingConfig is a config op in the log that has not started its epoch.
type pendingConfig struct {
	op  uint64
	cfg Configuration
}

// ProposeConfig has the primary propose a new configuration as an op. It
// is refused (with ErrBadConfig) when it names no replica, an id or an
// address twice, or node id 0, leaves out this primary (a primary cannot
// remove itself while it leads), or equals the current configuration; and
// (with ErrReconfiguring) while another change is in progress. It returns
// the config op's number; the new epoch begins when it commits.
func (r *Replica) ProposeConfig(members []Member, principal string) (uint64, error) {
	if r.status != StatusNormal || !r.isPrimary() || r.catchingUp {
		return 0, ErrNotPrimary
	}
	if len(r.pending) > 0 {
		return 0, ErrReconfiguring
	}
	if err := checkMembers(members); err != nil {
		return 0, err
	}
	ids := memberIDs(members)
	switch {
	case !slices.Contains(ids, r.id):
		return 0, fmt.Errorf("%w: it removes node %d, which leads: reconfigure through another leader first (stop this one, or restart it so that another takes over)", ErrBadConfig, r.id)
	case slices.Equal(ids, r.config):
		return 0, fmt.Errorf("%w: it is the current configuration", ErrBadConfig)
	}
	if int(r.op-r.commit)+1 > r.cfg.MaxPipeline {
		return 0, ErrBusy
	}
	// The new epoch's first view: the next one this primary leads in it.
	v := r.view + 1
	for ids[v%uint64(len(ids))] != r.id {
		v++
	}
	op := &kmblog.Op{
		Op:            r.op + 1,
		View:          r.view,
		Timestamp:     r.lastTimestamp + 1,
		Kind:          kmblog.KindConfig,
		FirstPosition: r.lastPosition + 1,
		Principal:     principal,
		Entries:       ConfigEntries(Configuration{Epoch: r.epoch + 1, View: v, Members: slices.Clone(members)}),
	}
	op.Chain = r.chainer.Op(r.lastChain, op)
	r.appendOp(op)
	if r.n > 1 {
		r.broadcastPrepare(wire.Message{Type: wire.TypePrepare, Commit: r.commit, Ops: []*kmblog.Op{op}})
	}
	r.maybeCommit()
	return op.Op, nil
}

// notePendingConfig records a config op that joins the log: it starts its
// epoch once committed. Config ops of epochs already entered (a log
// fetched from the start) are not pending.
func (r *Replica) notePendingConfig(op *kmblog.Op) {
	if op.Kind != kmblog.KindConfig {
		return
	}
	c, err := ParseConfig(op)
	if err != nil || c.Epoch <= r.epoch {
		return
	}
	r.pending = append(r.pending, pendingConfig{op: op.Op, cfg: c})
	if r.hasState() {
		r.persistHardState() // ConfigOp: where to find it after a restart
	}
}

// dropPendingAfter forgets config ops a truncation removed: replaced before
// they committed, they never start an epoch.
func (r *Replica) dropPendingAfter(n uint64) {
	for len(r.pending) > 0 && r.pending[len(r.pending)-1].op > n {
		r.pending = r.pending[:len(r.pending)-1]
	}
}

// loadPendingConfig finds a config op in the log that has not started its
// epoch, after a restart: the one the hard state names, or one past the
// commit number.
func (r *Replica) loadPendingConfig(hsConfigOp uint64) {
	from := r.commit + 1
	if hsConfigOp > 0 && hsConfigOp <= r.op {
		from = min(from, hsConfigOp)
	}
	for n := from; n <= r.op; n++ {
		op, err := r.readOp(n)
		if err != nil {
			continue // faulty: repaired copies pass through installOp
		}
		r.notePendingConfig(op)
		if n == hsConfigOp && n < r.commit {
			n = r.commit // nothing else to look for before the commit number
		}
	}
}

// hasState reports whether the replica persists hard state at all (a
// joining replica does not until it enters an epoch).
func (r *Replica) hasState() bool { return !r.joining && r.status != StatusRecovering }

// configCommitted reports whether p may start its epoch.
func (r *Replica) configCommitted(p pendingConfig) bool {
	if canaryEpoch {
		return r.op >= p.op // the planted bug: in the log is not committed
	}
	return r.commit >= p.op
}

// maybeEnterEpoch starts the latest epoch whose config op is committed,
// once this replica is normal in its own (or fetching the log of a later
// one). upTo is the epoch of the sender that told it of a later epoch, or
// 0: an epoch that leaves this replica out removes it unless a later one
// (up to upTo) may add it again.
func (r *Replica) maybeEnterEpoch(upTo uint64) {
	if r.status == StatusRemoved || r.status == StatusRecovering || (upTo == 0 && r.status != StatusNormal) {
		return
	}
	last := -1
	for i, p := range r.pending {
		if r.configCommitted(p) {
			last = i
		}
	}
	if last < 0 {
		return
	}
	p := r.pending[last]
	r.pending = slices.Clone(r.pending[last+1:])
	r.enterEpoch(p, upTo)
}

func (r *Replica) enterEpoch(p pendingConfig, upTo uint64) {
	r.prevConfig = r.config
	r.setConfig(p.cfg.IDs())
	r.epoch = p.cfg.Epoch
	r.match = map[uint64]uint64{}
	r.svc, r.dvc, r.dvcSent, r.haveVCBase = nil, nil, false, false
	r.event(Event{Kind: EventEpochStarted, Epoch: r.epoch, View: p.cfg.View, Op: p.op, Commit: r.commit})
	if !r.member(r.id) {
		// A later epoch, known from the message or from the snapshot whose
		// epoch the replica is fetching (joinEpoch), may add it back.
		if r.epoch < upTo || r.epoch < r.joinEpoch {
			r.status, r.joining = StatusJoining, true // a later epoch may add it back
			return
		}
		r.status, r.joining = StatusRemoved, false
		r.persistHardState()
		r.event(Event{Kind: EventRemoved, Epoch: r.epoch, View: p.cfg.View})
		return
	}
	// The epoch's first view and log, the same for every replica: ops
	// past the config op belong to no view of it yet (nothing follows a
	// config op in its own epoch).
	r.joining = false
	r.truncateLog(p.op)
	r.catchingUp, r.candidates, r.replacing = false, nil, false
	r.lastHeard, r.lastSent = r.tick, r.tick
	r.resetTimeout()
	if upTo != 0 {
		// Entered by fetching the epoch's ops from another replica (a new
		// member, or one that missed the change or lost its disk): the
		// epoch may be well past its first view's start, whose log then
		// holds more than the config op (this replica may even have led
		// it before it lost its disk). It claims no view's log and waits
		// for the view's normal primary, as after a snapshot; it does not
		// lead a view it knows nothing of.
		r.logView = 0
		if r.primaryOf(p.cfg.View) == r.id || p.cfg.View < r.view {
			r.beginViewChange(max(r.view, p.cfg.View) + 1)
			return
		}
		r.view = p.cfg.View
		r.status = StatusNormal
		r.catchingUp, r.catchUpTo = true, catchUpUnknown
		r.persistHardState()
		return
	}
	r.view, r.logView, r.status = p.cfg.View, p.cfg.View, StatusNormal
	r.persistHardState()
	r.event(Event{Kind: EventViewStarted, Epoch: r.epoch, View: r.view, Primary: r.primaryOf(r.view), Op: r.op, Commit: r.commit})
	if r.isPrimary() {
		if !r.canLead() {
			r.beginViewChange(r.view + 1)
			return
		}
		r.event(Event{Kind: EventBecamePrimary, Epoch: r.epoch, View: r.view, Primary: r.id, Op: r.op, Commit: r.commit})
		r.broadcast(wire.Message{Type: wire.TypeCommit, Op: r.op, Commit: r.commit})
	}
}

// setConfig makes ids the configuration, in order.
func (r *Replica) setConfig(ids []uint64) {
	r.config = slices.Clone(ids)
	r.n, r.quorum = len(r.config), len(r.config)/2+1
}

func (r *Replica) member(id uint64) bool { return slices.Contains(r.config, id) }

// stepOtherEpoch handles a message whose sender is in another epoch (or
// any message while joining).
func (r *Replica) stepOtherEpoch(m wire.Message) {
	switch {
	case m.Epoch > r.epoch:
		r.stepLaterEpoch(m)
	case m.Epoch < r.epoch:
		// Its sender missed the change: tell it, and serve its fetch.
		// Only the committed prefix: it is the same in every log, so any
		// replica serves it, even during a view change (the sender may be
		// the vote that completes it), and the asker, which follows no
		// primary yet, may take commit numbers from several of them.
		if r.status != StatusNormal && r.status != StatusViewChange && r.status != StatusRemoved {
			return
		}
		if m.Type == wire.TypeGetOps {
			r.serveOps(m, r.commit)
			return
		}
		if last, ok := r.lastTold[m.From]; !ok || r.tick-last >= uint64(r.cfg.HeartbeatTicks) {
			r.lastTold[m.From] = r.tick
			r.send(wire.Message{Type: wire.TypeCommit, To: m.From, Op: r.commit, Commit: r.commit})
		}
	}
}

// stepLaterEpoch: this replica missed the end of its epoch (or is a new
// member). It fetches the sender's log from its own commit number on,
// enters the epochs whose config ops that commits, and then joins the
// sender's view.
func (r *Replica) stepLaterEpoch(m wire.Message) {
	switch r.status {
	case StatusRemoved:
		return
	case StatusRecovering:
		switch {
		case r.learnEpoch != 0 && m.Epoch >= r.learnEpoch:
			switch m.Type {
			case wire.TypeOps:
				r.learnConfig(m)
			case wire.TypeStateTransfer:
				r.onStateTransfer(m) // its snapshot holds the configuration
			}
		case r.recoveryTarget != 0:
			r.startRecovery() // the epoch changed under the recovery: start over
		}
		return
	}
	if !r.joining {
		// Only the committed prefix is known to be in the later epoch's
		// log.
		r.verified = min(r.verified, r.commit)
	}
	switch m.Type {
	case wire.TypeStateTransfer:
		r.onStateTransfer(m)
		return
	case wire.TypeOps:
	default:
		// Its own commit number may cover the config op of the
		// sender's epoch already (it crashed after committing it and
		// restarted in a view change of its old epoch): then it has
		// nothing to fetch first, and the sender, whose committed
		// prefix it holds, would answer a fetch with nothing.
		r.maybeEnterEpoch(m.Epoch)
		if r.epoch < m.Epoch && r.status != StatusRemoved {
			r.requestEpochOps(m.From, false)
		}
		return
	}
	r.installCommitted(m)
	r.maybeEnterEpoch(m.Epoch)
	switch {
	case r.status == StatusRemoved:
	case r.epoch < m.Epoch:
		r.requestEpochOps(m.From, true)
	case m.From == r.primaryOf(m.View) && m.View >= r.view && m.Flags&wire.FlagNormal != 0:
		r.joinView(m.View, m.Op)
	}
}

// installCommitted installs the ops of m up to its sender's commit number,
// and takes that commit number. A replica that follows no primary (it
// catches up with a later epoch, or reads its configuration) fetches
// from whoever answers: their committed prefixes agree, their other ops
// need not, and a commit number of one must never cover an op of another.
func (r *Replica) installCommitted(m wire.Message) {
	for _, op := range m.Ops {
		if op.Op > m.Commit || !r.installOp(op) {
			break
		}
	}
	r.setCommit(m.Commit)
}

// requestEpochOps asks replica from for the ops after the verified
// prefix, to catch up with a later epoch; at most once a heartbeat unless
// force.
func (r *Replica) requestEpochOps(from uint64, force bool) {
	next := r.verified + 1 + uint64(len(r.candidates))
	if !force && r.repairOp == next && r.tick-r.repairTick < uint64(r.cfg.HeartbeatTicks) {
		return
	}
	r.repairOp, r.repairTick = next, r.tick
	r.send(wire.Message{Type: wire.TypeGetOps, To: from, Op: next})
	r.event(Event{Kind: EventRepairRequested, View: r.view, Op: next})
}

// serveOps answers a get_ops with ops of this replica's log up to limit,
// or, for ops before the log's start, with a state transfer.
func (r *Replica) serveOps(m wire.Message, limit uint64) {
	if m.Op == 0 || m.Op > limit {
		return
	}
	if m.Op < r.logStart {
		r.sendStateTransfer(m.From)
		return
	}
	last := min(limit, m.Op+uint64(r.cfg.MaxOpsPerMessage)-1)
	ops, ok := r.opsRange(m.Op, last)
	if !ok {
		return
	}
	r.send(wire.Message{Type: wire.TypeOps, To: m.From, Op: limit, Commit: r.commit, Ops: ops})
}
