package vsr

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// This file is a small deterministic test harness: a cluster of replicas
// with in-memory disks and a message queue that the test delivers by hand.
// It is the driver of the package comment reduced to its contract (persist
// the log, then the hard state, send, apply, Advance) plus invariant checks
// that fail the test on the first violation.

// clusterOpts configures a test cluster. Zero fields take the replica's
// defaults, except ViewChangeTicks (10) and HeartbeatTicks (1), which are
// set explicitly so that scripts do not depend on package defaults.
type clusterOpts struct {
	N                int
	Fresh            bool // start every replica without state (recovery handshake)
	HeartbeatTicks   int
	ViewChangeTicks  int
	MaxPipeline      int
	MaxOpsPerMessage int
	Seed             uint64
	// FixedRand, when set, makes Rand(n) return *FixedRand % n instead of
	// a seeded random number: the view-change timeout is then exactly
	// ViewChangeTicks (with 0), which keeps scripts easy to follow.
	FixedRand *int
	// Encoded, when set, is each replica's Config.Encoded (given the
	// replica's id).
	Encoded func(id uint64, op *kmblog.Op) []byte
}

// testNode is one simulated machine: the disk survives crashes, the rest
// does not.
type testNode struct {
	id uint64

	// Disk. corrupt marks ops that no longer read back; the op stays, so
	// that a repair can be checked against it.
	disk     []*kmblog.Op
	corrupt  map[uint64]bool
	hs       HardState
	hasState bool

	// Memory.
	r       *Replica // nil while down
	applied uint64
	rng     *rand.Rand

	// crashAt, when set, crashes the replica in the middle of its next
	// Ready with log changes or hard state (see crashPoint).
	crashAt crashPoint

	// replicas is the configuration a node added by "join" boots with
	// (the new one); join marks it as joining while it has no state.
	replicas []uint64
	join     bool

	// gone: the ops up to it were deleted (compact) or came with a
	// snapshot; they stay in disk, unreadable, so that indexes hold.
	// cfgEpoch and cfgIDs are the configuration of the last config op
	// applied (nil: the initial one), what a snapshot carries.
	gone     uint64
	cfgEpoch uint64
	cfgIDs   []uint64
}

// crashPoint is where in the driver contract a replica crashes.
type crashPoint int

const (
	noCrash            crashPoint = iota
	crashBeforePersist            // nothing of the Ready is durable
	crashTornAppend               // truncation and part of the appends are durable
	crashAfterLog                 // the log is durable, the hard state is not
	crashBeforeSend               // log and hard state are durable, nothing sent
	crashAfterCut                 // at the next Ready that truncates: the cut is durable, nothing else
)

var crashPointNames = map[string]crashPoint{
	"before_persist": crashBeforePersist,
	"torn_append":    crashTornAppend,
	"after_log":      crashAfterLog,
	"before_send":    crashBeforeSend,
	"after_cut":      crashAfterCut,
}

// nodeStorage serves a replica's reads from its node's disk.
type nodeStorage struct{ n *testNode }

func (s nodeStorage) Read(op uint64) (kmblog.Op, error) {
	if op == 0 || op > uint64(len(s.n.disk)) || op <= s.n.gone {
		return kmblog.Op{}, fmt.Errorf("harness: op %d not on disk (%d ops, the first %d gone)", op, len(s.n.disk), s.n.gone)
	}
	if s.n.corrupt[op] {
		return kmblog.Op{}, fmt.Errorf("harness: op %d: %w", op, kmblog.ErrCorrupt)
	}
	return *cloneOp(s.n.disk[op-1]), nil
}

// nodeEvent is an event with the replica that emitted it.
type nodeEvent struct {
	id uint64
	Event
}

type testCluster struct {
	tb    testing.TB
	opts  clusterOpts
	ids   []uint64
	nodes map[uint64]*testNode

	queue  []wire.Message // in flight, in delivery order
	stash  []wire.Message // held back by the test (see stashMsgs)
	blocks []msgFilter    // network rules: matching messages are lost when sent or delivered

	// Per command (reset by resetRecords): what was sent and emitted.
	sent   []wire.Message
	events []nodeEvent

	committed map[uint64]string    // op number → identity, as first applied anywhere
	primaries map[[2]uint64]uint64 // (epoch, view) → the replica that became its primary
	nextReq   uint64
	clock     int64
}

