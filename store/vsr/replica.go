package vsr

import (
	"fmt"
	"slices"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// Replica is one VSR replica. It is not safe for concurrent use: one
// goroutine (the driver's event loop) calls every method.
type Replica struct {
	cfg    Config
	id     uint64
	n      int // len(config)
	quorum int

	// The configuration (see epoch.go): the epoch, its members, the
	// previous epoch's, and config ops in the log that have not started
	// their epoch (at most one, but for a replica fetching a long log).
	epoch      uint64
	config     []uint64
	prevConfig []uint64
	pending    []pendingConfig
	joining    bool              // StatusJoining: waiting for, or fetching the log of, an epoch that adds it
	lastTold   map[uint64]uint64 // when a replica of an older epoch was last told of this one

	status  Status
	view    uint64
	logView uint64
	op      uint64 // last op in the log, persisted or about to be
	commit  uint64 // highest op known committed; never above verified
	durable uint64 // last op the driver has persisted
	// verified: the log up to here is known to be a prefix of the current
	// view's log. Equal to op in normal operation; below it while a backup
	// catches up with a view it joined late.
	verified uint64
	// While catchingUp, the replica must verify its log up to catchUpTo
	// before it claims the view's log (sets logView) and acknowledges.
	catchingUp bool
	catchUpTo  uint64

	lastPosition  uint64
	lastTimestamp int64
	// The log starts at logStart; base is the op before (transfer.go).
	logStart     uint64
	base         Base
	transfer     *StateTransfer // the last request for the driver
	transferOut  bool           // not yet handed out in a Ready
	transferTick uint64
	// joinFrom and joinEpoch: after a checkpoint of an epoch older than
	// its sender's, the replica fetches the rest from joinFrom until it
	// reaches joinEpoch (the sender's epoch then); asked again every two
	// heartbeats while joining, as nobody else calls a replica that is
	// no member of the epoch it is fetching.
	joinFrom, joinEpoch uint64
	lastChain           kmblog.Chain // chain hash of op r.op

	// chainer computes chain hashes (the primary's for its proposals, a
	// backup's to check the primary's ops); prev caches the chain hash
	// of op prevOp, the one installOp checks the next op against.
	chainer kmblog.Chainer
	prevOp  uint64
	prev    kmblog.Chain

	// mem holds ops memBase+1 .. op: everything not yet known to be both
	// committed and durable, so the replica never reads unpersisted ops
	// from Storage.
	mem     []*kmblog.Op
	memBase uint64

	// Primary: the highest op each replica acknowledged in this view.
	match map[uint64]uint64

	// View change.
	svc        map[uint64]bool // replicas whose StartViewChange for view arrived
	vcBase     uint64          // the new primary's commit number, announced in its StartViewChange
	haveVCBase bool
	dvc        map[uint64]wire.Message // at the new primary
	dvcSent    bool
	lastDVC    wire.Message

	// Recovery.
	nonce          uint64
	recovery       map[uint64]wire.Message
	recoveryTarget uint64 // op to reach before turning normal
	learnEpoch     uint64 // recovering: a later epoch whose configuration it reads from the log first
	fresh          bool   // never held state

	// Repair: the op last asked for and when.
	repairOp   uint64
	repairTick uint64

	// Corruption (see Durable.Faulty): the runs of faulty ops, sorted;
	// the primary's copies of the first run collected so far; the log
	// length the replica may have acknowledged and must hold again before
	// it votes, and how much of that promise is durable; verified copies
	// for the driver to write back; when the first run last made progress.
	faulty          []Run
	candidates      []*kmblog.Op
	replacing       bool   // the candidates replace the run once the promise is durable
	primaryOp       uint64 // the primary's op number, as its last message said
	promised        uint64
	promisedDurable uint64
	repairs         []*kmblog.Op
	faultyTick      uint64

	// Timers, in ticks.
	tick        uint64
	lastHeard   uint64 // from the primary (backup) or last view-change progress
	lastSent    uint64 // primary: last broadcast
	timeout     uint64 // randomised view-change timeout
	lastContact map[uint64]uint64

	// Pending output.
	hs         HardState
	hsDirty    bool
	truncate   bool
	truncAfter uint64
	appends    []*kmblog.Op
	msgs       []wire.Message
	early      []wire.Message // Ready.Early
	// earlyView is view+1 once the primary may send prepares early in
	// view (HardState.EarlyView), earlyDurable once that is durable.
	earlyView, earlyDurable uint64
	// epochDurable is the epoch of the last hard state made durable: the
	// log must keep the config op of a later epoch until it is.
	epochDurable uint64
	events       []Event
	commitSent   uint64
}

// New returns a replica that starts from the durable state d.
func New(cfg Config, d Durable) (*Replica, error) {
	r, err := newReplica(cfg, d)
	if err == nil && d.HasState && r.epoch > d.HardState.Epoch {
		// Started in the configuration of its checkpoint (StartEpoch):
		// the hard state follows, before the log's start may move
		// (SetLogStart waits for the epoch to be durable).
		r.persistHardState()
	}
	return r, err
}

func newReplica(cfg Config, d Durable) (*Replica, error) {
	hs, hasState, lastOp := d.HardState, d.HasState, d.LastOp
	cfg.defaults()
	if d.Start.Op > lastOp {
		return nil, fmt.Errorf("vsr: the log starts after op %d but ends at op %d", d.Start.Op, lastOp)
	}
	check := cfg
	if c := d.HardState.Config; len(c) > 0 {
		// The persisted configuration is the one in force; it may leave
		// this replica out (removed).
		check.Replicas = c
		if !slices.Contains(c, cfg.NodeID) {
			check.Replicas = append(slices.Clone(c), cfg.NodeID)
		}
	}
	if err := check.Validate(); err != nil {
		return nil, err
	}
	r := &Replica{
		cfg:         cfg,
		id:          cfg.NodeID,
		epoch:       d.HardState.Epoch,
		match:       map[uint64]uint64{},
		lastContact: map[uint64]uint64{},
		lastTold:    map[uint64]uint64{},
		logStart:    d.Start.Op + 1,
		base:        d.Start,
	}
	if len(d.HardState.Config) > 0 {
		r.setConfig(d.HardState.Config)
	} else {
		r.setConfig(cfg.Replicas)
	}
	fromCheckpoint := false
	if d.StartEpoch > r.epoch && len(d.StartConfig) > 0 {
		fromCheckpoint = true
		// The checkpoint the log starts after is of a later epoch than
		// the hard state (a replica that installed it while recovering,
		// and stopped before it persisted anything): its config op is
		// not in the log, so the checkpoint is where it is learned.
		r.epoch = d.StartEpoch
		r.setConfig(d.StartConfig)
	}
	r.resetTimeout()
	if !hasState && d.Join {
		// A new member: it waits for the epoch that adds it. Its log,
		// after a checkpoint it may have installed, is fetched again.
		if lastOp > 0 {
			r.op, r.durable, r.memBase, r.verified = lastOp, lastOp, lastOp, lastOp
			r.truncateLog(d.Start.Op)
		}
		r.commit = d.Start.Op // a checkpoint is of committed ops
		if err := r.loadLast(); err != nil {
			return nil, err
		}
		if fromCheckpoint && r.member(r.id) {
			// Its checkpoint is of the epoch that added it, whose config
			// op is gone: a member already, it claims no view's log and
			// learns the view and its log from the primary's first
			// message (primary traffic of a later view than 0).
			if r.primaryOf(0) == r.id {
				r.beginViewChange(1)
				return r, nil
			}
			r.status, r.catchingUp, r.catchUpTo = StatusNormal, true, catchUpUnknown
			return r, nil
		}
		r.status, r.joining = StatusJoining, true
		return r, nil
	}
	if !hasState {
		// Ops without hard state cannot be trusted to be a prefix of any
		// view's log: drop them and fetch the log again (after a
		// checkpoint installed before a crash, which holds only committed
		// ops).
		if lastOp > 0 {
			r.op, r.durable, r.memBase, r.verified = lastOp, lastOp, lastOp, lastOp
			r.truncateLog(d.Start.Op)
		}
		r.commit = d.Start.Op
		if err := r.loadLast(); err != nil {
			return nil, err
		}
		r.fresh = true
		r.status = StatusRecovering
		if r.n == 1 {
			r.formatNewCluster()
			return r, nil
		}
		r.startRecovery()
		return r, nil
	}
	r.view, r.logView, r.commit = hs.View, hs.LogView, min(hs.Commit, lastOp)
	if !fromCheckpoint {
		r.epoch = hs.Epoch
	}
	r.op, r.durable, r.memBase, r.verified = lastOp, lastOp, lastOp, lastOp
	r.hs = hs
	r.promised, r.promisedDurable = hs.Promised, hs.Promised
	r.earlyView, r.earlyDurable = hs.EarlyView, hs.EarlyView
	r.epochDurable = hs.Epoch
	if err := r.setFaulty(d.Faulty); err != nil {
		return nil, err
	}
	if err := r.loadLast(); err != nil {
		return nil, err
	}
	r.loadPendingConfig(hs.ConfigOp)
	if !r.member(r.id) {
		r.status = StatusRemoved
		return r, nil
	}
	if r.view > r.logView {
		// It crashed during a view change or while catching up: only
		// its committed prefix is known to be in the current view's log.
		r.verified = r.commit
		r.status = StatusViewChange
		r.beginViewChange(r.view)
	} else if r.isPrimary() && (!r.canLead() || hs.EarlyView == r.view+1) {
		// A primary that sent prepares before their ops were durable in
		// its own log (Ready.Early) does not lead that view again after a
		// restart: the backups may hold ops of the view that it lost, and
		// it must not give their numbers to other ops. Nor can a primary
		// lead that cannot read its whole log. The next replica takes
		// over; this one catches up from it.
		r.status = StatusViewChange
		r.beginViewChange(r.view + 1)
	} else {
		r.status = StatusNormal
		r.lastHeard = r.tick
		if r.isPrimary() {
			r.match = map[uint64]uint64{}
			r.event(Event{Kind: EventBecamePrimary, View: r.view, Primary: r.id, Commit: r.commit})
		}
	}
	return r, nil
}

// reloadLast is loadLast after the log got shorter. The new last op may
// have rotted on disk unnoticed: it is then held as faulty, and since a
// faulty op is never extended (the verified prefix ends before it), the
// stale position, timestamp and chain hash are never used; the op's
// repair replaces it first.
func (r *Replica) reloadLast() {
	if err := r.loadLast(); err != nil {
		if _, bad := r.faultyRunAt(r.op); !bad {
			r.markFaulty(r.op)
		}
	}
}

// loadLast reads the position and timestamp of the last op.
func (r *Replica) loadLast() error {
	if r.op == r.logStart-1 {
		r.lastPosition, r.lastTimestamp, r.lastChain = r.base.LastPosition, r.base.Timestamp, r.base.Chain
		return nil
	}
	op, err := r.readOp(r.op)
	if err != nil {
		return fmt.Errorf("vsr: read last op %d: %w", r.op, err)
	}
	r.lastPosition, r.lastTimestamp, r.lastChain = op.LastPosition(), op.Timestamp, op.Chain
	return nil
}

func (r *Replica) readOp(n uint64) (*kmblog.Op, error) {
	if n > r.memBase && n <= r.op {
		return r.mem[n-r.memBase-1], nil
	}
	// Repaired copies are what the disk holds once the pending Ready is
	// persisted.
	if k := len(r.repairs); k > 0 && n >= r.repairs[0].Op && n <= r.repairs[k-1].Op {
		for _, op := range r.repairs {
			if op.Op == n {
				return op, nil
			}
		}
	}
	if n > r.durable || n == 0 {
		return nil, fmt.Errorf("vsr: op %d is not durable (durable %d)", n, r.durable)
	}
	op, err := r.cfg.Storage.Read(n)
	if err != nil {
		return nil, err
	}
	return &op, nil
}

// primaryOf returns the primary of view v.
func (r *Replica) primaryOf(v uint64) uint64 { return r.config[v%uint64(r.n)] }

func (r *Replica) isPrimary() bool { return r.primaryOf(r.view) == r.id }

// State returns a snapshot for status and metrics.
func (r *Replica) State() State {
	return State{
		Status:        r.status,
		View:          r.view,
		LogView:       r.logView,
		Op:            r.op,
		Commit:        r.commit,
		Primary:       r.primaryOf(r.view),
		IsPrimary:     r.status == StatusNormal && r.isPrimary() && !r.catchingUp,
		CatchingUp:    r.status == StatusNormal && r.catchingUp,
		Faulty:        r.faultyOps(),
		Promised:      r.promised,
		Epoch:         r.epoch,
		Config:        slices.Clone(r.config),
		Reconfiguring: len(r.pending) > 0,
	}
}

// LastContact returns the tick at which a message from id last arrived (0:
// never). The driver uses it for healthy_replicas.
func (r *Replica) LastContact(id uint64) uint64 { return r.lastContact[id] }

// Acked returns the last op backup id acknowledged to this replica while
// it leads the current view (prepare_ok), 0 when this replica is not a
// normal primary or id has acknowledged nothing in this view. The driver
// keeps the ops above it while id is up (local retention), so that id
// catches up with ops rather than a state transfer.
func (r *Replica) Acked(id uint64) uint64 {
	if r.status != StatusNormal || !r.isPrimary() {
		return 0
	}
	return r.match[id]
}

// Now returns the current logical time in ticks.
func (r *Replica) Now() uint64 { return r.tick }

func (r *Replica) resetTimeout() {
	t := r.cfg.ViewChangeTicks
	r.timeout = uint64(t + r.cfg.Rand(t))
}

func (r *Replica) event(e Event) {
	e.Epoch = r.epoch
	r.events = append(r.events, e)
}

func (r *Replica) send(m wire.Message) {
	m.From = r.id
	m.Epoch = r.epoch
	if m.View == 0 {
		m.View = r.view
	}
	switch m.Type {
	case wire.TypePrepare, wire.TypeCommit, wire.TypeOps, wire.TypeStateTransfer:
		// Only the normal primary's traffic may pull a receiver into its
		// view; a replica in a view change that it would lead, answering
		// a replica of an older epoch, must not.
		if r.status == StatusNormal && r.isPrimary() && !r.catchingUp {
			m.Flags |= wire.FlagNormal
		}
	}
	r.msgs = append(r.msgs, m)
}

func (r *Replica) broadcast(m wire.Message) {
	for _, id := range r.config {
		if id != r.id {
			m.To = id
			r.send(m)
		}
	}
}

func (r *Replica) persistHardState() {
	r.hs = HardState{View: r.view, LogView: r.logView, Commit: r.commit, Promised: r.promised, Epoch: r.epoch, Config: slices.Clone(r.config)}
	if r.earlyView == r.view+1 {
		r.hs.EarlyView = r.earlyView
	}
	if n := len(r.pending); n > 0 {
		r.hs.ConfigOp = r.pending[n-1].op
	}
	r.hsDirty = true
}

// appendOp adds op, which must be r.op+1, to the log as verified.
func (r *Replica) appendOp(op *kmblog.Op) {
	r.op++
	r.verified = r.capVerified(r.op)
	r.mem = append(r.mem, op)
	r.appends = append(r.appends, op)
	r.lastPosition, r.lastTimestamp, r.lastChain = op.LastPosition(), op.Timestamp, op.Chain
	r.prevOp, r.prev = op.Op, op.Chain
	r.notePendingConfig(op)
}

// chainAt returns the chain hash of op n of the log (the zero hash for
// n == 0), reading the op unless it is the one last installed or checked.
func (r *Replica) chainAt(n uint64) (kmblog.Chain, error) {
	switch {
	case n == 0:
		return kmblog.Chain{}, nil
	case n == r.logStart-1:
		return r.base.Chain, nil
	case n < r.logStart:
		return kmblog.Chain{}, fmt.Errorf("vsr: op %d is before the log's start (%d)", n, r.logStart)
	case n == r.prevOp:
		return r.prev, nil
	case n == r.op:
		return r.lastChain, nil
	}
	op, err := r.readPersisted(n)
	if err != nil {
		return kmblog.Chain{}, err
	}
	r.prevOp, r.prev = n, op.Chain
	return op.Chain, nil
}

// truncateLog removes every op after n.
func (r *Replica) truncateLog(n uint64) {
	if n >= r.op {
		return
	}
	// Ops not yet handed to the driver are simply forgotten; the rest need
	// a truncation on disk.
	firstPending := r.op - uint64(len(r.appends)) + 1
	if n+1 >= firstPending {
		r.appends = r.appends[:n+1-firstPending]
	} else {
		r.appends = r.appends[:0]
		if !r.truncate || n < r.truncAfter {
			r.truncate, r.truncAfter = true, n
		}
	}
	if n > r.memBase {
		r.mem = r.mem[:n-r.memBase]
	} else {
		r.mem, r.memBase = r.mem[:0], n
	}
	r.op = n
	if r.prevOp > n {
		r.prevOp = 0 // its chain hash was of an op now gone
	}
	r.durable = min(r.durable, n)
	r.commit = min(r.commit, n)
	r.verified = min(r.verified, n)
	r.dropFaultyAfter(n)
	r.dropPendingAfter(n)
	r.reloadLast()
	r.event(Event{Kind: EventLogTruncated, View: r.view, Op: n})
}

func (r *Replica) setCommit(c uint64) {
	c = min(c, r.verified)
	if c > r.commit {
		r.commit = c
	}
}

// HasReady reports whether Ready has anything.
func (r *Replica) HasReady() bool {
	return r.hsDirty || r.truncate || len(r.appends) > 0 || len(r.msgs) > 0 || len(r.early) > 0 ||
		len(r.events) > 0 || len(r.repairs) > 0 || r.commit != r.commitSent || r.transferOut
}

// Ready returns the pending output. Call Advance once it is handled.
func (r *Replica) Ready() Ready {
	rd := Ready{
		HardState:     r.hs,
		MustPersist:   r.hsDirty,
		Repair:        r.repairs,
		Truncate:      r.truncate,
		TruncateAfter: r.truncAfter,
		Append:        r.appends,
		Messages:      r.msgs,
		Early:         r.early,
		CommitTo:      r.commit,
		Events:        r.events,
	}
	if r.transferOut {
		rd.StateTransfer, r.transferOut = r.transfer, false
	}
	rd.SyncLater = r.status == StatusNormal && r.isPrimary() &&
		!rd.MustPersist && !rd.Truncate && len(rd.Repair) == 0 && rd.StateTransfer == nil
	r.hsDirty, r.truncate, r.truncAfter = false, false, 0
	r.appends, r.msgs, r.early, r.events, r.repairs = nil, nil, nil, nil, nil
	r.commitSent = r.commit
	return rd
}

// Advance tells the replica that rd was persisted, sent and applied.
func (r *Replica) Advance(rd Ready) {
	if rd.MustPersist {
		r.promisedDurable = rd.HardState.Promised
		r.earlyDurable = rd.HardState.EarlyView
		r.epochDurable = rd.HardState.Epoch
		if r.replacing && r.promisedDurable >= r.promised {
			r.replaceWithCandidates()
		}
	}
	if rd.Truncate {
		r.durable = min(r.durable, rd.TruncateAfter)
	}
	r.durable = max(r.durable, r.heldThrough(rd.Append))
	r.trimMem()
	if r.status == StatusNormal && r.isPrimary() {
		r.maybeCommit()
	}
	r.maybeEnterEpoch(0)
}

// heldThrough is the last of appended (one Ready's appends) that the log
// still holds, 0 for none: a step after the Ready (SyncLater) may have cut
// some and put other ops at their numbers, which its own Ready makes
// durable.
func (r *Replica) heldThrough(appended []*kmblog.Op) uint64 {
	for i := len(appended) - 1; i >= 0; i-- {
		n := appended[i].Op
		switch {
		case n > r.op:
			continue
		case n <= r.memBase:
			return n // trimmed: committed and durable already
		case r.mem[n-r.memBase-1] == appended[i]:
			return n
		}
	}
	return 0
}

// trimMem drops ops that are both committed and durable from memory.
func (r *Replica) trimMem() {
	keep := min(r.commit, r.durable)
	if keep <= r.memBase {
		return
	}
	drop := keep - r.memBase
	r.mem = slices.Clone(r.mem[drop:])
	r.memBase = keep
}

// Propose turns proposals into ops at the primary and replicates them. It
// returns the op number of the first.
func (r *Replica) Propose(ps ...Proposal) (uint64, error) {
	if r.status != StatusNormal || !r.isPrimary() || r.catchingUp {
		return 0, ErrNotPrimary
	}
	if len(r.pending) > 0 {
		return 0, ErrReconfiguring // nothing follows a config op in its epoch
	}
	if len(ps) == 0 {
		return 0, nil
	}
	if int(r.op-r.commit)+len(ps) > r.cfg.MaxPipeline {
		return 0, ErrBusy
	}
	first := r.op + 1
	ops := make([]*kmblog.Op, len(ps))
	for i, p := range ps {
		kind := p.Kind
		if kind == kmblog.KindData && p.Tenant == "" && len(p.Entries) == 0 {
			kind = kmblog.KindMarker
		}
		// Strictly increasing across the log, and so across views (a new
		// primary's log holds every committed op): a time names a prefix
		// of the log, which backup checkpoints rely on.
		ts := max(p.Timestamp, r.lastTimestamp+1)
		op := &kmblog.Op{
			Op:            r.op + 1,
			View:          r.view,
			Timestamp:     ts,
			Kind:          kind,
			Tenant:        p.Tenant,
			FirstPosition: r.lastPosition + 1,
			ClientID:      p.ClientID,
			RequestID:     p.RequestID,
			Principal:     p.Principal,
			Entries:       p.Entries,
		}
		op.Chain = r.chainer.Op(r.lastChain, op)
		r.appendOp(op)
		ops[i] = op
	}
	if r.n > 1 {
		r.broadcastPrepare(wire.Message{Type: wire.TypePrepare, Commit: r.commit, Ops: ops})
	}
	return first, nil
}

// broadcastPrepare sends the primary's prepare of the ops it just
// appended. Once the hard state says so (EarlyView), prepares go into
// Ready.Early: out while the ops are made durable here. The primary's own
// acknowledgement counts only once they are (maybeCommit uses r.durable),
// so a quorum still holds every committed op durably; and a restarted
// primary whose hard state says it sent early does not lead that view
// again. The first prepare of a view waits for that hard state.
func (r *Replica) broadcastPrepare(m wire.Message) {
	r.lastSent = r.tick
	if r.earlyDurable != r.view+1 {
		if r.earlyView != r.view+1 {
			r.earlyView = r.view + 1
			r.persistHardState()
		}
		r.broadcast(m)
		return
	}
	n := len(r.msgs)
	r.broadcast(m)
	r.early = append(r.early, r.msgs[n:]...)
	r.msgs = r.msgs[:n]
}

// maybeCommit advances the primary's commit number to the highest op a
// quorum (itself included, once durable) acknowledged.
func (r *Replica) maybeCommit() {
	acked := make([]uint64, 0, r.n)
	acked = append(acked, r.durable)
	for _, id := range r.config {
		if id != r.id {
			acked = append(acked, min(r.match[id], r.op))
		}
	}
	slices.Sort(acked)
	slices.Reverse(acked)
	q := r.quorum
	if canary && q > 1 {
		q-- // the planted bug: see canary_on.go
	}
	c := acked[q-1]
	if c > r.commit {
		r.commit = c
		r.trimMem()
	}
}
