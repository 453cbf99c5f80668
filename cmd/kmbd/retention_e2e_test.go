package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

// metricValue is the value of the first series of family name in
// /metrics, whatever its labels.
func metricValue(t *testing.T, n *kmbdtest.Node, name string) float64 {
	t.Helper()
	_, b := kmbdtest.HTTPDo(t, "GET", n.Tel+"/metrics", "")
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return v
	}
	t.Fatalf("%s not in /metrics", name)
	return 0
}

// writeMB writes batches of 100 entries of 1 kB values to tenant acme,
// keys k0..k99: the checkpoints stay small (100 kB), so one is taken
// every checkpoint_interval_bytes.
func writeMB(t *testing.T, api string, from, batches int) {
	t.Helper()
	value := `"` + strings.Repeat("x", 1000) + `"`
	for b := from; b < from+batches; b++ {
		var es []string
		for i := range 100 {
			es = append(es, fmt.Sprintf(`{"key":"k%d","value":%s}`, i, value))
		}
		if code, body := kmbdtest.HTTPDo(t, "POST", api+"/v1/tenants/acme/entries", `{"entries":[`+strings.Join(es, ",")+`]}`); code != 200 {
			t.Fatalf("write: %d %s", code, body)
		}
	}
}

const retentionTOML = `[storage]
segment_size_bytes = 1048576
checkpoint_interval_bytes = 1048576
retention_bytes = 2097152
`

// A single node with retention and allow_unbacked_truncation deletes old
// segments as it writes: kmb_log_first_retained_position moves, and after
// a restart the node, whose log now starts later, serves every key.
func TestE2ERetentionUnbacked(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "kmbd.toml")
	os.WriteFile(cfg, []byte(retentionTOML+"allow_unbacked_truncation = true\n"), 0o644)
	dataDir := t.TempDir()
	n := kmbdtest.StartNode(t, dataDir, nil, "--config", cfg)
	writeMB(t, n.API, 0, 50) // 5 MB
	kmbdtest.WaitFor(t, "segments removed", 20*time.Second, func() bool {
		return metricValue(t, n, "kmb_log_first_retained_position") > 1
	})
	// The start moves first, then the files go, the line is logged and
	// the counters move.
	kmbdtest.WaitFor(t, "the deletion logged and counted", 10*time.Second, func() bool {
		return hasLog(n.Output.LogLines(t), "kmb_storage", "log segments removed below the retained start", "segments", "bytes") &&
			metricValue(t, n, "kmb_log_retention_removed_bytes_total") > 0
	})
	first := metricValue(t, n, "kmb_log_first_retained_position")
	n.Stop(t)

	n = kmbdtest.StartNode(t, dataDir, nil, "--config", cfg)
	if got := metricValue(t, n, "kmb_log_first_retained_position"); got < first {
		t.Fatalf("kmb_log_first_retained_position after restart = %v, want >= %v", got, first)
	}
	for _, k := range []string{"k0", "k50", "k99"} {
		if code, m := kmbdtest.JSONDo(t, "GET", n.API+"/v1/tenants/acme/keys/"+k, ""); code != 200 || m["value"] != strings.Repeat("x", 1000) {
			t.Fatalf("GET %s after restart: %d", k, code)
		}
	}
	writeMB(t, n.API, 50, 1)
}

// Without a repository and without allow_unbacked_truncation, kmbd
// refuses to start with retention on, naming the keys.
func TestE2ERetentionRefusedUnbacked(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "kmbd.toml")
	os.WriteFile(cfg, []byte(retentionTOML), 0o644)
	code, _, stderr := kmbdRun(t, "--config", cfg, "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "storage.allow_unbacked_truncation = true") || !strings.Contains(stderr, "storage.retention_bytes") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// With a repository, retention never deletes past the backup checkpoint:
// the expression of LogTruncatedBeforeBackup,
// (kmb_log_first_retained_position - 1) - kmb_backup_checkpoint_position
// > 0, stays false on every scrape while the node writes and deletes, and
// while the backup is paused, when the log grows instead; once resumed,
// retention catches up.
func TestE2ERetentionHoldsAtBackupCheckpoint(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "kmbd.toml")
	os.WriteFile(cfg, []byte(retentionTOML+`[backup]
flush_interval = "500ms"
checkpoint_interval = "200ms"
verify_interval = "0s"
snapshot_interval = "0s"
`), 0o644)
	repo := "file://" + t.TempDir()
	n := kmbdtest.StartNode(t, t.TempDir(), nil, "--config", cfg, "--backup-repo", repo)
	check := func() float64 {
		// The first retained position first: the checkpoint only
		// grows, so one read after it is at least the one retention
		// obeyed.
		first := metricValue(t, n, "kmb_log_first_retained_position")
		cp := metricValue(t, n, "kmb_backup_checkpoint_position")
		if first-1-cp > 0 {
			t.Fatalf("first retained position %v, backup checkpoint position %v: LogTruncatedBeforeBackup would fire", first, cp)
		}
		return first
	}
	for b := 0; b < 60; b += 5 {
		writeMB(t, n.API, b, 5)
		check()
	}
	kmbdtest.WaitFor(t, "segments removed below the backup checkpoint", 30*time.Second, func() bool { return check() > 1 })

	// With the backup paused the checkpoint stands still, and so does
	// retention: the log grows past retention_bytes instead.
	if code, _, stderr := kmbdRun(t, "backup", "pause", "--repo", repo); code != 0 {
		t.Fatalf("backup pause: %d %s", code, stderr)
	}
	kmbdtest.WaitFor(t, "the task paused", 10*time.Second, func() bool { return backupStatus(t, n)["state"] == "paused" })
	held := metricValue(t, n, "kmb_backup_checkpoint_position")
	writeMB(t, n.API, 60, 40)
	kmbdtest.WaitFor(t, "the log held past retention_bytes", 20*time.Second, func() bool {
		return metricValue(t, n, "kmb_log_size_bytes") > 4<<20
	})
	if first := check(); first-1 > held {
		t.Fatalf("first retained position %v passed the paused checkpoint position %v", first, held)
	}
	if cp := metricValue(t, n, "kmb_backup_checkpoint_position"); cp != held {
		t.Fatalf("checkpoint moved from %v to %v while paused", held, cp)
	}
	// Resumed, the backup catches up and retention follows.
	if code, _, stderr := kmbdRun(t, "backup", "resume", "--repo", repo); code != 0 {
		t.Fatalf("backup resume: %d %s", code, stderr)
	}
	kmbdtest.WaitFor(t, "retention past the old checkpoint", 30*time.Second, func() bool { return check()-1 > held })
}

