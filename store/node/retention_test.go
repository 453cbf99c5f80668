package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmb-db/kmb/store/checkpoint"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// retentionConfig is a node with 1 MiB segments and checkpoints, that
// keeps about 2 MiB of log.
func retentionConfig(dir string) Config {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.TickInterval = 5 * time.Millisecond
	cfg.SegmentSizeBytes = kmblog.MinSegmentSizeBytes
	cfg.CheckpointIntervalBytes = MinCheckpointIntervalBytes
	cfg.RetentionBytes = 2 * kmblog.MinSegmentSizeBytes
	cfg.AllowUnbackedTruncation = true
	return cfg
}

// runRetaining starts a node with cfg and waits until it is ready.
func runRetaining(t *testing.T, cfg Config, reg *metric.Registry, logs *logBuffer) *Node {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if logs != nil {
		logger = slog.New(slog.NewJSONHandler(logs, nil))
	}
	return runReady(t, cfg, reg, logger)
}

// writeFew writes batches of 100 entries of 1 kB values to tenant t0,
// over 100 keys (k00..k99), ids from client 7: the checkpoints stay
// small (100 kB), so one is taken every checkpoint_interval_bytes.
func writeFew(t *testing.T, n *Node, from, batches int) {
	t.Helper()
	value := []byte(`"` + strings.Repeat("v", 998) + `"`)
	for b := from; b < from+batches; b++ {
		es := make([]kmblog.Entry, 100)
		for i := range es {
			es[i] = kmblog.Entry{Key: fmt.Sprintf("k%02d", i), Value: value}
		}
		if _, err := n.Append(context.Background(), Write{Tenant: "t0", Entries: es, ClientID: 7, RequestID: uint64(b + 1)}); err != nil {
			t.Fatal(err)
		}
	}
}

// gaugeValue reads a gauge (or counter) of one series.
func gaugeValue(t *testing.T, reg *metric.Registry, name string) float64 {
	t.Helper()
	return counterValue(t, reg, name)
}

