package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
	"github.com/kmb-db/kmb/store/backup"
)

// A three-node cluster backed up under load is restored into three fresh
// data dirs, one `kmbd restore --node-id N --replicas ...` each, which
// start as a cluster again: every backed-up entry is readable on all
// three, /status is right on all three, writes continue, and the restore
// is in the log once.
func TestE2ERestoreCluster(t *testing.T) {
	repo := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "kmbd.toml")
	os.WriteFile(cfg, []byte(`[backup]
flush_interval = "20ms"
checkpoint_interval = "200ms"
verify_interval = "0s"
snapshot_interval = "0s"
`), 0o644)
	url := "file://" + repo
	c := kmbdtest.StartCluster(t, nil, "--config", cfg, "--backup-repo", url)
	leader := c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := startLoad(ctx, t, c, 4)
	kmbdtest.WaitFor(t, "writes backed up under load", 40*time.Second, func() bool {
		return l.written.Load() >= 300 && backupStatus(t, c.Nodes[leader])["checkpoint_op"].(float64) > 100
	})
	// The target: the repository's checkpoint while the load still runs.
	b, _ := backup.NewDirBackend(repo)
	r, err := backup.Open(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	cp := r.Checkpoint()
	l.finish()
	want := tenantLog(t, c.Nodes[leader].API, "load")
	var backedUp []apiEntry
	for _, e := range want {
		if e.Position <= cp.Position {
			backedUp = append(backedUp, e)
		}
	}
	for id := range c.Nodes {
		c.Kill(id)
	}

	// Restore each node's data dir, then start them as a cluster.
	var peers []string
	for i, addr := range kmbdtest.FreeAddrs(t, 3) {
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, addr))
	}
	replicas := strings.Join(peers, ",")
	dirs := map[uint64]string{}
	for id := uint64(1); id <= 3; id++ {
		dirs[id] = filepath.Join(t.TempDir(), "restored")
		out, err := exec.Command(kmbdtest.Binary(t), "restore", "--repo", url, "--to-position", strconv.FormatUint(cp.Position, 10),
			"--node-id", strconv.FormatUint(id, 10), "--replicas", replicas, "--data-dir", dirs[id]).CombinedOutput()
		if err != nil {
			t.Fatalf("restore node %d: %v\n%s", id, err, out)
		}
		_, note := os.Stat(filepath.Join(dirs[id], backup.RestoredNote))
		if (note == nil) != (id == 1) {
			t.Fatalf("node %d's data dir: restore note present = %v; only node 1, which leads view 0, records it", id, note == nil)
		}
	}
	// A cluster restore to the moving checkpoint is refused.
	if out, err := exec.Command(kmbdtest.Binary(t), "restore", "--repo", url, "--node-id", "2", "--replicas", replicas,
		"--data-dir", filepath.Join(t.TempDir(), "x")).CombinedOutput(); err == nil || !strings.Contains(string(out), "--to-position or --to-time") {
		t.Fatalf("restore of a cluster node without a target: %v\n%s", err, out)
	}

	nodes := map[uint64]*kmbdtest.Node{}
	for id := uint64(1); id <= 3; id++ {
		nodes[id] = kmbdtest.Launch(t, dirs[id], nil, "--node-id", strconv.FormatUint(id, 10), "--replicas", replicas)
	}
	for _, n := range nodes {
		n.WaitReady(t, 30*time.Second)
	}
	var lead *kmbdtest.Node
	kmbdtest.WaitFor(t, "one leader, every node normal in one view", 30*time.Second, func() bool {
		lead = nil
		for _, n := range nodes {
			s := n.Status(t)
			if s["status"] != "normal" || s["cluster_size"] != 3.0 || s["healthy_replicas"] != 3.0 {
				return false
			}
			if s["is_leader"] == true {
				lead = n
			}
		}
		return lead != nil
	})
	for id, n := range nodes {
		got := tenantLog(t, n.API, "load")
		if len(got) != len(backedUp) {
			t.Fatalf("node %d: %d entries of tenant load, the backup held %d", id, len(got), len(backedUp))
		}
		for i := range got {
			if got[i].Position != backedUp[i].Position || got[i].Key != backedUp[i].Key || string(got[i].Value) != string(backedUp[i].Value) {
				t.Fatalf("node %d entry %d = %+v, want %+v", id, i, got[i], backedUp[i])
			}
		}
	}

	// Writes continue, and reach every node.
	code, res := kmbdtest.JSONDo(t, "POST", lead.API+"/v1/tenants/after/entries", `{"entries":[{"key":"k","value":"restored"}]}`)
	if code != 200 {
		t.Fatalf("write after the restore: %d %v", code, res)
	}
	commit := res["commit_number"].(float64)
	kmbdtest.WaitFor(t, "the write and the restore op applied on every node", 20*time.Second, func() bool {
		for _, n := range nodes {
			s := n.Status(t)
			if s["commit_number"].(float64) < commit || s["chain_head"].(map[string]any)["op"].(float64) < commit {
				return false
			}
			if code, _ := kmbdtest.HTTPDo(t, "GET", n.API+"/v1/tenants/after/keys/k", ""); code != 200 {
				return false
			}
		}
		return true
	})
	// Once every node applied its whole log, they agree on its chain head.
	var heads []any
	kmbdtest.WaitFor(t, "every node to apply its whole log", 20*time.Second, func() bool {
		heads = nil
		for _, n := range nodes {
			s := n.Status(t)
			head := s["chain_head"].(map[string]any)
			if head["op"] != s["op_number"] {
				return false
			}
			heads = append(heads, head["op"], head["hash"])
		}
		return true
	})
	for i := 2; i < len(heads); i += 2 {
		if heads[i] != heads[0] || heads[i+1] != heads[1] {
			t.Fatalf("nodes disagree on their log: %v", heads)
		}
	}

	// The restore is in the log once.
	day := time.Now().UTC()
	code, body := kmbdtest.HTTPDo(t, "GET", fmt.Sprintf("%s/v1/audit?start=%s&end=%s&format=ndjson", lead.API,
		day.AddDate(0, 0, -1).Format("2006-01-02"), day.AddDate(0, 0, 1).Format("2006-01-02")), "")
	if code != 200 {
		t.Fatalf("audit export: %d %s", code, body)
	}
	restores := strings.Count(string(body), `"kind":"admin","tenant":"","key":"restore"`) + strings.Count(string(body), `"kind":"admin","key":"restore"`)
	if restores != 1 {
		t.Fatalf("%d restore admin ops in the log, want 1:\n%s", restores, grepLines(string(body), "admin"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
