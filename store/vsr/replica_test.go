package vsr

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// sliceStorage is a Storage over a slice (op n at index n-1).
type sliceStorage []*kmblog.Op

func (s sliceStorage) Read(op uint64) (kmblog.Op, error) {
	if op == 0 || op > uint64(len(s)) {
		return kmblog.Op{}, fmt.Errorf("op %d not stored", op)
	}
	return *s[op-1], nil
}

type failStorage struct{}

func (failStorage) Read(uint64) (kmblog.Op, error) { return kmblog.Op{}, errors.New("disk on fire") }

func validTestConfig() Config {
	return Config{
		NodeID:   1,
		Replicas: []uint64{1, 2, 3},
		Rand:     func(int) int { return 0 },
		Storage:  sliceStorage(nil),
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"defaults fill zero fields", func(c *Config) {
			c.HeartbeatTicks, c.ViewChangeTicks, c.MaxOpsPerMessage, c.MaxPipeline = 0, 0, 0, 0
		}, ""},
		{"single replica", func(c *Config) { c.Replicas = []uint64{1} }, ""},
		{"node id anywhere in replicas", func(c *Config) { c.NodeID = 3 }, ""},
		{"no replicas", func(c *Config) { c.Replicas = nil }, "Replicas is empty"},
		{"node id not in replicas", func(c *Config) { c.NodeID = 4 }, "NodeID 4 is not in Replicas"},
		{"zero node id", func(c *Config) { c.NodeID, c.Replicas = 0, []uint64{0, 1, 2} }, "unique and non-zero"},
		{"duplicate replica", func(c *Config) { c.Replicas = []uint64{1, 2, 2} }, "unique and non-zero"},
		{"negative heartbeat", func(c *Config) { c.HeartbeatTicks = -1 }, "HeartbeatTicks = -1"},
		{"view change ticks equal to twice heartbeat", func(c *Config) { c.HeartbeatTicks, c.ViewChangeTicks = 2, 4 }, "ViewChangeTicks = 4"},
		{"view change ticks just above twice heartbeat", func(c *Config) { c.HeartbeatTicks, c.ViewChangeTicks = 2, 5 }, ""},
		{"view change ticks below default heartbeat bound", func(c *Config) { c.ViewChangeTicks = 2 }, "must exceed twice HeartbeatTicks (1)"},
		{"heartbeat too large for default view change ticks", func(c *Config) { c.HeartbeatTicks = 5 }, "ViewChangeTicks = 10"},
		{"negative view change ticks", func(c *Config) { c.ViewChangeTicks = -3 }, "ViewChangeTicks = -3"},
		{"negative max ops", func(c *Config) { c.MaxOpsPerMessage = -1 }, "MaxOpsPerMessage and MaxPipeline"},
		{"negative pipeline", func(c *Config) { c.MaxPipeline = -1 }, "MaxOpsPerMessage and MaxPipeline"},
		{"no rand", func(c *Config) { c.Rand = nil }, "Rand is required"},
		{"no storage", func(c *Config) { c.Storage = nil }, "Storage is required"},
		{"first invalid field wins", func(c *Config) { c.Rand, c.Storage = nil, nil }, "Rand is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validTestConfig()
			tt.edit(&c)
			before := fmt.Sprintf("%+v", c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if after := fmt.Sprintf("%+v", c); after != before {
				t.Fatalf("Validate changed the config: %s → %s", before, after)
			}
			// New validates the same way.
			_, nerr := New(c, Durable{HardState: HardState{}, HasState: true, LastOp: 0})
			if (nerr == nil) != (err == nil) {
				t.Fatalf("New error %v, Validate error %v", nerr, err)
			}
		})
	}
}

func TestNewReadsLastOp(t *testing.T) {
	cfg := validTestConfig()
	cfg.Storage = failStorage{}
	if _, err := New(cfg, Durable{HardState: HardState{}, HasState: true, LastOp: 3}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("New with an unreadable last op: %v", err)
	}
	// Without ops there is nothing to read.
	if _, err := New(cfg, Durable{HardState: HardState{}, HasState: true, LastOp: 0}); err != nil {
		t.Fatal(err)
	}
}