// Retention deletes the segments beyond retention_bytes once the older
// of the two checkpoints kept covers them, never past it;
// kmb_log_first_retained_position moves; the node restarts from the
// checkpoint with its log starting later, and serves every key.
func TestRetentionSingleNode(t *testing.T) {
	dir := t.TempDir()
	reg := metric.NewRegistry()
	var logs logBuffer
	cfg := retentionConfig(dir)
	cfg.RetentionBytes = 4 << 20 // above the two checkpoints' worth of log
	n := runRetaining(t, cfg, reg, &logs)
	writeFew(t, n, 0, 100) // about 10 MiB of log
	waitFor(t, 20*time.Second, "segments removed", func() bool { return n.log.Start().Op > 1 })
	waitFor(t, 20*time.Second, "the log within retention_bytes", func() bool {
		return n.log.SizeBytes() <= cfg.RetentionBytes+cfg.SegmentSizeBytes
	})
	start := n.log.Start()
	// A checkpoint is saved under its name before the older ones are
	// pruned: a listing in between holds one more than Keep.
	var files []checkpoint.File
	waitFor(t, 10*time.Second, "the checkpoints pruned", func() bool {
		var err error
		files, err = checkpoint.List(filepath.Join(dir, checkpoint.Dir))
		return err == nil && len(files) == checkpoint.Keep
	})
	if oldest := files[len(files)-1].Op; start.Op > oldest+1 {
		t.Fatalf("log starts at op %d, past the older checkpoint kept, of op %d", start.Op, oldest)
	}
	if got := gaugeValue(t, reg, "kmb_log_first_retained_position"); got != float64(start.Position) || got <= 1 {
		t.Fatalf("kmb_log_first_retained_position = %v, want %d (> 1)", got, start.Position)
	}
	// The counters move just after the log start does.
	waitFor(t, 5*time.Second, "retention counters", func() bool {
		return counterValue(t, reg, "kmb_log_retention_removed_segments_total") >= 1 &&
			counterValue(t, reg, "kmb_log_retention_removed_bytes_total") >= float64(cfg.SegmentSizeBytes)/2
	})
	if len(logs.lines("log segments removed below the retained start")) == 0 {
		t.Fatal("no log line for the deletion")
	}
	want := map[string]uint64{}
	for k := range 100 {
		key := fmt.Sprintf("k%02d", k)
		v, err := n.Get("t0", key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		want[key] = v.Position
	}
	before := n.Status()
	n.Stop()

	reg2 := metric.NewRegistry()
	var logs2 logBuffer
	m := runRetaining(t, cfg, reg2, &logs2)
	rebuilt := logs2.lines("projection rebuilt")
	if len(rebuilt) != 1 || rebuilt[0]["checkpoint_op"].(float64)+1 < float64(start.Op) {
		t.Fatalf("projection rebuilt: %v; want it from a checkpoint at or after op %d", rebuilt, start.Op-1)
	}
	after := m.Status()
	if after.Projection != before.Projection || after.ChainHead != before.ChainHead || after.CommitNumber != before.CommitNumber {
		t.Fatalf("after restart %+v\nbefore %+v", after, before)
	}
	if got := m.log.Start(); got.Op < start.Op {
		t.Fatalf("restarted log starts at op %d, before %d", got.Op, start.Op)
	}
	if got := gaugeValue(t, reg2, "kmb_log_first_retained_position"); got < float64(start.Position) {
		t.Fatalf("kmb_log_first_retained_position after restart = %v, want >= %d", got, start.Position)
	}
	for key, pos := range want {
		got, err := m.Get("t0", key)
		if err != nil || got.Position != pos || !bytes.Contains(got.Data, []byte("vvv")) {
			t.Fatalf("%s after restart: position %d, want %d: %v", key, got.Position, pos, err)
		}
	}
	// And it goes on writing and deleting.
	writeFew(t, m, 100, 30)
	waitFor(t, 20*time.Second, "more segments removed", func() bool { return m.log.Start().Op > start.Op })
}

// With a backup floor, retention never deletes the op after it; while the
// floor is unknown it deletes nothing.
func TestRetentionHoldsAtBackupFloor(t *testing.T) {
	var floor atomic.Int64 // -1: unknown
	floor.Store(-1)
	cfg := retentionConfig(t.TempDir())
	cfg.AllowUnbackedTruncation = false
	cfg.RetentionFloor = func() (uint64, bool) {
		f := floor.Load()
		return uint64(max(f, 0)), f >= 0
	}
	n := runRetaining(t, cfg, metric.NewRegistry(), nil)
	writeFew(t, n, 0, 80)
	waitFor(t, 20*time.Second, "two checkpoints", func() bool { return n.Status().Checkpoint.Op > 20 })
	// Retention runs once a second: give it three chances.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n.log.Start().Op != 1 {
			t.Fatalf("log start %d while the backup floor is unknown", n.log.Start().Op)
		}
	}
	mid := n.Status().CommitNumber / 2
	floor.Store(int64(mid))
	waitFor(t, 20*time.Second, "segments removed below the floor", func() bool { return n.log.Start().Op > 1 })
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s := n.log.Start().Op; s > mid+1 {
			t.Fatalf("log starts at op %d, past the backup floor %d", s, mid)
		}
	}
	floor.Store(1 << 40)
	waitFor(t, 20*time.Second, "retention up to the checkpoint", func() bool { return n.log.Start().Op > mid+1 })
	if s, c := n.log.Start().Op, n.Status().Checkpoint.Op; s > c+1 {
		t.Fatalf("log starts at op %d, past the checkpoint %d", s, c)
	}
}

