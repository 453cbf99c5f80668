package main

// End-to-end tests of continuous backup across a leader's kill -9.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
	"github.com/kmb-db/kmb/store/backup"
)

type apiEntry struct {
	Position  uint64          `json:"position"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Timestamp time.Time       `json:"timestamp"`
}

// tenantLog reads a tenant's whole log through the API.
func tenantLog(t *testing.T, api, tenant string) []apiEntry {
	t.Helper()
	var out []apiEntry
	for from := uint64(1); ; {
		code, body := kmbdtest.HTTPDo(t, "GET", fmt.Sprintf("%s/v1/tenants/%s/entries?from=%d&limit=1000", api, tenant, from), "")
		if code == 404 && from == 1 {
			return nil
		}
		var page struct {
			Entries []apiEntry `json:"entries"`
			Next    uint64     `json:"next"`
		}
		if code != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("read %s from %d: %d %s", tenant, from, code, body)
		}
		if len(page.Entries) == 0 {
			return out
		}
		out = append(out, page.Entries...)
		from = page.Next
	}
}

// checkpointWatch reads the manifest over and over, and records whether
// its checkpoint ever moved back.
type checkpointWatch struct {
	stop     atomic.Bool
	done     chan struct{}
	mu       sync.Mutex
	last     backup.Checkpoint
	distinct int
	backward []string
}

func watchCheckpoint(b backup.Backend) *checkpointWatch {
	w := &checkpointWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for !w.stop.Load() {
			r, err := backup.Open(context.Background(), b)
			if err == nil {
				cp := r.Checkpoint()
				w.mu.Lock()
				if cp.Op < w.last.Op || cp.Position < w.last.Position || cp.TimestampUnixNano < w.last.TimestampUnixNano {
					w.backward = append(w.backward, fmt.Sprintf("%+v after %+v", cp, w.last))
				}
				if cp != w.last {
					w.distinct++
				}
				w.last = cp
				w.mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

func (w *checkpointWatch) Stop() { w.stop.Store(true); <-w.done }

func backupStatus(t *testing.T, n *kmbdtest.Node) map[string]any {
	t.Helper()
	b, _ := n.Status(t)["backup"].(map[string]any)
	if b == nil {
		t.Fatalf("%s: /status has no backup object", n.Name)
	}
	return b
}

// kmbd with the backup task on every node, the leader killed with
// SIGKILL under load while its task flushes every 20 ms: the new leader
// goes on from the manifest; the repository has no gap and no op twice;
// the checkpoint never moves back; a restore serves exactly the cluster's
// log; a restarted node reports the persisted snapshot time at once.
func TestE2EBackupLeaderKilledMidFlush(t *testing.T) {
	repo := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "kmbd.toml")
	os.WriteFile(cfg, []byte(`[backup]
flush_interval = "20ms"
checkpoint_interval = "200ms"
segment_max_bytes = 65536
verify_interval = "0s"
snapshot_interval = "0s"
`), 0o644)
	url := "file://" + repo
	c := kmbdtest.StartCluster(t, nil, "--config", cfg, "--backup-repo", url)
	first := c.Leader()
	b, _ := backup.NewDirBackend(repo)
	watch := watchCheckpoint(b)
	defer watch.Stop()
	kmbdtest.WaitFor(t, "the leader's backup task to run", 20*time.Second, func() bool {
		return backupStatus(t, c.Nodes[first])["state"] == backup.StateRunning
	})
	for id, n := range c.Nodes {
		if id != first && backupStatus(t, n)["state"] != backup.StateStandby {
			t.Fatalf("follower %d: backup %v", id, backupStatus(t, n))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := startLoad(ctx, t, c, 6)
	kmbdtest.WaitFor(t, "writes backed up before the kill", 30*time.Second, func() bool {
		return l.written.Load() >= 300 && backupStatus(t, c.Nodes[first])["checkpoint_op"].(float64) > 100
	})
	l.kill(c, first)
	killedAt := l.written.Load()
	second := c.Leader()
	kmbdtest.WaitFor(t, "writes after the failover", 30*time.Second, func() bool { return l.written.Load() >= killedAt+300 })
	l.finish()
	if ctx.Err() != nil {
		t.Fatalf("writers timed out: %v", ctx.Err())
	}

	// The new leader's task ships everything committed.
	var commit float64
	kmbdtest.WaitFor(t, "the new leader's task to catch up", 30*time.Second, func() bool {
		s := c.Nodes[second].Status(t)
		commit = s["commit_number"].(float64)
		bs := s["backup"].(map[string]any)
		return bs["state"] == backup.StateRunning && bs["checkpoint_op"].(float64) == commit && bs["lag_entries"] == 0.0
	})
	watch.Stop()
	if len(watch.backward) > 0 {
		t.Fatalf("the checkpoint moved back: %v", watch.backward)
	}
	rep, err := backup.VerifyBackend(context.Background(), b)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", rep.Problems, err)
	}
	if rep.Checkpoint.Op != uint64(commit) {
		t.Fatalf("checkpoint op %d, commit %v", rep.Checkpoint.Op, commit)
	}
	if got := c.Nodes[second].Metric(t, `kmb_backup_task_state{node_id="`+strconv.FormatUint(second, 10)+`",state="running",task="log"}`); got != "1" {
		t.Fatalf("new leader's task state gauge %s", got)
	}
	t.Logf("leader %d killed after %d writes; node %d took over; %d checkpoints seen, none backwards; %d segments, %d orphans (flushes cut by the kill)",
		first, killedAt, second, watch.distinct, rep.Segments, len(rep.Orphans))

	// Restores serve exactly the cluster's log: all of it, and a prefix.
	survivor := c.Nodes[second]
	want := map[string][]apiEntry{"load": tenantLog(t, survivor.API, "load"), "acme": tenantLog(t, survivor.API, "acme")}
	half := want["load"][len(want["load"])/2].Position
	for _, tc := range []struct {
		name  string
		args  []string
		limit uint64
	}{
		{"latest", nil, ^uint64(0)},
		{"half", []string{"--to-position", strconv.FormatUint(half, 10)}, half},
	} {
		dataDir := filepath.Join(t.TempDir(), "restored")
		out, err := exec.Command(kmbdtest.Binary(t), append([]string{"restore", "--repo", url, "--data-dir", dataDir}, tc.args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("restore %s: %v\n%s", tc.name, err, out)
		}
		n := kmbdtest.StartNode(t, dataDir, nil)
		for tenant, entries := range want {
			var prefix []apiEntry
			for _, e := range entries {
				if e.Position <= tc.limit {
					prefix = append(prefix, e)
				}
			}
			got := tenantLog(t, n.API, tenant)
			if len(got) != len(prefix) {
				t.Fatalf("restore %s: tenant %s has %d entries, want %d", tc.name, tenant, len(got), len(prefix))
			}
			for i := range got {
				if got[i].Position != prefix[i].Position || got[i].Key != prefix[i].Key || string(got[i].Value) != string(prefix[i].Value) || !got[i].Timestamp.Equal(prefix[i].Timestamp) {
					t.Fatalf("restore %s: tenant %s entry %d = %+v, want %+v", tc.name, tenant, i, got[i], prefix[i])
				}
			}
		}
		n.Stop(t)
	}

	// A snapshot, then the killed node restarts: it reports the persisted
	// success time, not 0, as soon as it is up.
	if out, err := exec.Command(kmbdtest.Binary(t), "snapshot", "create", "--repo", url).CombinedOutput(); err != nil {
		t.Fatalf("snapshot create: %v\n%s", err, out)
	}
	r, err := backup.Open(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	success := float64(r.Stats().LastSnapshotSuccess.UnixNano()) / 1e9
	c.Restart(first)
	series := `kmb_snapshot_last_success_timestamp_seconds{node_id="` + strconv.FormatUint(first, 10) + `"}`
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if v, _ := strconv.ParseFloat(c.Nodes[first].Metric(t, series), 64); v != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted node still reports no snapshot success after 20s; its backup status: %v", backupStatus(t, c.Nodes[first]))
		}
	}
	if v, _ := strconv.ParseFloat(c.Nodes[first].Metric(t, series), 64); v < success-1e-3 || v > success+1e-3 {
		t.Fatalf("restarted node reports last snapshot success %v, the manifest says %v", v, success)
	}
}

// A kmbd node backs up to a real S3-compatible server (MinIO on
// loopback); verify and restore read it back through the same URL.
func TestE2EBackupToS3(t *testing.T) {
	m := kmbdtest.StartMinIO(t)
	m.MakeBucket(t, "kmb")
	url := "s3://kmb/cluster-a?endpoint=" + m.Endpoint + "&path_style=true"
	n := kmbdtest.StartNode(t, t.TempDir(), m.Env(), "--backup-repo", url)
	for i := 0; i < 20; i++ {
		body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":%d},{"key":"same","value":%d}]}`, i, i, i)
		if code, out := kmbdtest.HTTPDo(t, "POST", n.API+"/v1/tenants/acme/entries", body); code != 200 {
			t.Fatalf("write: %d %s", code, out)
		}
	}
	kmbdtest.WaitFor(t, "the backup to reach the commit", 20*time.Second, func() bool {
		s := n.Status(t)
		b := s["backup"].(map[string]any)
		return b["state"] == backup.StateRunning && b["checkpoint_op"] == s["commit_number"]
	})
	if got := n.Metric(t, `kmb_backup_storage_operation_duration_seconds_count{backend="s3",node_id="1",operation="segment"}`); got == "0" {
		t.Fatal("no segment write to s3 was timed")
	}
	want := tenantLog(t, n.API, "acme")

	env := append(os.Environ(), m.Env()...)
	verify := exec.Command(kmbdtest.Binary(t), "backup", "verify", "--repo", url)
	verify.Env = env
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	dataDir := filepath.Join(t.TempDir(), "restored")
	restore := exec.Command(kmbdtest.Binary(t), "restore", "--repo", url, "--data-dir", dataDir)
	restore.Env = env
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	n.Stop(t)
	r := kmbdtest.StartNode(t, dataDir, nil)
	got := tenantLog(t, r.API, "acme")
	if len(got) != len(want) || len(want) != 40 {
		t.Fatalf("restored %d entries, want %d (40)", len(got), len(want))
	}
	for i := range got {
		if got[i].Position != want[i].Position || got[i].Key != want[i].Key || string(got[i].Value) != string(want[i].Value) {
			t.Fatalf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
