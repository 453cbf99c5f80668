package main

// End-to-end tests of storage faults: a corrupt record in the middle of a
// single node's log, a corrupt follower of three, and a node whose disk
// fills up.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

// write50 writes 50 single-entry batches k1..k50 to api.
func write50(t *testing.T, api string) {
	t.Helper()
	for i := 1; i <= 50; i++ {
		body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":{"n":%d,"pad":"%s"}}]}`, i, i, strings.Repeat("x", 100))
		if code, b := kmbdtest.HTTPDo(t, "POST", api+"/v1/tenants/acme/entries", body); code != 200 {
			t.Fatalf("write %d: %d %s", i, code, b)
		}
	}
}

// flipMiddle flips 4 bytes in the middle of the only segment of dataDir.
func flipMiddle(t *testing.T, dataDir string) string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dataDir, "log", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		b[len(b)/2+i] ^= 0xff
	}
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(segs[0])
}

// kmbdRun runs a kmbd command to its end and returns its exit code and
// output.
func kmbdRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(kmbdtest.Binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// countEntries reads tenant acme's log from api and returns how many
// entries it holds.
func countEntries(t *testing.T, api string) int {
	t.Helper()
	code, m := kmbdtest.JSONDo(t, "GET", api+"/v1/tenants/acme/entries?limit=1000", "")
	if code != 200 {
		t.Fatalf("read entries: %d %v", code, m)
	}
	return len(m["entries"].([]any))
}

// A record damaged in the middle of a single node's only segment, with
// acknowledged records after it, is not a torn write: kmbd refuses to
// start, with one line naming the segment, offset and ops and the repair
// command; kmbd log check reports it and exits 3; kmbd log repair puts the
// backed-up copies back, and the node serves all 50 entries again.
func TestE2ECorruptionRefusedOnSingleNode(t *testing.T) {
	dir := t.TempDir()
	repo := "file://" + t.TempDir()
	n := kmbdtest.StartNode(t, dir, debugLog, "--backup-repo", repo)
	write50(t, n.API)
	kmbdtest.WaitFor(t, "the backup checkpoint to reach op 50", 20*time.Second, func() bool {
		b, _ := n.Status(t)["backup"].(map[string]any)
		return b != nil && b["checkpoint_op"] == 50.0
	})
	n.Stop(t)
	seg := flipMiddle(t, dir)

	code, _, stderr := kmbdRun(t, "--data-dir", dir, "--api-listen", "127.0.0.1:0", "--telemetry-listen", "127.0.0.1:0")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "kmbd: ") {
		t.Fatalf("start on a corrupt log: exit %d, last line %q", code, last)
	}
	for _, want := range []string{seg, "offset", "op", "not a torn write", "kmbd log check --data-dir " + dir, "kmbd log repair"} {
		if !strings.Contains(last, want) {
			t.Fatalf("refusal %q does not mention %q", last, want)
		}
	}

	code, out, _ := kmbdRun(t, "log", "check", "--data-dir", dir)
	if code != 3 || !strings.Contains(out, "CORRUPT") || !strings.Contains(out, seg) {
		t.Fatalf("kmbd log check: exit %d\n%s", code, out)
	}
	if code, _, _ := kmbdRun(t, "log", "repair", "--data-dir", dir, "--truncate"); code != 2 {
		t.Fatalf("repair --truncate without --accept-data-loss: exit %d, want 2", code)
	}
	code, out, errOut := kmbdRun(t, "log", "repair", "--data-dir", dir, "--backup-repo", repo)
	if code != 0 || !strings.Contains(out, "repaired ops") {
		t.Fatalf("kmbd log repair: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := kmbdRun(t, "log", "check", "--data-dir", dir); code != 0 {
		t.Fatalf("kmbd log check after the repair: exit %d\n%s", code, out)
	}

	m := kmbdtest.StartNode(t, dir, debugLog)
	if got := countEntries(t, m.API); got != 50 {
		t.Fatalf("after the repair the node serves %d entries, want 50", got)
	}
	m.Stop(t)
}

// One follower of three finds a record in the middle of its log corrupt:
// it keeps its log, fetches the op from the cluster, counts the repair and
// serves every entry; the cluster commits throughout.
func TestE2ECorruptFollowerRepairs(t *testing.T) {
	c := kmbdtest.StartCluster(t, debugLog)
	leader := c.Leader()
	write50(t, c.Nodes[leader].API)
	follower := uint64(1)
	if follower == leader {
		follower = 2
	}
	kmbdtest.WaitFor(t, "the follower to apply op 50", 20*time.Second, func() bool {
		return c.Nodes[follower].Status(t)["commit_number"] == 50.0
	})
	c.Nodes[follower].Stop(t)
	delete(c.Nodes, follower)
	flipMiddle(t, c.DataDir(follower))
	// The cluster goes on without it.
	if code, b := kmbdtest.HTTPDo(t, "POST", c.Nodes[leader].API+"/v1/tenants/acme/entries", `{"entries":[{"key":"k51","value":51}]}`); code != 200 {
		t.Fatalf("write while the follower is down: %d %s", code, b)
	}

	c.Restart(follower)
	f := c.Nodes[follower]
	kmbdtest.WaitFor(t, "the repair", 20*time.Second, func() bool {
		return f.Metric(t, fmt.Sprintf(`kmb_log_corrupt_ops_repaired_total{node_id="%d"}`, follower)) != "0"
	})
	if s := f.Status(t); s["corrupt_ops"] != 0.0 || s["op_number"] != 51.0 {
		t.Fatalf("follower status after the repair: %v", s)
	}
	if got := countEntries(t, f.API); got != 51 {
		t.Fatalf("the repaired follower serves %d entries, want 51", got)
	}
	repaired := false
	for _, l := range f.Output.LogLines(t) {
		if strings.Contains(fmt.Sprint(l["message"]), "repaired with verified copies") {
			repaired = true
		}
	}
	if !repaired {
		t.Fatalf("no log line about the repair:\n%s", f.Output.String())
	}
}

// A node on a small tmpfs fills it to the brim: the writes that do not
// fit get 507 disk_full and append nothing, reads go on, liveness stays
// 200 while readiness is 503 with the reason, writes resume by themselves
// once space is freed, and every acknowledged write is readable after a
// restart.
func TestE2EDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		if os.Getenv("KMB_REQUIRE_TOOLS") == "1" {
			t.Fatalf("mount a tmpfs (needs root): %v", err)
		}
		t.Skipf("mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	// Most of the space goes to a file that is deleted later, so that the
	// node fills the rest quickly.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "data")
	n := kmbdtest.StartNode(t, dir, debugLog, "--segment-size-bytes", "1048576")

	var acked []string
	full := false
	value := strings.Repeat("v", 2000)
	for i := 1; i <= 5000 && !full; i++ {
		key := fmt.Sprintf("k%d", i)
		body := fmt.Sprintf(`{"entries":[{"key":%q,"value":%q}]}`, key, value)
		code, b := kmbdtest.HTTPDo(t, "POST", n.API+"/v1/tenants/acme/entries", body)
		switch code {
		case 200:
			acked = append(acked, key)
		case 507:
			if !strings.Contains(string(b), `"code":"disk_full"`) {
				t.Fatalf("507 without code disk_full: %s", b)
			}
			full = true
		default:
			t.Fatalf("write %d: %d %s", i, code, b)
		}
	}
	if !full || len(acked) == 0 {
		t.Fatalf("the disk never filled (%d writes acknowledged)", len(acked))
	}
	if code, _ := kmbdtest.HTTPDo(t, "GET", n.Tel+"/health/live", ""); code != 200 {
		t.Fatalf("/health/live on a full disk: %d", code)
	}
	code, b := kmbdtest.HTTPDo(t, "GET", n.Tel+"/health/ready", "")
	if code != 503 || !strings.Contains(string(b), "disk full") {
		t.Fatalf("/health/ready on a full disk: %d %s", code, b)
	}
	if s := n.Status(t); s["disk_full"] != true {
		t.Fatalf("status on a full disk: %v", s)
	}
	if code, _ := kmbdtest.HTTPDo(t, "GET", n.API+"/v1/tenants/acme/keys/"+acked[0], ""); code != 200 {
		t.Fatalf("read on a full disk: %d", code)
	}
	if got := countEntries(t, n.API); got != min(len(acked), 1000) {
		t.Fatalf("reads on a full disk: %d entries, want %d", got, min(len(acked), 1000))
	}
	if v := n.Metric(t, `kmb_storage_errors_total{kind="enospc",node_id="1",operation="write"}`); v == "0" {
		t.Fatal("kmb_storage_errors_total{operation=write,kind=enospc} did not move")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.WaitReady(t, 20*time.Second)
	code, b = kmbdtest.HTTPDo(t, "POST", n.API+"/v1/tenants/acme/entries", `{"entries":[{"key":"after","value":1}]}`)
	if code != 200 {
		t.Fatalf("write after space was freed: %d %s", code, b)
	}
	acked = append(acked, "after")
	n.Stop(t)

	m := kmbdtest.StartNode(t, dir, debugLog)
	for _, key := range acked {
		if code, _ := kmbdtest.HTTPDo(t, "GET", m.API+"/v1/tenants/acme/keys/"+key, ""); code != 200 {
			t.Fatalf("acknowledged write %s not readable after a restart: %d", key, code)
		}
	}
	if s := m.Status(t); s["op_number"] != float64(len(acked)) {
		t.Fatalf("log holds %v ops, %d writes were acknowledged", s["op_number"], len(acked))
	}
	m.Stop(t)
}