func newTestCluster(tb testing.TB, o clusterOpts) *testCluster {
	tb.Helper()
	if o.N == 0 {
		o.N = 3
	}
	if o.HeartbeatTicks == 0 {
		o.HeartbeatTicks = 1
	}
	if o.ViewChangeTicks == 0 {
		o.ViewChangeTicks = 10
	}
	c := &testCluster{
		tb:        tb,
		opts:      o,
		nodes:     map[uint64]*testNode{},
		committed: map[uint64]string{},
		primaries: map[[2]uint64]uint64{},
	}
	for i := 1; i <= o.N; i++ {
		id := uint64(i)
		c.ids = append(c.ids, id)
		c.nodes[id] = &testNode{
			id:       id,
			hasState: !o.Fresh, // a formatted cluster: empty hard state, view 0
			rng:      rand.New(rand.NewPCG(o.Seed, id)),
		}
	}
	for _, id := range c.ids {
		c.start(id)
	}
	return c
}

func (c *testCluster) fatalf(format string, args ...any) {
	c.tb.Helper()
	c.tb.Fatalf("%s\ncluster: %s", fmt.Sprintf(format, args...), c.describe())
}

func (c *testCluster) node(id uint64) *testNode {
	n := c.nodes[id]
	if n == nil {
		c.fatalf("no replica %d", id)
	}
	return n
}

// replica returns the running replica id.
func (c *testCluster) replica(id uint64) *Replica {
	n := c.node(id)
	if n.r == nil {
		c.fatalf("replica %d is down", id)
	}
	return n.r
}

func (c *testCluster) config(n *testNode) Config {
	replicas := c.ids[:c.opts.N]
	if n.replicas != nil {
		replicas = n.replicas
	}
	var encoded func(*kmblog.Op) []byte
	if c.opts.Encoded != nil {
		encoded = func(op *kmblog.Op) []byte { return c.opts.Encoded(n.id, op) }
	}
	return Config{
		Encoded:          encoded,
		NodeID:           n.id,
		Replicas:         slices.Clone(replicas),
		HeartbeatTicks:   c.opts.HeartbeatTicks,
		ViewChangeTicks:  c.opts.ViewChangeTicks,
		MaxPipeline:      c.opts.MaxPipeline,
		MaxOpsPerMessage: c.opts.MaxOpsPerMessage,
		Rand: func(k int) int {
			if c.opts.FixedRand != nil {
				return *c.opts.FixedRand % k
			}
			return n.rng.IntN(k)
		},
		Storage: nodeStorage{n},
	}
}

// start boots replica id from its disk, replaying its committed prefix as
// a node does.
func (c *testCluster) start(id uint64) {
	c.tb.Helper()
	n := c.node(id)
	if n.r != nil {
		c.fatalf("replica %d is already up", id)
	}
	n.applied = 0
	var faulty []Run
	for op := uint64(1); op <= uint64(len(n.disk)); op++ {
		if !n.corrupt[op] {
			continue
		}
		if k := len(faulty); k > 0 && faulty[k-1].Last+1 == op {
			faulty[k-1].Last = op
		} else {
			faulty = append(faulty, Run{op, op})
		}
	}
	if n.hasState {
		n.applied = min(n.hs.Commit, uint64(len(n.disk)))
		if len(faulty) > 0 {
			n.applied = min(n.applied, faulty[0].First-1)
		}
	}
	n.cfgEpoch, n.cfgIDs = 0, nil
	for _, op := range n.disk[:n.applied] {
		n.noteConfig(op)
	}
	var start Base
	if n.gone > 0 {
		start = BaseOf(n.disk[n.gone-1])
	}
	r, err := New(c.config(n), Durable{HardState: n.hs, HasState: n.hasState, LastOp: uint64(len(n.disk)), Faulty: faulty, Join: n.join, Start: start})
	if err != nil {
		c.fatalf("replica %d: New: %v", id, err)
	}
	n.r = r
	c.handleReady(n)
}

// addJoiner boots a new, empty replica that joins the configuration
// replicas.
func (c *testCluster) addJoiner(id uint64, replicas []uint64) {
	c.tb.Helper()
	if c.nodes[id] != nil {
		c.fatalf("replica %d exists", id)
	}
	c.ids = append(c.ids, id)
	c.nodes[id] = &testNode{id: id, replicas: replicas, join: true, rng: rand.New(rand.NewPCG(c.opts.Seed, id))}
	c.start(id)
}