// followerFloor holds retention at the first op an up follower has not
// acknowledged; a follower silent for longer does not hold it.
func TestFollowerFloor(t *testing.T) {
	const silence = 100
	acked := map[uint64]uint64{2: 50, 3: 40, 4: 10}
	for _, tc := range []struct {
		name    string
		now     uint64
		contact map[uint64]uint64
		config  []uint64
		want    uint64
	}{
		{"all up: the slowest", 500, map[uint64]uint64{2: 499, 3: 450, 4: 401}, []uint64{1, 2, 3, 4}, 11},
		{"4 silent for long", 500, map[uint64]uint64{2: 499, 3: 450, 4: 399}, []uint64{1, 2, 3, 4}, 41},
		{"never heard from, just started", 50, map[uint64]uint64{}, []uint64{1, 2, 3}, 41},
		{"never heard from, long since", 500, map[uint64]uint64{2: 499}, []uint64{1, 2, 3}, 51},
		{"every follower silent", 500, map[uint64]uint64{}, []uint64{1, 2, 3}, 1<<64 - 1},
		{"alone", 500, nil, []uint64{1}, 1<<64 - 1},
		{"an up follower that acknowledged nothing", 500, map[uint64]uint64{5: 500}, []uint64{1, 5}, 1},
	} {
		got := followerFloor(tc.config, 1, tc.now, silence,
			func(id uint64) uint64 { return tc.contact[id] }, func(id uint64) uint64 { return acked[id] })
		if got != tc.want {
			t.Errorf("%s: followerFloor = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// In a cluster the leader keeps the ops a follower that is up still
// needs: with one follower stopped, the other follower deletes its old
// segments while the leader holds them, until the stopped one has been
// silent for followerSilenceTicks; then the leader deletes them too.
func TestRetentionHoldsForFollower(t *testing.T) {
	nodes, leader := startClusterConfig(t, func(id uint64, c *Config) {
		dir := c.DataDir
		*c = func() Config {
			r := retentionConfig(dir)
			r.NodeID, r.Replicas, r.APIAddr = c.NodeID, c.Replicas, c.APIAddr
			// The test needs one leader throughout: at 5ms ticks the
			// default 10-20 tick view-change timeout is shorter than the
			// pauses of a loaded machine, and a follower that misses
			// heartbeats for 50ms would take over.
			r.ViewChangeTicks = 100
			return r
		}()
	}, func(uint64, *Deps) {})
	var stopped, up *Node
	for _, n := range nodes {
		if n == leader {
			continue
		}
		if stopped == nil {
			stopped = n
		} else {
			up = n
		}
	}
	stopped.Stop()
	stoppedAt := time.Now()
	writeFew(t, leader, 0, 60)
	waitFor(t, 20*time.Second, "the up follower's retention", func() bool { return up.log.Start().Op > 1 })
	silence := time.Duration(followerSilenceTicks) * retentionConfig("").TickInterval
	if time.Since(stoppedAt) < silence {
		if s := leader.log.Start().Op; s != 1 {
			t.Fatalf("the leader's log starts at op %d while a follower is stopped for only %v", s, time.Since(stoppedAt))
		}
	}
	waitFor(t, silence+20*time.Second, "the leader's retention once the follower is long silent", func() bool { return leader.log.Start().Op > 1 })
	if time.Since(stoppedAt) < silence {
		t.Fatalf("the leader deleted segments %v after a follower stopped, before %v", time.Since(stoppedAt), silence)
	}
}

// Retention keeps the older of the two checkpoints usable: after it ran,
// a restart that finds the newest checkpoint corrupt starts from the one
// before, and ends in the same state.
func TestRetentionSurvivesCorruptNewestCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := retentionConfig(dir)
	cfg.RetentionBytes = cfg.SegmentSizeBytes // as much as the floors allow
	n := runRetaining(t, cfg, metric.NewRegistry(), nil)
	writeFew(t, n, 0, 60)
	waitFor(t, 20*time.Second, "segments removed", func() bool { return n.log.Start().Op > 1 })
	before := n.Status()
	n.Stop()
	files, err := checkpoint.List(filepath.Join(dir, checkpoint.Dir))
	if err != nil || len(files) != checkpoint.Keep {
		t.Fatalf("checkpoints %v, %v", files, err)
	}
	flipMiddle(t, files[0].Path)

	var logs logBuffer
	m := runRetaining(t, cfg, metric.NewRegistry(), &logs)
	rebuilt := logs.lines("projection rebuilt")
	if len(rebuilt) != 1 || rebuilt[0]["checkpoint_op"] != float64(files[1].Op) {
		t.Fatalf("projection rebuilt: %v; want it from the older checkpoint, of op %d", rebuilt, files[1].Op)
	}
	if after := m.Status(); after.Projection != before.Projection || after.ChainHead != before.ChainHead || after.CommitNumber != before.CommitNumber {
		t.Fatalf("after restart %+v\nbefore %+v", after, before)
	}
}