// newTestPrimary returns replica 1, primary of view 0 of an n-replica
// cluster, holding k proposed ops; with durable, the driver has persisted
// them.
func newTestPrimary(t *testing.T, n, k int, durable bool) *Replica {
	t.Helper()
	cfg := validTestConfig()
	cfg.Replicas = nil
	for i := 1; i <= n; i++ {
		cfg.Replicas = append(cfg.Replicas, uint64(i))
	}
	r, err := New(cfg, Durable{HardState: HardState{}, HasState: true, LastOp: 0})
	if err != nil {
		t.Fatal(err)
	}
	r.Advance(r.Ready())
	for i := range k {
		if _, err := r.Propose(Proposal{Tenant: "t", Entries: []kmblog.Entry{{Key: fmt.Sprint(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if durable {
		r.Advance(r.Ready())
	}
	return r
}

// TestCommitQuorum checks the primary's quorum arithmetic from the
// outside: it commits the highest op that a quorum (itself included once
// its own write is durable) holds.
func TestCommitQuorum(t *testing.T) {
	tests := []struct {
		n       int
		durable bool              // the primary's own write is durable
		acks    map[uint64]uint64 // backup → acknowledged op
		want    uint64
	}{
		// Three replicas: the primary and one backup.
		{3, true, nil, 0},
		{3, true, map[uint64]uint64{2: 1}, 1},
		{3, true, map[uint64]uint64{2: 3}, 3},
		{3, true, map[uint64]uint64{2: 2, 3: 1}, 2},
		{3, true, map[uint64]uint64{2: 1, 3: 3}, 3},
		// Two backups suffice when the primary's write is not yet durable.
		{3, false, map[uint64]uint64{2: 3}, 0},
		{3, false, map[uint64]uint64{2: 3, 3: 2}, 2},
		// An acknowledgement beyond the primary's op counts up to its op.
		{3, true, map[uint64]uint64{2: 9}, 3},
		// Five replicas: the primary and two backups.
		{5, true, map[uint64]uint64{2: 3}, 0},
		{5, true, map[uint64]uint64{2: 3, 3: 1}, 1},
		{5, true, map[uint64]uint64{2: 3, 3: 3}, 3},
		{5, true, map[uint64]uint64{2: 1, 3: 2, 4: 3}, 2},
		{5, true, map[uint64]uint64{2: 1, 3: 2, 4: 3, 5: 3}, 3},
		{5, false, map[uint64]uint64{2: 3, 3: 3}, 0},
		{5, false, map[uint64]uint64{2: 3, 3: 3, 4: 2}, 2},
		// Four replicas: a quorum is three.
		{4, true, map[uint64]uint64{2: 3}, 0},
		{4, true, map[uint64]uint64{2: 3, 4: 2}, 2},
		// Two replicas: both.
		{2, true, nil, 0},
		{2, false, map[uint64]uint64{2: 3}, 0},
		{2, true, map[uint64]uint64{2: 2}, 2},
		// One replica: its own durable write.
		{1, false, nil, 0},
		{1, true, nil, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d/durable=%v/acks=%v", tt.n, tt.durable, tt.acks), func(t *testing.T) {
			r := newTestPrimary(t, tt.n, 3, tt.durable)
			for id := uint64(2); id <= uint64(tt.n); id++ {
				if op, ok := tt.acks[id]; ok {
					r.Step(wire.Message{Type: wire.TypePrepareOK, From: id, To: 1, View: 0, Op: op})
				}
			}
			if got := r.State().Commit; got != tt.want {
				t.Fatalf("commit = %d, want %d", got, tt.want)
			}
			if rd := r.Ready(); rd.CommitTo != tt.want {
				t.Fatalf("Ready.CommitTo = %d, want %d", rd.CommitTo, tt.want)
			}
		})
	}
}

// Acknowledgements count only from a backup of the primary's view.
func TestPrepareOKFiltered(t *testing.T) {
	ok := func(view, from, to uint64) wire.Message {
		return wire.Message{Type: wire.TypePrepareOK, From: from, To: to, View: view, Op: 3}
	}
	tests := []struct {
		name string
		hs   HardState // replica 1's; with 3 replicas it is the primary of views 0, 3, 6...
		m    wire.Message
		want uint64
	}{
		{"counted", HardState{View: 3, LogView: 3}, ok(3, 2, 1), 3},
		{"older view", HardState{View: 3, LogView: 3}, ok(2, 2, 1), 0},
		{"newer view", HardState{View: 3, LogView: 3}, ok(4, 2, 1), 0},
		{"unknown sender", HardState{View: 3, LogView: 3}, ok(3, 7, 1), 0},
		{"from itself", HardState{View: 3, LogView: 3}, ok(3, 1, 1), 0},
		{"to another replica", HardState{View: 3, LogView: 3}, ok(3, 2, 3), 0},
		{"at a backup", HardState{View: 4, LogView: 4}, ok(4, 2, 1), 0},
		{"during a view change", HardState{View: 3, LogView: 2}, ok(3, 2, 1), 0},
	}
	var disk sliceStorage
	for i := uint64(1); i <= 3; i++ {
		disk = append(disk, &kmblog.Op{Op: i, View: 2, FirstPosition: i, Entries: []kmblog.Entry{{Key: "k"}}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validTestConfig()
			cfg.Storage = disk
			r, err := New(cfg, Durable{HardState: tt.hs, HasState: true, LastOp: 3})
			if err != nil {
				t.Fatal(err)
			}
			r.Advance(r.Ready())
			r.Step(tt.m)
			if got := r.State().Commit; got != tt.want {
				t.Fatalf("commit = %d after %s, want %d", got, fmtMsg(tt.m), tt.want)
			}
		})
	}
	// A lower acknowledgement does not undo a higher one.
	r := newTestPrimary(t, 3, 3, false)
	r.Step(wire.Message{Type: wire.TypePrepareOK, From: 2, To: 1, Op: 3})
	r.Step(wire.Message{Type: wire.TypePrepareOK, From: 2, To: 1, Op: 1})
	r.Step(wire.Message{Type: wire.TypePrepareOK, From: 3, To: 1, Op: 2})
	if got := r.State().Commit; got != 2 {
		t.Fatalf("commit = %d, want 2", got)
	}
}

// Propose assigns contiguous op numbers and positions and strictly increasing
// timestamps, and hands the ops to the driver with the prepares.
func TestProposeOps(t *testing.T) {
	r := newTestPrimary(t, 3, 0, true)
	first, err := r.Propose(
		Proposal{Tenant: "a", Entries: []kmblog.Entry{{Key: "x"}, {Key: "y"}}, ClientID: 7, RequestID: 1, Timestamp: 100},
		Proposal{Tenant: "a", Entries: nil, ClientID: 7, RequestID: 2, Timestamp: 50}, // the clock went back
		Proposal{Tenant: "b", Entries: []kmblog.Entry{{Key: "z"}}, ClientID: 8, RequestID: 1, Timestamp: 200},
	)
	if err != nil || first != 1 {
		t.Fatalf("Propose = %d, %v", first, err)
	}
	rd := r.Ready()
	type want struct {
		op, pos uint64
		ts      int64
	}
	wants := []want{{1, 1, 100}, {2, 3, 101}, {3, 3, 200}} // strictly increasing
	if len(rd.Append) != len(wants) {
		t.Fatalf("appended %d ops, want %d", len(rd.Append), len(wants))
	}
	for i, w := range wants {
		op := rd.Append[i]
		if op.Op != w.op || op.FirstPosition != w.pos || op.Timestamp != w.ts || op.View != 0 {
			t.Errorf("op %d: %+v, want op %d first position %d timestamp %d view 0", i, *op, w.op, w.pos, w.ts)
		}
	}
	if rd.Append[0].ClientID != 7 || rd.Append[2].Tenant != "b" || rd.Append[1].RequestID != 2 {
		t.Errorf("proposal fields not carried: %+v %+v %+v", *rd.Append[0], *rd.Append[1], *rd.Append[2])
	}
	if len(rd.Messages) != 2 {
		t.Fatalf("%d messages, want a prepare to each backup", len(rd.Messages))
	}
	for _, m := range rd.Messages {
		if m.Type != wire.TypePrepare || m.From != 1 || len(m.Ops) != 3 || m.Ops[0].Op != 1 {
			t.Errorf("message %s", fmtMsg(m))
		}
	}
	r.Advance(rd)

	// The next op continues after the last position and timestamp, also
	// after a restart from the disk.
	disk := sliceStorage(rd.Append)
	cfg := validTestConfig()
	cfg.Storage = disk
	r2, err := New(cfg, Durable{HardState: HardState{}, HasState: true, LastOp: 3})
	if err != nil {
		t.Fatal(err)
	}
	r2.Advance(r2.Ready())
	if _, err := r2.Propose(Proposal{Entries: []kmblog.Entry{{Key: "w"}}, Timestamp: 10}); err != nil {
		t.Fatal(err)
	}
	op := r2.Ready().Append[0]
	if op.Op != 4 || op.FirstPosition != 4 || op.Timestamp != 201 {
		t.Fatalf("after restart: %+v, want op 4 position 4 timestamp 201", *op)
	}
}

// Positions and timestamps continue across a view change, from the new
// primary's last op.
func TestPositionsAcrossViewChange(t *testing.T) {
	c := newTestCluster(t, clusterOpts{N: 3, FixedRand: new(int)})
	c.propose(1, "a=1", "b=2")
	c.run(2, c.up())
	c.crash(1)
	c.run(12, []uint64{2, 3})
	if !c.replica(2).State().IsPrimary {
		t.Fatalf("replica 2 is not primary: %s", c.describe())
	}
	c.clock = 0 // the new primary's clock is behind
	if _, err := c.propose(2, "c=3"); err != nil {
		t.Fatal(err)
	}
	disk := c.node(2).disk
	if len(disk) != 3 {
		t.Fatalf("log %s", logString(disk))
	}
	if disk[2].FirstPosition != 3 || disk[2].Timestamp < disk[1].Timestamp || disk[2].View != 1 {
		t.Fatalf("op 3 = %+v after %+v", *disk[2], *disk[1])
	}
}

func TestStrings(t *testing.T) {
	for s, want := range map[Status]string{
		StatusNormal: "normal", StatusViewChange: "view_change", StatusRecovering: "recovering", 0: "unknown", 9: "unknown",
	} {
		if got := s.String(); got != want {
			t.Errorf("Status(%d).String() = %q, want %q", s, got, want)
		}
	}
}

// Step ignores messages that are not for this replica, come from itself
// or from a replica outside the configuration.
func TestStepIgnoresMisaddressed(t *testing.T) {
	for _, m := range []wire.Message{
		{Type: wire.TypeStartViewChange, From: 1, To: 3, View: 5},
		{Type: wire.TypeStartViewChange, From: 2, To: 2, View: 5},
		{Type: wire.TypeStartViewChange, From: 9, To: 2, View: 5},
		{Type: wire.TypeRecovery, From: 9, To: 2, Nonce: 1},
		{Type: wire.Type(99), From: 1, To: 2, View: 5},
	} {
		cfg := validTestConfig()
		cfg.NodeID = 2
		r, err := New(cfg, Durable{HardState: HardState{}, HasState: true, LastOp: 0})
		if err != nil {
			t.Fatal(err)
		}
		r.Advance(r.Ready())
		r.Step(m)
		if r.HasReady() || r.State().View != 0 || r.State().Status != StatusNormal {
			t.Errorf("%s changed the replica: %+v", fmtMsg(m), r.State())
		}
		if r.LastContact(m.From) != 0 && m.From == 9 {
			t.Errorf("contact recorded for a stranger")
		}
	}
}

// Now and LastContact follow ticks and traffic.
func TestClockAndContact(t *testing.T) {
	c := newTestCluster(t, clusterOpts{N: 3})
	for range 3 {
		c.tick(2)
	}
	r := c.replica(2)
	if r.Now() != 3 || r.LastContact(1) != 0 {
		t.Fatalf("Now %d, LastContact(1) %d", r.Now(), r.LastContact(1))
	}
	c.tick(1)
	c.deliver(msgFilter{})
	if r.LastContact(1) != 3 || r.LastContact(3) != 0 {
		t.Fatalf("LastContact(1) = %d, want 3; LastContact(3) = %d, want 0", r.LastContact(1), r.LastContact(3))
	}
}

// A backup checks an op's chain hash over its encoding as it arrived when
// the driver has it (Config.Encoded): bytes other than the op's, and the op
// is refused as a chain mismatch.
func TestEncodedChain(t *testing.T) {
	c := newTestCluster(t, clusterOpts{N: 3, Encoded: func(id uint64, op *kmblog.Op) []byte {
		enc := kmblog.AppendOp(nil, op)
		if id == 2 && op.Kind == kmblog.KindData {
			enc[len(enc)-kmblog.ChainSize-1] ^= 1 // the last byte of the last value
		}
		return enc
	}})
	first, err := c.propose(1, "a=1")
	if err != nil {
		t.Fatal(err)
	}
	// A bounded exchange: the primary keeps offering the op replica 2
	// refuses.
	for range 3 {
		c.deliverOnce(msgFilter{})
	}
	if got := c.replica(3).State().Op; got != first {
		t.Fatalf("replica 3 holds op %d, want %d: the encoding as received is the op's", got, first)
	}
	if got := c.replica(2).State().Op; got >= first {
		t.Fatalf("replica 2 holds op %d, which arrived as other bytes than its chain hash covers", got)
	}
	mismatch := false
	for _, e := range c.events {
		mismatch = mismatch || (e.id == 2 && e.Kind == EventChainMismatch && e.Op == first)
	}
	if !mismatch {
		t.Fatalf("no chain mismatch of op %d at replica 2: %v", first, c.events)
	}
}

// Acked follows the backups' prepare_ok on the primary, and is 0 on a
// backup and for a backup that acknowledged nothing in the view.
func TestAcked(t *testing.T) {
	c := newTestCluster(t, clusterOpts{N: 3})
	if got := c.replica(1).Acked(2); got != 0 {
		t.Fatalf("Acked(2) before any op = %d, want 0", got)
	}
	c.blocks = append(c.blocks, msgFilter{to: []uint64{3}})
	first, err := c.propose(1, "a=1", "b=2")
	if err != nil {
		t.Fatal(err)
	}
	c.deliver(msgFilter{})
	if got := c.replica(1).Acked(2); got != first+1 {
		t.Fatalf("Acked(2) = %d, want %d", got, first+1)
	}
	if got := c.replica(1).Acked(3); got != 0 {
		t.Fatalf("Acked(3) of a backup that heard nothing = %d, want 0", got)
	}
	if got := c.replica(2).Acked(1); got != 0 {
		t.Fatalf("a backup's Acked(1) = %d, want 0", got)
	}
}

// The driver contract: nothing pending after Advance; a Ready with
// appends carries the messages that depend on them.
func TestReadyCycle(t *testing.T) {
	r := newTestPrimary(t, 3, 0, true)
	if r.HasReady() {
		t.Fatalf("idle replica has a Ready: %+v", r.Ready())
	}
	if _, err := r.Propose(Proposal{Entries: []kmblog.Entry{{Key: "k"}}}); err != nil {
		t.Fatal(err)
	}
	if !r.HasReady() {
		t.Fatal("no Ready after Propose")
	}
	rd := r.Ready()
	if len(rd.Append) != 1 || len(rd.Messages) != 2 || rd.CommitTo != 0 || rd.Truncate {
		t.Fatalf("Ready after Propose: %+v", rd)
	}
	// Ready hands things over once.
	if rd2 := r.Ready(); len(rd2.Append) != 0 || len(rd2.Messages) != 0 {
		t.Fatalf("second Ready repeats: %+v", rd2)
	}
	r.Advance(rd)
	if r.HasReady() {
		t.Fatalf("Ready pending after Advance: %+v", r.Ready())
	}
}

// newPipelinedPrimary is a primary of three whose first op (in the
// Ready that persists HardState.EarlyView) is durable: its next Readys
// send early and may be finished later.
func newPipelinedPrimary(t *testing.T) *Replica {
	t.Helper()
	r := newTestPrimary(t, 3, 1, false)
	rd := r.Ready()
	if rd.SyncLater || !rd.MustPersist {
		t.Fatalf("the view's first Ready: SyncLater %v, MustPersist %v; want false, true (EarlyView)", rd.SyncLater, rd.MustPersist)
	}
	r.Advance(rd)
	return r
}

func proposeKey(t *testing.T, r *Replica, key string) {
	t.Helper()
	if _, err := r.Propose(Proposal{Tenant: "t", Entries: []kmblog.Entry{{Key: key}}}); err != nil {
		t.Fatal(err)
	}
}

// A normal primary's Readys may be finished later (SyncLater): it goes on
// proposing and taking acknowledgements meanwhile, counts its own only at
// Advance, and a view change's Readys do not qualify.
func TestSyncLater(t *testing.T) {
	r := newPipelinedPrimary(t)
	proposeKey(t, r, "a")
	rd1 := r.Ready()
	if !rd1.SyncLater || len(rd1.Append) != 1 || len(rd1.Early) != 2 {
		t.Fatalf("Ready of op 2: SyncLater %v, %d appends, %d early; want a pipelined append", rd1.SyncLater, len(rd1.Append), len(rd1.Early))
	}
	// Before rd1 is finished: another op, and one backup's ack of both.
	proposeKey(t, r, "b")
	rd2 := r.Ready()
	if !rd2.SyncLater || len(rd2.Append) != 1 || rd2.Append[0].Op != 3 {
		t.Fatalf("Ready of op 3: %+v", rd2)
	}
	r.Step(wire.Message{Type: wire.TypePrepareOK, From: 2, To: 1, Op: 3})
	if c := r.State().Commit; c != 1 {
		t.Fatalf("commit %d with one backup's ack of op 3 and op 1 durable here, want 1", c)
	}
	if _, err := r.readOp(2); err != nil {
		t.Fatalf("an op not durable yet is read from memory: %v", err)
	}
	rd3 := r.Ready() // the new commit number
	if !rd3.SyncLater || rd3.CommitTo != 1 {
		t.Fatalf("Ready after the ack: SyncLater %v, CommitTo %d; want true, 1", rd3.SyncLater, rd3.CommitTo)
	}
	r.Advance(rd1)
	if c := r.State().Commit; c != 2 {
		t.Fatalf("commit %d once op 2 is durable here, want 2", c)
	}
	r.Advance(rd2)
	r.Advance(rd3)
	if c := r.State().Commit; c != 3 {
		t.Fatalf("commit %d once op 3 is durable here, want 3", c)
	}

	// Once it changes view, its Readys do not qualify.
	r.Step(wire.Message{Type: wire.TypeStartViewChange, From: 2, To: 1, View: 1})
	if rd := r.Ready(); rd.SyncLater || !rd.MustPersist {
		t.Fatalf("a view change's Ready: SyncLater %v, MustPersist %v; want false, true", rd.SyncLater, rd.MustPersist)
	}
}

// Advance of a pipelined Ready counts durable only the ops the log still
// holds: a view change after it may have cut some and numbered others
// the same.
func TestSyncLaterCut(t *testing.T) {
	r := newPipelinedPrimary(t)
	for _, k := range []string{"a", "b", "c"} {
		proposeKey(t, r, k)
	}
	rd := r.Ready()
	if !rd.SyncLater || len(rd.Append) != 3 {
		t.Fatalf("Ready of ops 2-4: %+v", rd)
	}
	r.truncateLog(2)
	proposeKey(t, r, "x")
	r.Advance(rd)
	if r.durable != 2 {
		t.Fatalf("durable %d after the Ready of ops 2-4, of which a later cut left op 2; want 2", r.durable)
	}
	if got := r.heldThrough(nil); got != 0 {
		t.Fatalf("heldThrough(nil) = %d", got)
	}
}