// crash discards the replica and its memory; the disk stays.
func (c *testCluster) crash(id uint64) {
	c.tb.Helper()
	n := c.node(id)
	if n.r == nil {
		c.fatalf("replica %d is already down", id)
	}
	n.r, n.applied = nil, 0
}

// wipe crashes the replica (if up) and loses its disk.
func (c *testCluster) wipe(id uint64) {
	c.tb.Helper()
	n := c.node(id)
	n.r, n.applied = nil, 0
	n.disk, n.hs, n.hasState, n.gone = nil, HardState{}, false, 0
}

// noteConfig records the configuration of an applied config op.
func (n *testNode) noteConfig(op *kmblog.Op) {
	if op.Kind != kmblog.KindConfig {
		return
	}
	if cfg, err := ParseConfig(op); err == nil {
		n.cfgEpoch, n.cfgIDs = cfg.Epoch, cfg.IDs()
	}
}

// compact deletes n's ops up to op, as retention does.
func (c *testCluster) compact(n *testNode, op uint64) {
	c.tb.Helper()
	if op > n.applied || op <= n.gone {
		c.fatalf("replica %d: compact to %d: applied %d, gone %d", n.id, op, n.applied, n.gone)
	}
	if err := n.r.SetLogStart(BaseOf(n.disk[op-1])); err != nil {
		c.fatalf("replica %d: SetLogStart: %v", n.id, err)
	}
	n.gone = op
}

// transfer serves a replica's request for a snapshot from the node it
// names, if that one is up and has applied far enough: its state at its
// applied op.
func (c *testCluster) transfer(n *testNode, st *StateTransfer) {
	src := c.nodes[st.From]
	if src == nil || src.r == nil || src.applied < st.MinOp || src.applied == 0 {
		return // the replica asks again
	}
	op := src.applied
	cfg := src.cfgIDs
	if cfg == nil {
		cfg = c.ids[:c.opts.N]
	}
	snap := Snapshot{Base: BaseOf(src.disk[op-1]), Epoch: src.cfgEpoch, Config: slices.Clone(cfg)}
	if err := n.r.InstallState(snap); err != nil {
		return
	}
	n.disk = make([]*kmblog.Op, op)
	for i, o := range src.disk[:op] {
		n.disk[i] = cloneOp(o)
	}
	n.gone, n.applied, n.corrupt = op, op, nil
	n.cfgEpoch, n.cfgIDs = src.cfgEpoch, slices.Clone(src.cfgIDs)
}

func (c *testCluster) resetRecords() { c.sent, c.events = nil, nil }

