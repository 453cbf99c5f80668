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
	kmblog "github.com/kmb-db/kmb/store/log"
)

// A node whose local log lost its first segments (removed with the log's
// RemoveBefore while it was stopped, as retention does) still serves its
// whole history from the backup repository: it rebuilds its projection
// from it at start, reads of a tenant's log from position 1 and audit
// exports reach the old ops through the repository, and
// kmb_log_first_retained_position reports the first local position.
func TestE2ETieredReads(t *testing.T) {
	repo := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "kmbd.toml")
	os.WriteFile(cfg, []byte(`[storage]
segment_size_bytes = 1048576
[backup]
flush_interval = "20ms"
checkpoint_interval = "200ms"
verify_interval = "0s"
snapshot_interval = "0s"
read_cache_bytes = 1048576
`), 0o644)
	dataDir := t.TempDir()
	args := []string{"--config", cfg, "--backup-repo", "file://" + repo}
	n := kmbdtest.StartNode(t, dataDir, nil, args...)
	value := `"` + strings.Repeat("x", 1000) + `"`
	for b := range 40 { // 4 MB: four sealed segments
		var es []string
		for i := range 100 {
			es = append(es, fmt.Sprintf(`{"key":"k%d","value":%s}`, b*100+i, value))
		}
		if code, body := kmbdtest.HTTPDo(t, "POST", n.API+"/v1/tenants/acme/entries", `{"entries":[`+strings.Join(es, ",")+`]}`); code != 200 {
			t.Fatalf("write: %d %s", code, body)
		}
	}
	want := tenantLog(t, n.API, "acme")
	commit := n.Status(t)["commit_number"].(float64)
	kmbdtest.WaitFor(t, "everything backed up", 20*time.Second, func() bool {
		return backupStatus(t, n)["checkpoint_op"].(float64) == commit
	})
	n.Stop(t)

	l, _, err := kmblog.Open(kmblog.Config{Dir: filepath.Join(dataDir, "log")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	removed, _, err := l.RemoveBefore(l.LastOp())
	start := l.Start()
	l.Close()
	if err != nil || removed < 3 {
		t.Fatalf("RemoveBefore removed %d segments: %v", removed, err)
	}

	n = kmbdtest.StartNode(t, dataDir, nil, args...)
	if !hasLog(n.Output.LogLines(t), "kmb_storage", "replaying the ops below the local log from the backup repository") {
		t.Fatal("the node did not say it replayed from the repository")
	}
	if s := n.Status(t); s["log"].(map[string]any)["first_op"].(float64) != float64(start.Op) {
		t.Fatalf("status log %v, want first op %d", s["log"], start.Op)
	}
	if got := n.Metric(t, `kmb_log_first_retained_position{node_id="1"}`); got != strconv.FormatUint(start.Position, 10) {
		t.Fatalf("kmb_log_first_retained_position = %s, want %d", got, start.Position)
	}
	got := tenantLog(t, n.API, "acme")
	if len(got) != len(want) {
		t.Fatalf("%d entries after the removal, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Position != want[i].Position || got[i].Key != want[i].Key || string(got[i].Value) != string(want[i].Value) || !got[i].Timestamp.Equal(want[i].Timestamp) {
			t.Fatalf("entry %d = %+v, want %+v", i, got[i].Position, want[i].Position)
		}
	}
	reads, _ := strconv.ParseFloat(n.Metric(t, `kmb_log_tiered_reads_total{node_id="1"}`), 64)
	misses, _ := strconv.ParseFloat(n.Metric(t, `kmb_log_tiered_cache_misses_total{node_id="1"}`), 64)
	if reads < float64(start.Op-1) || misses == 0 {
		t.Fatalf("tiered reads %v, cache misses %v: want at least the %d ops below the log", reads, misses, start.Op-1)
	}
	day := time.Now().UTC()
	code, body := kmbdtest.HTTPDo(t, "GET", fmt.Sprintf("%s/v1/audit?start=%s&end=%s&format=ndjson", n.API,
		day.AddDate(0, 0, -1).Format("2006-01-02"), day.AddDate(0, 0, 1).Format("2006-01-02")), "")
	if code != 200 || strings.Count(string(body), `"tenant":"acme"`) != len(want) {
		t.Fatalf("audit export across the removed segments: %d, %d acme records, want %d", code, strings.Count(string(body), `"tenant":"acme"`), len(want))
	}
	// Writes go on.
	if code, body := kmbdtest.HTTPDo(t, "POST", n.API+"/v1/tenants/acme/entries", `{"entries":[{"key":"after","value":1}]}`); code != 200 {
		t.Fatalf("write after: %d %s", code, body)
	}
}