// A cluster with retention takes a new member: the others' logs no longer
// start at op 1, so the new node installs a peer's checkpoint (state
// transfer), fetches the log after it, serves every key, counts in the
// quorum once the old member is gone, and restarts from what it installed
// after a kill -9.
func TestE2ERetentionStateTransfer(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "kmbd.toml")
	os.WriteFile(cfg, []byte(retentionTOML+"allow_unbacked_truncation = true\n"), 0o644)
	c := kmbdtest.StartCluster(t, debugLog, "--config", cfg)
	addrs := map[uint64]string{}
	for _, part := range strings.Split(c.Replicas(), ",") {
		id, addr, _ := strings.Cut(part, "=")
		n, _ := strconv.ParseUint(id, 10, 64)
		addrs[n] = addr
	}
	addrs[4] = kmbdtest.FreeAddrs(t, 1)[0]
	leader := c.Leader()
	writeMB(t, c.Nodes[leader].API, 0, 60) // 6 MB
	for id, n := range c.Nodes {
		kmbdtest.WaitFor(t, fmt.Sprintf("node %d deletes segments", id), 30*time.Second, func() bool {
			return metricValue(t, n, "kmb_log_first_retained_position") > 1
		})
	}
	var gone uint64
	keep := []uint64{leader}
	for id := range c.Nodes {
		if id != leader && gone == 0 {
			gone = id
		} else if id != leader {
			keep = append(keep, id)
		}
	}
	members := replicaList(addrs, append(keep, 4)...)
	n4 := c.Join(4, members)
	if code, _, stderr := reconfigure(t, c.Nodes[leader], members); code != 0 {
		t.Fatalf("reconfigure to %s: exit %d\n%s", members, code, stderr)
	}
	n4.WaitReady(t, 60*time.Second)
	kmbdtest.WaitFor(t, "node 4 installed a checkpoint", 30*time.Second, func() bool {
		return hasLog(n4.Output.LogLines(t), "kmb_consensus", "checkpoint from a peer installed; fetching the log after it", "from", "checkpoint_op", "bytes") &&
			metricValue(t, n4, "kmb_consensus_state_transfers_total") >= 1
	})
	if first := metricValue(t, n4, "kmb_log_first_retained_position"); first <= 1 {
		t.Fatalf("node 4's log starts at position %v: it fetched the whole log instead of a checkpoint", first)
	}
	readAll := func(n *kmbdtest.Node) {
		t.Helper()
		for i := range 100 {
			kmbdtest.WaitFor(t, fmt.Sprintf("k%d on node 4", i), 10*time.Second, func() bool {
				code, _ := kmbdtest.HTTPDo(t, "GET", n.API+fmt.Sprintf("/v1/tenants/acme/keys/k%d", i), "")
				return code == 200
			})
		}
	}
	readAll(n4)
	// The old member goes; with node 4 the quorum's second member, writes
	// commit, and node 4 applies them.
	c.Forget(gone)
	writeMB(t, c.Nodes[leader].API, 60, 5)
	commit := metricValue(t, c.Nodes[leader], "kmb_consensus_commit_number")
	kmbdtest.WaitFor(t, "node 4 commits the new writes", 20*time.Second, func() bool {
		return metricValue(t, n4, "kmb_consensus_commit_number") >= commit
	})
	c.Kill(4)
	c.Restart(4)
	readAll(c.Nodes[4])
}