// handleReady runs the driver contract for every pending Ready of n and
// checks the invariants a correct replica keeps.
func (c *testCluster) handleReady(n *testNode) {
	for n.r != nil && n.r.HasReady() {
		rd := n.r.Ready()
		at := noCrash
		if n.crashAt != noCrash && (rd.Truncate || len(rd.Append) > 0 || rd.MustPersist) &&
			(n.crashAt != crashAfterCut || rd.Truncate) {
			at, n.crashAt = n.crashAt, noCrash
		}
		// 0. The primary's early prepares go out while the rest is made
		// durable.
		c.sendAll(n, rd.Early)
		if at == crashBeforePersist {
			c.crash(n.id)
			return
		}

		// 1. The log, durably: repairs, truncation, then appends.
		for _, op := range rd.Repair {
			if op.Op > uint64(len(n.disk)) || !n.corrupt[op.Op] {
				c.fatalf("replica %d: repair of op %d, which is not corrupt on its disk", n.id, op.Op)
			}
			if opIdent(op) != opIdent(n.disk[op.Op-1]) || op.Chain != n.disk[op.Op-1].Chain {
				c.fatalf("replica %d: repair of op %d writes %s, the disk held %s", n.id, op.Op, opIdent(op), opIdent(n.disk[op.Op-1]))
			}
			delete(n.corrupt, op.Op)
		}
		if rd.Truncate {
			if rd.TruncateAfter > uint64(len(n.disk)) {
				c.fatalf("replica %d: truncate after %d beyond its log end %d", n.id, rd.TruncateAfter, len(n.disk))
			}
			if rd.TruncateAfter < n.applied {
				c.fatalf("replica %d: truncate after %d removes applied (committed) ops up to %d", n.id, rd.TruncateAfter, n.applied)
			}
			n.disk = n.disk[:rd.TruncateAfter]
			for op := range n.corrupt {
				if op > rd.TruncateAfter {
					delete(n.corrupt, op)
				}
			}
		}
		if at == crashAfterCut {
			c.crash(n.id)
			return
		}
		appends := rd.Append
		if at == crashTornAppend {
			appends = appends[:len(appends)/2] // a torn write keeps a prefix
		}
		for _, op := range appends {
			if op.Op != uint64(len(n.disk))+1 {
				c.fatalf("replica %d: append of op %d after op %d", n.id, op.Op, len(n.disk))
			}
			n.disk = append(n.disk, cloneOp(op))
		}
		if at == crashTornAppend || at == crashAfterLog {
			c.crash(n.id)
			return
		}
		// 2. Then the hard state.
		if rd.MustPersist {
			hs := rd.HardState
			if hs.Epoch < n.hs.Epoch || (hs.Epoch == n.hs.Epoch && hs.View < n.hs.View) {
				c.fatalf("replica %d: persisted (epoch, view) went back from (%d, %d) to (%d, %d)", n.id, n.hs.Epoch, n.hs.View, hs.Epoch, hs.View)
			}
			if hs.LogView > hs.View {
				c.fatalf("replica %d: persisted log view %d above view %d", n.id, hs.LogView, hs.View)
			}
			hs.Config = slices.Clone(hs.Config)
			hs.Commit = n.hs.Commit
			n.hs = hs
			n.hasState = true
		}
		if rd.CommitTo > uint64(len(n.disk)) {
			c.fatalf("replica %d: commit %d beyond its log (%d ops)", n.id, rd.CommitTo, len(n.disk))
		}
		n.hs.Commit = max(n.hs.Commit, min(rd.CommitTo, uint64(len(n.disk))))
		if at == crashBeforeSend {
			c.crash(n.id)
			return
		}

		// 3. Send.
		c.sendAll(n, rd.Messages)

		// 4. Apply, checking agreement.
		for n.applied < rd.CommitTo {
			op := n.disk[n.applied]
			if n.corrupt[op.Op] {
				if runs := n.r.FaultyRuns(); len(runs) > 0 && op.Op >= runs[0].First {
					c.fatalf("replica %d: commit %d reaches op %d, which it holds as faulty", n.id, rd.CommitTo, op.Op)
				}
				n.r.MarkCorrupt(op.Op) // the driver finds out as it applies
				break
			}
			id := opIdent(op)
			if prev, ok := c.committed[op.Op]; ok && prev != id {
				c.fatalf("agreement: replica %d committed op %d as %s, committed elsewhere as %s", n.id, op.Op, id, prev)
			}
			c.committed[op.Op] = id
			n.noteConfig(op)
			n.applied++
		}

		for _, e := range rd.Events {
			c.events = append(c.events, nodeEvent{id: n.id, Event: e})
			switch e.Kind {
			case EventBecamePrimary:
				if e.Primary != n.id {
					c.fatalf("replica %d: became_primary event names %d", n.id, e.Primary)
				}
				key := [2]uint64{e.Epoch, e.View}
				if prev, ok := c.primaries[key]; ok && prev != n.id {
					c.fatalf("two primaries in epoch %d view %d: %d and %d", e.Epoch, e.View, prev, n.id)
				}
				c.primaries[key] = n.id
			case EventEpochStarted:
				// An epoch starts only once its config op is committed.
				if _, ok := c.committed[e.Op]; !ok || n.applied < e.Op {
					c.fatalf("replica %d entered epoch %d before its config op %d committed (applied %d)", n.id, e.Epoch, e.Op, n.applied)
				}
			}
		}
		n.r.Advance(rd)
		if s := n.r.State(); s.Commit > s.Op {
			c.fatalf("replica %d: commit %d > op %d", n.id, s.Commit, s.Op)
		}
		if rd.StateTransfer != nil {
			c.transfer(n, rd.StateTransfer)
		}
	}
}

// sendAll queues msgs from n, checking their addresses.
func (c *testCluster) sendAll(n *testNode, msgs []wire.Message) {
	c.tb.Helper()
	for _, m := range msgs {
		if m.From != n.id {
			c.fatalf("replica %d sent a message from %d: %s", n.id, m.From, fmtMsg(m))
		}
		if m.To == n.id || m.To == 0 {
			c.fatalf("replica %d sent a message to %d: %s", n.id, m.To, fmtMsg(m))
		}
		m = cloneMsg(m)
		c.sent = append(c.sent, m)
		if c.nodes[m.To] != nil && !c.blocked(m) { // a replica not yet booted loses it
			c.queue = append(c.queue, m)
		}
	}
}

