package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmb-db/kmb/status"
	"github.com/kmb-db/kmb/store/backup"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// startNode runs a node on dir and waits until it is ready.
func startNode(t testing.TB, dir string, reg *metric.Registry, now func() time.Time) *Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.TickInterval = 5 * time.Millisecond
	n, err := New(cfg, Deps{Metrics: reg, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- n.Run() }()
	deadline := time.Now().Add(10 * time.Second)
	for n.Ready() != nil {
		select {
		case err := <-errc:
			t.Fatalf("Run: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %v", n.Ready())
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(n.Stop)
	return n
}

func entries(kv ...string) []kmblog.Entry {
	var out []kmblog.Entry
	for i := 0; i < len(kv); i += 2 {
		out = append(out, kmblog.Entry{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return out
}

func TestAppendGetEntries(t *testing.T) {
	n := startNode(t, t.TempDir(), nil, nil)
	ctx := context.Background()

	r1, err := n.Append(ctx, Write{Tenant: "acme", Entries: entries("k1", `1`, "k2", `"two"`)})
	if err != nil {
		t.Fatal(err)
	}
	if r1 != (AppendResult{FirstPosition: 1, LastPosition: 2, CommitNumber: 1}) {
		t.Fatalf("first append = %+v", r1)
	}
	r2, err := n.Append(ctx, Write{Tenant: "globex", Entries: entries("k1", `{"a":true}`)})
	if err != nil || r2 != (AppendResult{3, 3, 2}) {
		t.Fatalf("second append = %+v, %v", r2, err)
	}
	r3, err := n.Append(ctx, Write{Tenant: "acme", Entries: entries("k1", `3`)})
	if err != nil || r3 != (AppendResult{4, 4, 3}) {
		t.Fatalf("third append = %+v, %v", r3, err)
	}

	v, err := n.Get("acme", "k1")
	if err != nil || string(v.Data) != `3` || v.Position != 4 {
		t.Fatalf("Get(acme,k1) = %q@%d, %v", v.Data, v.Position, err)
	}
	if _, err := n.Get("acme", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := n.Get("initech", "k1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing tenant: %v", err)
	}

	got, next, err := n.Entries("acme", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	var desc []string
	for _, e := range got {
		desc = append(desc, fmt.Sprintf("%d:%s=%s", e.Position, e.Key, e.Value))
	}
	if fmt.Sprint(desc) != "[1:k1=1 2:k2=\"two\" 4:k1=3]" || next != 5 {
		t.Fatalf("Entries(acme) = %v next %d", desc, next)
	}
	// Paging: from inside an op, bounded by limit.
	got, next, err = n.Entries("acme", 2, 1)
	if err != nil || len(got) != 1 || got[0].Position != 2 || next != 3 {
		t.Fatalf("page = %+v next %d err %v", got, next, err)
	}
	got, next, err = n.Entries("acme", next, 1)
	if err != nil || len(got) != 1 || got[0].Position != 4 || next != 5 {
		t.Fatalf("page 2 = %+v next %d err %v", got, next, err)
	}
	if _, _, err := n.Entries("initech", 1, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}

	s := n.Status()
	if s.Status != status.StateNormal || s.CommitNumber != 3 || s.OpNumber != 3 || !s.IsLeader ||
		s.LeaderID != 1 || s.ClusterSize != 1 || s.HealthyReplicas != 1 ||
		s.Projection.AppliedPosition != 4 || s.Projection.Lag != 0 || s.Projection.ActiveTenants != 2 {
		t.Fatalf("status = %+v", s)
	}
}

// Concurrent writers share fsyncs, and every write gets its own contiguous
// positions.
func TestGroupCommit(t *testing.T) {
	reg := metric.NewRegistry()
	n := startNode(t, t.TempDir(), reg, nil)
	const writers, perWriter = 32, 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[uint64]bool{}
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				r, err := n.Append(context.Background(), Write{Tenant: "acme", Entries: entries("k", `1`, "k", `2`)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for p := r.FirstPosition; p <= r.LastPosition; p++ {
					if seen[p] {
						t.Errorf("position %d handed out twice", p)
					}
					seen[p] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != writers*perWriter*2 {
		t.Fatalf("%d positions, want %d", len(seen), writers*perWriter*2)
	}
	for p := uint64(1); p <= uint64(len(seen)); p++ {
		if !seen[p] {
			t.Fatalf("position %d missing", p)
		}
	}
	fsyncs := histogramCount(t, reg, "kmb_log_fsync_duration_seconds")
	if fsyncs == 0 || fsyncs >= writers*perWriter {
		t.Fatalf("%d fsyncs for %d writes: writes did not share fsyncs", fsyncs, writers*perWriter)
	}
	if got := counterValue(t, reg, "kmb_consensus_commits_total"); got != float64(len(seen)) {
		t.Fatalf("kmb_consensus_commits_total = %v, want %d", got, len(seen))
	}
	if got := counterValue(t, reg, "kmb_log_entries_total"); got != float64(len(seen)) {
		t.Fatalf("kmb_log_entries_total = %v, want %d", got, len(seen))
	}
	t.Logf("%d writes committed with %d fsyncs", writers*perWriter, fsyncs)
}

func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil, nil)
	for i := 0; i < 50; i++ {
		if _, err := n.Append(context.Background(), Write{Tenant: fmt.Sprintf("t%d", i%3), Entries: entries(fmt.Sprintf("k%d", i), fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	before := n.Status()
	n.Stop()

	reg := metric.NewRegistry()
	m := startNode(t, dir, reg, nil)
	after := m.Status()
	if after.OpNumber != before.OpNumber || after.CommitNumber != before.CommitNumber ||
		after.Projection != before.Projection || after.Log.LastPosition != before.Log.LastPosition {
		t.Fatalf("after restart %+v\nbefore %+v", after, before)
	}
	v, err := m.Get("t1", "k49")
	if err != nil || string(v.Data) != "49" || v.Position != 50 {
		t.Fatalf("Get after restart = %q@%d %v", v.Data, v.Position, err)
	}
	r, err := m.Append(context.Background(), Write{Tenant: "t1", Entries: entries("k", `"after"`)})
	if err != nil || r.FirstPosition != 51 || r.CommitNumber != 51 {
		t.Fatalf("append after restart = %+v %v", r, err)
	}
	// Per-tenant counters are rebuilt from the log, not reset to zero.
	if got := seriesValue(t, reg, "kmb_tenant_log_entries_total", "t1"); got != 18 {
		t.Fatalf("kmb_tenant_log_entries_total{t1} = %v, want 18", got)
	}
}

func TestNotReadyBeforeRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	n, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Append(context.Background(), Write{Tenant: "a", Entries: entries("k", "1")}); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Append before Run = %v", err)
	}
	if err := n.Ready(); err == nil {
		t.Fatal("ready before Run")
	}
	if err := n.Live(); err != nil {
		t.Fatalf("live while recovering: %v", err)
	}
	if s := n.Status(); s.Status != status.StateRecovering || s.IsLeader {
		t.Fatalf("status before Run = %+v", s)
	}
}

func TestStopRejectsNewWrites(t *testing.T) {
	n := startNode(t, t.TempDir(), nil, nil)
	n.Stop()
	if _, err := n.Append(context.Background(), Write{Tenant: "a", Entries: entries("k", "1")}); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("Append after Stop = %v", err)
	}
	if n.Ready() == nil {
		t.Fatal("ready after Stop")
	}
}

// Commit timestamps never go backwards even when the clock does.
func TestTimestampsMonotonic(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	n := startNode(t, t.TempDir(), nil, now)
	if _, err := n.Append(context.Background(), Write{Tenant: "a", Entries: entries("k", "1")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clock = clock.Add(-5 * time.Second)
	mu.Unlock()
	if _, err := n.Append(context.Background(), Write{Tenant: "a", Entries: entries("k", "2")}); err != nil {
		t.Fatal(err)
	}
	got, _, err := n.Entries("a", 1, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	if got[1].Timestamp.Before(got[0].Timestamp) {
		t.Fatalf("timestamps went backwards: %v then %v", got[0].Timestamp, got[1].Timestamp)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.NodeID = 0 }, "node_id = 0: accepted 1..255"},
		{func(c *Config) { c.NodeID = 256 }, "node_id = 256"},
		{func(c *Config) { c.DataDir = "" }, "data_dir"},
		{func(c *Config) { c.MaxBatchOps = 0 }, "storage.max_batch_ops = 0: accepted 1..65536"},
		{func(c *Config) { c.QueueDepth = -1 }, "storage.queue_depth"},
		{func(c *Config) { c.SegmentSizeBytes = 1 }, "segment_size_bytes"},
		{func(c *Config) { c.RetentionBytes = 1 << 30; c.AllowUnbackedTruncation = true }, ""},
		{func(c *Config) {
			c.RetentionTime = time.Hour
			c.RetentionFloor = func() (uint64, bool) { return 0, false }
		}, ""},
		{func(c *Config) { c.RetentionBytes = 1 << 30 }, "storage.allow_unbacked_truncation = true"},
		{func(c *Config) { c.RetentionTime = time.Hour }, "backup.repository"},
		{func(c *Config) { c.RetentionBytes = 1 << 20; c.AllowUnbackedTruncation = true }, "storage.retention_bytes = 1048576: accepted 0 (off) or storage.segment_size_bytes"},
		{func(c *Config) { c.RetentionBytes = 1 << 51; c.AllowUnbackedTruncation = true }, "storage.retention_bytes"},
		{func(c *Config) { c.RetentionTime = time.Second; c.AllowUnbackedTruncation = true }, "storage.retention_time = 1s: accepted 0 (off) or 1m0s"},
	} {
		cfg := DefaultConfig()
		tc.mut(&cfg)
		err := cfg.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("valid config: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, tc.want)
		}
	}
}

func family(t *testing.T, reg *metric.Registry, name string) metric.Family {
	t.Helper()
	for _, f := range reg.Gather() {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("family %s not registered", name)
	return metric.Family{}
}

func counterValue(t *testing.T, reg *metric.Registry, name string) float64 {
	f := family(t, reg, name)
	if len(f.Series) != 1 {
		t.Fatalf("%s has %d series", name, len(f.Series))
	}
	return f.Series[0].Value
}

func seriesValue(t *testing.T, reg *metric.Registry, name, label string) float64 {
	for _, s := range family(t, reg, name).Series {
		if len(s.LabelValues) == 1 && s.LabelValues[0] == label {
			return s.Value
		}
	}
	t.Fatalf("%s{%s} missing", name, label)
	return 0
}

func histogramCount(t *testing.T, reg *metric.Registry, name string) uint64 {
	f := family(t, reg, name)
	return f.Series[0].Histogram.Count
}

// Two processes never share a data dir.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	startNode(t, dir, nil, nil)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	second, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	err = second.Run()
	if err == nil || !strings.Contains(err.Error(), "in use by another kmbd process") {
		t.Fatalf("second node on the same data dir: %v", err)
	}
	if second.Ready() == nil || second.Live() == nil {
		t.Fatal("a node that failed to start reports healthy")
	}
}

// A data dir left by a restore that did not finish is never served.
func TestRefusesUnfinishedRestore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, backup.RestoringMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = dir
	n, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(); err == nil || !strings.Contains(err.Error(), "restore that did not finish") {
		t.Fatalf("Run() = %v", err)
	}
}

// A marker is a committed op with no entries, a commit time after every
// earlier op's, and no tenant.
func TestCommitMarker(t *testing.T) {
	n := startNode(t, t.TempDir(), nil, nil)
	ctx := context.Background()
	r, err := n.Append(ctx, Write{Tenant: "acme", Entries: entries("k", `1`)})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := n.log.Read(r.CommitNumber)
	op, ts, err := n.CommitMarker(ctx)
	if err != nil || op != r.CommitNumber+1 || ts.UnixNano() <= before.Timestamp {
		t.Fatalf("marker op %d at %v (%v); the write was op %d at %d", op, ts, err, r.CommitNumber, before.Timestamp)
	}
	if got := n.proj.ActiveTenants(); got != 1 {
		t.Fatalf("%d tenants after a marker, want 1", got)
	}
	r2, err := n.Append(ctx, Write{Tenant: "acme", Entries: entries("k", `2`)})
	if err != nil || r2.FirstPosition != 2 || r2.CommitNumber != op+1 {
		t.Fatalf("write after the marker: %+v, %v", r2, err)
	}
	if _, _, pos := n.BackupRole(); pos != 2 {
		t.Fatalf("applied position %d, want 2", pos)
	}
}

// An admin op is a committed system op: one entry naming the action, its
// JSON detail and the principal, in no tenant, chained like every op.
func TestCommitAdmin(t *testing.T) {
	n := startNode(t, t.TempDir(), nil, nil)
	ctx := context.Background()
	op, err := n.CommitAdmin(ctx, "token_reload", map[string]int{"tokens": 3}, "root")
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.log.Read(op)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != kmblog.KindAdmin || got.Tenant != "" || got.Principal != "root" || len(got.Entries) != 1 ||
		got.Entries[0].Key != "token_reload" || string(got.Entries[0].Value) != `{"tokens":3}` {
		t.Fatalf("admin op = %+v", got)
	}
	if kmblog.ChainHash(kmblog.Chain{}, &got) != got.Chain {
		t.Fatal("admin op's chain hash does not follow op 0")
	}
	if n.proj.ActiveTenants() != 0 || n.proj.AppliedPosition() != 1 {
		t.Fatalf("admin op applied as a tenant's: %d tenants, applied position %d", n.proj.ActiveTenants(), n.proj.AppliedPosition())
	}
	if _, err := n.CommitAdmin(ctx, "", nil, ""); err == nil {
		t.Fatal("an admin op without an action was committed")
	}
}
