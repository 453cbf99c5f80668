package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/kmb-db/kmb/internal/kmbdtest"
	"github.com/kmb-db/kmb/store/backup"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/spans"
)

// pushgateway is a fake Prometheus Pushgateway that keeps what is pushed.
type pushgateway struct {
	*httptest.Server
	mu     sync.Mutex
	pushes []push
}

type push struct {
	method, path string
	fams         map[string]*dto.MetricFamily
}

func newPushgateway(t *testing.T) *pushgateway {
	g := &pushgateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fams := map[string]*dto.MetricFamily{}
		dec := expfmt.NewDecoder(r.Body, expfmt.ResponseFormat(r.Header))
		for {
			var f dto.MetricFamily
			if err := dec.Decode(&f); err != nil {
				break
			}
			fams[f.GetName()] = &f
		}
		g.mu.Lock()
		g.pushes = append(g.pushes, push{r.Method, r.URL.Path, fams})
		g.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *pushgateway) last(t *testing.T) push {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pushes) == 0 {
		t.Fatal("nothing was pushed")
	}
	return g.pushes[len(g.pushes)-1]
}

func gaugeValue(f *dto.MetricFamily, labels ...string) float64 {
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if match {
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
			return m.Counter.GetValue()
		}
	}
	return -1
}

// cli runs kmbd with args in this process and returns its exit code and
// output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// testOps returns n committed ops of one tenant, one entry each, a
// millisecond apart from base.
func testOps(n int, base time.Time) []*kmblog.Op {
	ops := make([]*kmblog.Op, n)
	for i := range ops {
		ops[i] = &kmblog.Op{
			Op: uint64(i + 1), View: 1, Timestamp: base.Add(time.Duration(i) * time.Millisecond).UnixNano(),
			Tenant: "acme", FirstPosition: uint64(i + 1),
			Entries: []kmblog.Entry{{Key: fmt.Sprintf("k%d", i%7), Value: []byte(fmt.Sprintf(`{"n":%d}`, i))}},
		}
	}
	return ops
}