// propose submits one proposal per key=value pair in one Propose call.
func (c *testCluster) propose(id uint64, kvs ...string) (uint64, error) {
	c.tb.Helper()
	n := c.node(id)
	if n.r == nil {
		c.fatalf("propose at replica %d: it is down", id)
	}
	ps := make([]Proposal, len(kvs))
	for i, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		c.nextReq++
		c.clock += 1000
		ps[i] = Proposal{
			Tenant:    "put",
			Entries:   []kmblog.Entry{{Key: k, Value: []byte(v)}},
			ClientID:  1,
			RequestID: c.nextReq,
			Timestamp: c.clock,
		}
	}
	first, err := n.r.Propose(ps...)
	c.handleReady(n)
	return first, err
}

// tick advances replica id by one tick.
func (c *testCluster) tick(id uint64) {
	n := c.node(id)
	if n.r == nil {
		return
	}
	n.r.Tick()
	c.handleReady(n)
}

func (c *testCluster) blocked(m wire.Message) bool {
	for _, f := range c.blocks {
		if f.match(m) {
			return true
		}
	}
	return false
}

// deliverMsg hands m to its receiver, unless the network loses it.
func (c *testCluster) deliverMsg(m wire.Message) {
	n := c.nodes[m.To]
	if n == nil || n.r == nil || c.blocked(m) {
		return
	}
	n.r.Step(m) // m is the queue's own copy (cloned when sent or duplicated)
	c.handleReady(n)
}

// deliver delivers the queued messages matching f, in queue order, and
// those they cause, until no matching message is left. Messages not
// matching f stay queued in their order.
func (c *testCluster) deliver(f msgFilter) {
	for steps := 0; ; steps++ {
		if steps > 100000 {
			c.fatalf("deliver %s: no quiescence after %d messages", f, steps)
		}
		if !c.deliverNext(f) {
			return
		}
	}
}

// deliverNext delivers the first queued message matching f, if any.
func (c *testCluster) deliverNext(f msgFilter) bool {
	i := slices.IndexFunc(c.queue, f.match)
	if i < 0 {
		return false
	}
	m := c.queue[i]
	if i == 0 {
		c.queue = c.queue[1:] // cheap: deliveries mostly take the head
	} else {
		c.queue = slices.Delete(c.queue, i, i+1)
	}
	c.deliverMsg(m)
	return true
}

// deliverOnce delivers only the messages matching f that are queued now;
// what they cause stays queued.
func (c *testCluster) deliverOnce(f msgFilter) {
	var due, rest []wire.Message
	for _, m := range c.queue {
		if f.match(m) {
			due = append(due, m)
		} else {
			rest = append(rest, m)
		}
	}
	c.queue = rest
	for _, m := range due {
		c.deliverMsg(m)
	}
}

// drop removes the queued messages matching f and returns how many.
func (c *testCluster) drop(f msgFilter) int {
	n := len(c.queue)
	c.queue = slices.DeleteFunc(c.queue, f.match)
	return n - len(c.queue)
}

// stashMsgs moves the queued messages matching f aside; unstash puts
// them back at the end of the queue, to be delivered late.
func (c *testCluster) stashMsgs(f msgFilter) {
	for _, m := range c.queue {
		if f.match(m) {
			c.stash = append(c.stash, m)
		}
	}
	c.drop(f)
}

func (c *testCluster) unstash() {
	c.queue = append(c.queue, c.stash...)
	c.stash = nil
}

// dup duplicates every queued message matching f (the copy right after it).
func (c *testCluster) dup(f msgFilter) {
	var q []wire.Message
	for _, m := range c.queue {
		q = append(q, m)
		if f.match(m) {
			q = append(q, cloneMsg(m))
		}
	}
	c.queue = q
}

// reverse reverses the order of the queued messages matching f among
// themselves; the others keep their places.
func (c *testCluster) reverse(f msgFilter) {
	var idx []int
	for i, m := range c.queue {
		if f.match(m) {
			idx = append(idx, i)
		}
	}
	for i, j := 0, len(idx)-1; i < j; i, j = i+1, j-1 {
		c.queue[idx[i]], c.queue[idx[j]] = c.queue[idx[j]], c.queue[idx[i]]
	}
}

// run runs rounds: tick the given replicas (the running ones), then
// deliver everything in flight until the network is quiet.
func (c *testCluster) run(rounds int, ids []uint64) {
	for range rounds {
		for _, id := range ids {
			c.tick(id)
		}
		c.deliver(msgFilter{})
	}
}

