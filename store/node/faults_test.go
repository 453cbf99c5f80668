package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/log/faultfs"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// labelledValue is the value of the series of name with these label
// values.
func labelledValue(t *testing.T, reg *metric.Registry, name string, labels ...string) float64 {
	t.Helper()
	for _, s := range family(t, reg, name).Series {
		if strings.Join(s.LabelValues, ",") == strings.Join(labels, ",") {
			return s.Value
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// TestDiskFull: writes that do not fit fail with ErrDiskFull and append
// nothing; reads go on; readiness fails but liveness does not; writes
// resume by themselves once space is freed; a restart finds exactly the
// acknowledged writes.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	fsys := faultfs.New(nil)
	reg := metric.NewRegistry()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.TickInterval = dir, 5*time.Millisecond
	n, err := New(cfg, Deps{Metrics: reg, FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	go n.Run()
	t.Cleanup(n.Stop)
	waitFor(t, 10*time.Second, "ready", func() bool { return n.Ready() == nil })
	ctx := context.Background()
	var acked []string
	for i := range 5 {
		k := "before-" + string(rune('a'+i))
		if _, err := n.Append(ctx, Write{Tenant: "acme", Entries: entries(k, `1`)}); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, k)
	}

	fsys.SetSpace(0)
	_, err = n.Append(ctx, Write{Tenant: "acme", Entries: entries("lost", `2`)})
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Append on a full disk = %v, want ErrDiskFull", err)
	}
	if _, err := n.Append(ctx, Write{Tenant: "acme", Entries: entries("lost2", `2`)}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("second Append on a full disk = %v", err)
	}
	if err := n.Ready(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Ready on a full disk = %v", err)
	}
	if err := n.Live(); err != nil {
		t.Fatalf("Live on a full disk = %v, want nil", err)
	}
	if !n.Status().DiskFull {
		t.Fatal("status does not say the disk is full")
	}
	if _, err := n.Get("acme", "before-a"); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	if got := labelledValue(t, reg, "kmb_storage_errors_total", "write", "enospc"); got < 1 {
		t.Fatalf("kmb_storage_errors_total{write,enospc} = %v", got)
	}

	fsys.SetSpace(-1)
	waitFor(t, 10*time.Second, "writes resume", func() bool { return n.Ready() == nil })
	if _, err := n.Append(ctx, Write{Tenant: "acme", Entries: entries("after", `3`)}); err != nil {
		t.Fatalf("Append once space is back: %v", err)
	}
	acked = append(acked, "after")
	n.Stop()

	m := startNode(t, dir, nil, nil)
	for _, k := range acked {
		if _, err := m.Get("acme", k); err != nil {
			t.Errorf("acknowledged write %s lost: %v", k, err)
		}
	}
	for _, k := range []string{"lost", "lost2"} {
		if _, err := m.Get("acme", k); !errors.Is(err, ErrNotFound) {
			t.Errorf("refused write %s is there: %v", k, err)
		}
	}
	if got := m.Status().OpNumber; got != 6 {
		t.Fatalf("log holds %d ops after a restart, want 6", got)
	}
}

// TestFailedFsyncStops: a failed fsync is fail-stop, unlike a full disk.
func TestFailedFsyncStops(t *testing.T) {
	fsys := faultfs.New(nil)
	cfg := DefaultConfig()
	cfg.DataDir, cfg.TickInterval = t.TempDir(), 5*time.Millisecond
	n, err := New(cfg, Deps{FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	go n.Run()
	t.Cleanup(n.Stop)
	waitFor(t, 10*time.Second, "ready", func() bool { return n.Ready() == nil })
	fsys.Add(faultfs.Rule{Op: faultfs.Sync, Path: ".seg", Err: faultfs.EIO})
	if _, err := n.Append(context.Background(), Write{Tenant: "acme", Entries: entries("k", `1`)}); err == nil {
		t.Fatal("Append with a failing fsync succeeded")
	}
	waitFor(t, 5*time.Second, "liveness fails", func() bool { return n.Live() != nil })
}

// TestSingleNodeRefusesCorruptLog: damage that valid records follow stops
// a single node, naming the place, with nothing changed.
func TestSingleNodeRefusesCorruptLog(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil, nil)
	for i := range 20 {
		if _, err := n.Append(context.Background(), Write{Tenant: "acme", Entries: entries("k", string(rune('0'+i%10)))}); err != nil {
			t.Fatal(err)
		}
	}
	n.Stop()
	seg := filepath.Join(dir, "log", "00000000000000000001.seg")
	flipMiddle(t, seg)
	before, _ := os.ReadFile(seg)

	m, err := New(DefaultConfig(), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	m.cfg.DataDir = dir
	err = m.Run()
	var ce *kmblog.CorruptionError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "kmbd log check --data-dir "+dir) || !strings.Contains(err.Error(), "00000000000000000001.seg") {
		t.Fatalf("Run on a corrupt log = %v", err)
	}
	if after, _ := os.ReadFile(seg); string(after) != string(before) {
		t.Fatal("the refused start changed the segment")
	}
}

// flipMiddle flips a byte in the middle of a segment file.
func flipMiddle(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestClusterRepairsCorruptFollower: a follower restarts with a record in
// the middle of its log corrupt; it repairs it from the cluster, counts
// it, and serves every entry.
func TestClusterRepairsCorruptFollower(t *testing.T) {
	regs := map[uint64]*metric.Registry{}
	nodes, leader := startClusterWith(t, func(id uint64, d *Deps) { regs[id] = d.Metrics })
	ctx := context.Background()
	const writes = 60
	for i := range writes {
		if _, err := leader.Append(ctx, Write{Tenant: "acme", Entries: entries("k"+string(rune('A'+i%26))+string(rune('a'+i/26)), `"v"`)}); err != nil {
			t.Fatal(err)
		}
	}
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	waitFor(t, 10*time.Second, "follower caught up", func() bool { return follower.Status().CommitNumber == writes })
	follower.Stop()
	seg := filepath.Join(follower.cfg.DataDir, "log", "00000000000000000001.seg")
	clean, _ := os.ReadFile(seg)
	flipMiddle(t, seg)

	reg := metric.NewRegistry()
	back, err := New(follower.cfg, Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	go back.Run()
	t.Cleanup(back.Stop)
	waitFor(t, 20*time.Second, "follower repaired and ready", func() bool { return back.Ready() == nil && back.Status().CorruptOps == 0 })
	if got := counterValue(t, reg, "kmb_log_corrupt_ops_repaired_total"); got < 1 {
		t.Fatalf("kmb_log_corrupt_ops_repaired_total = %v", got)
	}
	es, _, err := back.Entries("acme", 1, 1000)
	if err != nil || len(es) != writes {
		t.Fatalf("follower serves %d entries (%v), want %d", len(es), err, writes)
	}
	back.Stop()
	if repaired, _ := os.ReadFile(seg); string(repaired) != string(clean) {
		t.Fatal("the repaired segment differs from the one before the damage")
	}
}

// TestFollowerDiskFull: a follower whose disk fills stops acknowledging
// what it cannot store while the other two commit, and catches up by
// itself once space returns.
func TestFollowerDiskFull(t *testing.T) {
	fss := map[uint64]*faultfs.FS{}
	nodes, leader := startClusterWith(t, func(id uint64, d *Deps) {
		fss[id] = faultfs.New(nil)
		d.FS = fss[id]
	})
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	ctx := context.Background()
	fss[follower.cfg.NodeID].SetSpace(0)
	for i := range 20 {
		if _, err := leader.Append(ctx, Write{Tenant: "acme", Entries: entries("k"+string(rune('a'+i)), `1`)}); err != nil {
			t.Fatalf("write %d with a follower's disk full: %v", i, err)
		}
	}
	waitFor(t, 10*time.Second, "the follower to report its disk full", func() bool { return follower.Status().DiskFull })
	if err := follower.Ready(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("follower Ready = %v", err)
	}
	if got := follower.Status().OpNumber; got >= 20 {
		t.Fatalf("the follower holds op %d with no space", got)
	}
	fss[follower.cfg.NodeID].SetSpace(-1)
	waitFor(t, 20*time.Second, "the follower to catch up", func() bool {
		s := follower.Status()
		return !s.DiskFull && s.CommitNumber == 20 && follower.Ready() == nil
	})
	if _, err := follower.Get("acme", "kt"); err != nil {
		t.Fatalf("the caught-up follower misses the last write: %v", err)
	}
}