// testRepo is a repository in a new directory holding ops in segments of
// ten, and its URL.
func testRepo(t *testing.T, ops []*kmblog.Op) (string, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := backup.NewDirBackend(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := backup.Init(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(ops); i += 10 {
		if err := r.AppendSegment(context.Background(), ops[i:min(i+10, len(ops))]); err != nil {
			t.Fatal(err)
		}
	}
	return "file://" + dir, dir
}

// pushedFamilies runs verify, snapshot create and restore with
// --pushgateway and returns every family they pushed.
func pushedFamilies(t *testing.T) map[string]*dto.MetricFamily {
	url, _ := testRepo(t, testOps(30, time.Now().Add(-time.Hour)))
	g := newPushgateway(t)
	out := map[string]*dto.MetricFamily{}
	for _, args := range [][]string{
		{"backup", "verify", "--repo", url},
		{"snapshot", "create", "--repo", url},
		{"restore", "--repo", url, "--data-dir", filepath.Join(t.TempDir(), "d")},
	} {
		if code, _, stderr := cli(t, append(args, "--pushgateway", g.URL)...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		for name, f := range g.last(t).fams {
			out[name] = f
		}
	}
	return out
}

func TestBackupCommands(t *testing.T) {
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	ops := testOps(50, base)
	url, dir := testRepo(t, ops)
	g := newPushgateway(t)

	// status and list describe the repository.
	code, out, errOut := cli(t, "backup", "status", "--repo", url, "--json")
	var st map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st["checkpoint_position"] != 50.0 || st["state"] != "running" {
		t.Fatalf("status: %d %s %s", code, out, errOut)
	}
	if code, out, _ := cli(t, "backup", "list", "--repo", url); code != 0 || strings.Count(out, "segment ") != 5 {
		t.Fatalf("list: %d\n%s", code, out)
	}

	// pause and resume are recorded in the manifest.
	for _, step := range []struct{ cmd, state string }{{"pause", "paused"}, {"resume", "running"}} {
		if code, _, errOut := cli(t, "backup", step.cmd, "--repo", url); code != 0 {
			t.Fatalf("%s: %d %s", step.cmd, code, errOut)
		}
		_, out, _ := cli(t, "backup", "status", "--repo", url, "--json")
		json.Unmarshal([]byte(out), &st)
		if st["state"] != step.state {
			t.Fatalf("after %s: state %v", step.cmd, st["state"])
		}
	}

	// A clean verify pushes its success.
	if code, out, _ := cli(t, "backup", "verify", "--repo", url, "--pushgateway", g.URL); code != 0 || !strings.Contains(out, "verify      ok") {
		t.Fatalf("verify: %d %s", code, out)
	}
	p := g.last(t)
	if p.method != "POST" || !strings.HasPrefix(p.path, "/metrics/job/kmb_backup/") {
		t.Fatalf("push %s %s: want push-add (POST) under job kmb_backup", p.method, p.path)
	}
	if gaugeValue(p.fams["kmb_backup_last_verify_success_timestamp_seconds"]) <= 0 || gaugeValue(p.fams["kmb_backup_verify_runs_total"], "result", "ok") != 1 {
		t.Fatalf("pushed %v", p.fams)
	}

	// A damaged segment: verify says so in its exit code and metrics,
	// and pushes no success time; a restore that needs it refuses, one
	// before it still works.
	m, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	var man backup.Manifest
	json.Unmarshal(m, &man)
	bad := man.Segments[2] // ops 21..30
	path := filepath.Join(dir, bad.Name)
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 0xff
	os.WriteFile(path, data, 0o644)
	code, out, _ = cli(t, "backup", "verify", "--repo", url, "--pushgateway", g.URL)
	if code != exitCorrupt || !strings.Contains(out, bad.Name) {
		t.Fatalf("verify of a damaged repository: exit %d\n%s", code, out)
	}
	p = g.last(t)
	if gaugeValue(p.fams["kmb_backup_verify_corrupt_objects"]) < 1 || p.fams["kmb_backup_last_verify_success_timestamp_seconds"] != nil {
		t.Fatalf("pushed after corruption: %v", p.fams)
	}
	code, _, errOut = cli(t, "restore", "--repo", url, "--data-dir", filepath.Join(t.TempDir(), "d"))
	if code != exitFailed || !strings.Contains(errOut, bad.Name) || !strings.Contains(errOut, "corrupt") {
		t.Fatalf("restore past the damage: exit %d: %s", code, errOut)
	}
	before := filepath.Join(t.TempDir(), "d")
	if code, out, errOut = cli(t, "restore", "--repo", url, "--to-position", "20", "--data-dir", before, "--json"); code != 0 || !strings.Contains(out, `"entries": 20`) {
		t.Fatalf("restore before the damage: %d %s %s", code, out, errOut)
	}
	if !strings.Contains(errOut, `"message":"restore finished"`) {
		t.Fatalf("no restore finished event in the log:\n%s", errOut)
	}

	// Bad usage exits 2 with a line naming the flag.
	for _, args := range [][]string{
		{"restore", "--repo", url},
		{"restore", "--repo", url, "--data-dir", "x", "--to-position", "abc"},
		{"restore", "--repo", url, "--data-dir", "x", "--to-time", "yesterday"},
		{"restore", "--repo", url, "--data-dir", "x", "--to-time", base.Format(time.RFC3339), "--to-position", "3"},
		{"backup", "status"},
		{"backup", "frobnicate", "--repo", url},
		{"snapshot"},
	} {
		if code, _, _ := cli(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// A restore is exact: the data dir it writes, served by kmbd, holds the
// source's entries up to the target and nothing after, for position and
// time targets, from segments alone and from a snapshot plus segments.
func TestRestoreServedExactly(t *testing.T) {
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	ops := testOps(60, base)
	plain, _ := testRepo(t, ops)
	// The same ops, as a snapshot of the first 50 (retention then dropped
	// the segments it holds) and segments after it.
	snap, dir := testRepo(t, ops[:50])
	if code, out, errOut := cli(t, "snapshot", "create", "--repo", snap, "--keep-last", "1"); code != 0 || !strings.Contains(out, "5 segments deleted") {
		t.Fatalf("snapshot create: %d %s %s", code, out, errOut)
	}
	b, _ := backup.NewDirBackend(dir)
	r, err := backup.Open(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AppendSegment(context.Background(), ops[50:]); err != nil {
		t.Fatal(err)
	}
	if m := r.Manifest(); len(m.Snapshots) != 1 || len(m.Segments) != 1 {
		t.Fatalf("repository: %d snapshots, %d segments", len(m.Snapshots), len(m.Segments))
	}
	for _, tc := range []struct {
		name  string
		args  []string
		count int
	}{
		{"latest", nil, 60},
		{"position 1", []string{"--to-position", "1"}, 1},
		{"position 37", []string{"--to-position", "37"}, 37},
		{"time of op 45", []string{"--to-time", time.Unix(0, ops[44].Timestamp).UTC().Format(time.RFC3339Nano)}, 45},
		{"time before op 13", []string{"--to-time", time.Unix(0, ops[12].Timestamp-1).UTC().Format(time.RFC3339Nano)}, 12},
	} {
		for layout, url := range map[string]string{"segments": plain, "snapshot": snap} {
			t.Run(layout+"/"+tc.name, func(t *testing.T) {
				dataDir := filepath.Join(t.TempDir(), "restored")
				if code, _, errOut := cli(t, append([]string{"restore", "--repo", url, "--data-dir", dataDir}, tc.args...)...); code != 0 {
					t.Fatalf("restore: %d %s", code, errOut)
				}
				a := testApp(t, func(c *Config) { c.DataDir = dataDir })
				rec := a.request(t, a.api, "GET", "/v1/tenants/acme/entries?from=1&limit=1000", "")
				var got struct {
					Entries []struct {
						Position  uint64          `json:"position"`
						Key       string          `json:"key"`
						Value     json.RawMessage `json:"value"`
						Timestamp time.Time       `json:"timestamp"`
					} `json:"entries"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatalf("%d %s", rec.Code, rec.Body)
				}
				if len(got.Entries) != tc.count {
					t.Fatalf("%d entries, want %d", len(got.Entries), tc.count)
				}
				for i, e := range got.Entries {
					op := ops[i]
					if e.Position != op.FirstPosition || e.Key != op.Entries[0].Key || string(e.Value) != string(op.Entries[0].Value) || e.Timestamp.UnixNano() != op.Timestamp {
						t.Fatalf("entry %d: %+v, want op %+v", i, e, op)
					}
				}
				// The projection too: each key's latest value as of the target.
				latest := map[string]string{}
				for _, op := range ops[:tc.count] {
					latest[op.Entries[0].Key] = string(op.Entries[0].Value)
				}
				for k, v := range latest {
					rec := a.request(t, a.api, "GET", "/v1/tenants/acme/keys/"+k, "")
					var kv struct {
						Value json.RawMessage `json:"value"`
					}
					json.Unmarshal(rec.Body.Bytes(), &kv)
					if string(kv.Value) != v {
						t.Fatalf("key %s = %s, want %s", k, kv.Value, v)
					}
				}
				// The node records the restore in its log, for the audit
				// trail, once it leads.
				kmbdtest.WaitFor(t, "the restore recorded", 10*time.Second, func() bool {
					_, err := os.Stat(filepath.Join(dataDir, backup.RestoredNote))
					return os.IsNotExist(err)
				})
				rec = a.request(t, a.api, "GET", "/v1/audit?start=2000-01-01&end=2100-01-01&format=ndjson", "")
				if !strings.Contains(rec.Body.String(), `"kind":"admin","key":"restore","value":{"checkpoint_op":`) {
					t.Fatalf("no restore admin op in the audit export:\n%s", rec.Body)
				}
			})
		}
	}
}

// The one-shot commands export their span over OTLP when the standard
// OTEL_* variables ask for it.
func TestBackupCommandSpans(t *testing.T) {
	url, _ := testRepo(t, testOps(20, time.Now().Add(-time.Hour)))
	var mu sync.Mutex
	var bodies []byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b...)
		mu.Unlock()
	}))
	defer collector.Close()
	otel := env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL})
	for _, tc := range []struct {
		span string
		args []string
	}{
		{spans.BackupVerify, []string{"backup", "verify", "--repo", url}},
		{spans.Snapshot, []string{"snapshot", "create", "--repo", url}},
		{spans.Restore, []string{"restore", "--repo", url, "--data-dir", filepath.Join(t.TempDir(), "d")}},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tc.args, otel, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr.String())
		}
		// OTLP/protobuf carries span names as plain strings.
		mu.Lock()
		found := bytes.Contains(bodies, []byte(tc.span))
		mu.Unlock()
		if !found {
			t.Errorf("%v exported no %s span", tc.args, tc.span)
		}
	}
}