func (c *testCluster) up() []uint64 {
	var ids []uint64
	for _, id := range c.ids {
		if c.nodes[id].r != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func (c *testCluster) describe() string {
	var b strings.Builder
	for _, id := range c.ids {
		n := c.nodes[id]
		if n.r == nil {
			fmt.Fprintf(&b, "\n  [%d down] disk=%d hs=%+v hasState=%v", id, len(n.disk), n.hs, n.hasState)
			continue
		}
		s := n.r.State()
		fmt.Fprintf(&b, "\n  [%d %s v%d lv%d op%d c%d verified%d catchingUp=%v applied%d] log: %s",
			id, s.Status, s.View, s.LogView, s.Op, s.Commit, n.r.verified, n.r.catchingUp, n.applied, logString(n.disk))
	}
	fmt.Fprintf(&b, "\n  queue (%d):", len(c.queue))
	for _, m := range c.queue {
		fmt.Fprintf(&b, "\n    %s", fmtMsg(m))
	}
	return b.String()
}

// opIdent names an op by its first entry and the view it was prepared in:
// "k=v@view".
func opIdent(op *kmblog.Op) string {
	kv := "-"
	if len(op.Entries) > 0 {
		kv = op.Entries[0].Key + "=" + string(op.Entries[0].Value)
	}
	return fmt.Sprintf("%s@%d", kv, op.View)
}

func logString(ops []*kmblog.Op) string {
	s := make([]string, len(ops))
	for i, op := range ops {
		s[i] = opIdent(op)
	}
	return strings.Join(s, " ")
}

func fmtMsg(m wire.Message) string {
	var ops []string
	for _, op := range m.Ops {
		ops = append(ops, fmt.Sprintf("%d:%s", op.Op, opIdent(op)))
	}
	return fmt.Sprintf("%s %d->%d view=%d logview=%d op=%d commit=%d ops=[%s]",
		m.Type, m.From, m.To, m.View, m.LogView, m.Op, m.Commit, strings.Join(ops, " "))
}

// cloneOp deep-copies op, as the wire and the disk would: no replica may
// share an op with another.
func cloneOp(op *kmblog.Op) *kmblog.Op {
	cp := *op
	cp.Entries = make([]kmblog.Entry, len(op.Entries))
	for i, e := range op.Entries {
		cp.Entries[i] = kmblog.Entry{Key: e.Key, Value: slices.Clone(e.Value)}
	}
	return &cp
}

func cloneMsg(m wire.Message) wire.Message {
	if m.Ops != nil {
		ops := make([]*kmblog.Op, len(m.Ops))
		for i, op := range m.Ops {
			ops[i] = cloneOp(op)
		}
		m.Ops = ops
	}
	return m
}

// msgFilter selects messages; empty fields match anything.
type msgFilter struct {
	from, to []uint64
	types    []wire.Type
	view     *uint64
	logView  *uint64
	op       *uint64
	commit   *uint64
}

func (f msgFilter) match(m wire.Message) bool {
	return (len(f.from) == 0 || slices.Contains(f.from, m.From)) &&
		(len(f.to) == 0 || slices.Contains(f.to, m.To)) &&
		(len(f.types) == 0 || slices.Contains(f.types, m.Type)) &&
		(f.view == nil || *f.view == m.View) &&
		(f.logView == nil || *f.logView == m.LogView) &&
		(f.op == nil || *f.op == m.Op) &&
		(f.commit == nil || *f.commit == m.Commit)
}

func (f msgFilter) String() string {
	var parts []string
	if len(f.from) > 0 {
		parts = append(parts, fmt.Sprintf("from=%v", f.from))
	}
	if len(f.to) > 0 {
		parts = append(parts, fmt.Sprintf("to=%v", f.to))
	}
	if len(f.types) > 0 {
		parts = append(parts, fmt.Sprintf("type=%v", f.types))
	}
	if f.view != nil {
		parts = append(parts, fmt.Sprintf("view=%d", *f.view))
	}
	if f.logView != nil {
		parts = append(parts, fmt.Sprintf("logview=%d", *f.logView))
	}
	if f.op != nil {
		parts = append(parts, fmt.Sprintf("op=%d", *f.op))
	}
	if f.commit != nil {
		parts = append(parts, fmt.Sprintf("commit=%d", *f.commit))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}
