package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
	"github.com/kmb-db/kmb/store/backup"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testApp assembles a node on a temporary data dir, runs it and waits until
// it is ready.
func testApp(t *testing.T, mutate func(*Config)) *app {
	t.Helper()
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	go a.node.Run()
	t.Cleanup(a.node.Stop)
	a.runBackup(t)
	deadline := time.Now().Add(10 * time.Second)
	for a.node.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", a.node.Ready())
		}
		time.Sleep(time.Millisecond)
	}
	return a
}

func (a *app) request(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	h.ServeHTTP(rec, req)
	return rec
}

// runBackup runs the app's backup task, when it has one, until the test
// ends (before its node stops: cleanups run last first).
func (a *app) runBackup(t *testing.T) {
	if a.backup == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.backup.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// withBackup gives a node a repository in a new directory, shared by
// every node the same mutation is applied to.
func withBackup(t *testing.T) func(*Config) {
	url := "file://" + t.TempDir()
	return func(c *Config) {
		c.Backup.Repository = url
		c.Backup.FlushInterval = backup.Duration(20 * time.Millisecond)
		c.Backup.CheckpointInterval = backup.Duration(200 * time.Millisecond)
	}
}

// testCluster assembles three nodes in one process, replicating over
// loopback TCP, and returns them once all are ready, the leader first.
// mutate, when not nil, edits every node's configuration.
func testCluster(t *testing.T, mutate ...func(*Config)) []*app {
	t.Helper()
	addrs := kmbdtest.FreeAddrs(t, 3)
	var parts []string
	for i, a := range addrs {
		parts = append(parts, fmt.Sprintf("%d=%s", i+1, a))
	}
	var apps []*app
	for id := uint64(1); id <= 3; id++ {
		cfg := defaultConfig()
		cfg.NodeID, cfg.DataDir, cfg.Cluster.Replicas = id, t.TempDir(), strings.Join(parts, ",")
		cfg.API.Advertise = fmt.Sprintf("127.0.0.1:%d", 17100+id)
		for _, m := range mutate {
			m(&cfg)
		}
		a, err := newApp(cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		go a.node.Run()
		t.Cleanup(a.node.Stop)
		a.runBackup(t)
		apps = append(apps, a)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready, leader := 0, -1
		for i, a := range apps {
			if a.node.Ready() == nil {
				ready++
				if a.node.Status().IsLeader {
					leader = i
				}
			}
		}
		if ready == 3 && leader >= 0 {
			apps[0], apps[leader] = apps[leader], apps[0]
			return apps
		}
		if time.Now().After(deadline) {
			t.Fatal("cluster not ready within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitBackedUp waits until the app's backup task shipped everything
// committed, so its families have their series.
func waitBackedUp(t *testing.T, a *app) {
	t.Helper()
	kmbdtest.WaitFor(t, "the backup checkpoint to reach the commit", 10*time.Second, func() bool {
		st := a.backup.Status()
		return st.State == backup.StateRunning && st.CheckpointOp == a.node.Status().CommitNumber
	})
}

// traffic sends a fixed set of requests so every family has series.
func traffic(t *testing.T, a *app) {
	for _, tenant := range []string{"acme", "globex"} {
		if rec := a.request(t, a.api, "POST", "/v1/tenants/"+tenant+"/entries", `{"entries":[{"key":"k","value":1},{"key":"j","value":2}]}`); rec.Code != 200 {
			t.Fatalf("write: %d %s", rec.Code, rec.Body)
		}
	}
	a.request(t, a.api, "GET", "/v1/tenants/acme/keys/k", "")
	a.request(t, a.api, "GET", "/v1/tenants/acme/entries", "")
	a.request(t, a.api, "POST", "/v1/tenants/BAD/entries", `{}`)
}

func scrape(t *testing.T, a *app, accept string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	a.telMux.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	text := rec.Body.String()
	if accept != "" {
		return text, nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	return text, fams
}

// The exposition of every kmb_* family — name, type, HELP, label names and
// label values — matches testdata/metrics.golden. Sample values vary with
// timing and are checked elsewhere.
func TestMetricsGolden(t *testing.T) {
	a := testApp(t, withBackup(t))
	traffic(t, a)
	waitBackedUp(t, a)
	text, _ := scrape(t, a, "")

	value := regexp.MustCompile(` [^ ]+$`)
	revision := regexp.MustCompile(`(goversion|revision|version)="[^"]*"`)
	var kept []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, "kmb_") {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			line = value.ReplaceAllString(line, " _")
			line = revision.ReplaceAllString(line, `$1="_"`)
		}
		kept = append(kept, line)
	}
	got := strings.Join(kept, "\n") + "\n"
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("exposition differs from %s (run go test -update to accept):\n%s", golden, diff(string(want), got))
	}
}

func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	seen := map[string]bool{}
	for _, l := range g {
		seen[l] = true
	}
	for _, l := range w {
		if !seen[l] {
			out = append(out, "- "+l)
		}
	}
	seen = map[string]bool{}
	for _, l := range w {
		seen[l] = true
	}
	for _, l := range g {
		if !seen[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func contractMetrics(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "contract_metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]dto.MetricType{"counter": dto.MetricType_COUNTER, "gauge": dto.MetricType_GAUGE, "histogram": dto.MetricType_HISTOGRAM}
	out := map[string]dto.MetricType{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "#") {
			continue
		}
		out[f[0]] = types[f[1]]
	}
	return out
}

// Every family the monitoring page and the contract name is served with its
// type, HELP text and the node_id label, and carries live values.
func TestContractMetricsExposed(t *testing.T) {
	a := testApp(t, nil)
	traffic(t, a)
	_, fams := scrape(t, a, "")
	want := contractMetrics(t)
	if len(want) < 20 {
		t.Fatalf("contract list has only %d metrics", len(want))
	}
	for name, typ := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("%s not exposed", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s has type %v, want %v", name, f.GetType(), typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		for _, m := range f.Metric {
			if !hasLabel(m, "node_id", "1") {
				t.Errorf("%s series without node_id=\"1\"", name)
			}
		}
	}
	// Live values after the traffic above: 4 entries in 2 ops, 2 tenants.
	for name, v := range map[string]float64{
		"kmb_log_entries_total":           4,
		"kmb_consensus_commits_total":     4,
		"kmb_projection_applied_position": 4,
		"kmb_projection_lag":              0,
		"kmb_active_tenants":              2,
		"kmb_consensus_leader":            1,
		"kmb_consensus_has_leader":        1,
		"kmb_consensus_is_leader":         1,
		"kmb_consensus_op_number":         2,
		"kmb_consensus_commit_number":     2,
		"kmb_consensus_view":              0,
	} {
		if got := single(t, fams, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if got := fams["kmb_write_duration_seconds"].Metric[0].GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("kmb_write_duration_seconds count = %d, want 2", got)
	}
	if got := fams["kmb_query_duration_seconds"].Metric[0].GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("kmb_query_duration_seconds count = %d, want 2", got)
	}
	for _, m := range fams["kmb_replica_status"].Metric {
		want := 0.0
		if hasLabel(m, "status", "normal") {
			want = 1
		}
		if m.GetGauge().GetValue() != want {
			t.Errorf("kmb_replica_status %v = %v", m.Label, m.GetGauge().GetValue())
		}
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("Go runtime or process collector missing")
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.Label {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func single(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil || len(f.Metric) != 1 {
		t.Fatalf("%s: want one series", name)
	}
	m := f.Metric[0]
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// The tenant_id label is capped: tenants past the cap fold into _overflow.
func TestTenantLabelCap(t *testing.T) {
	a := testApp(t, func(c *Config) { c.Telemetry.TenantLabelCap = 3 })
	for _, tenant := range []string{"t1", "t2", "t3", "t4", "t5"} {
		if rec := a.request(t, a.api, "POST", "/v1/tenants/"+tenant+"/entries", `{"entries":[{"key":"k","value":1}]}`); rec.Code != 200 {
			t.Fatal(rec.Body)
		}
	}
	_, fams := scrape(t, a, "")
	got := map[string]float64{}
	for _, m := range fams["kmb_tenant_log_entries_total"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "tenant_id" {
				got[l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "_overflow,t1,t2,t3" || got["_overflow"] != 2 {
		t.Fatalf("tenant series = %v", got)
	}
	if v := single(t, fams, "kmb_active_tenants"); v != 5 {
		t.Fatalf("kmb_active_tenants = %v, want 5 (the cap bounds labels, not the count)", v)
	}
}

// OpenMetrics is served when the scraper asks for it.
func TestOpenMetricsNegotiation(t *testing.T) {
	a := testApp(t, nil)
	traffic(t, a)
	text, _ := scrape(t, a, "application/openmetrics-text;version=1.0.0")
	if !strings.HasSuffix(strings.TrimSpace(text), "# EOF") || !strings.Contains(text, "kmb_log_entries_total{node_id=\"1\"} 4") {
		t.Fatalf("not OpenMetrics:\n%.400s", text)
	}
}

// promtool, Prometheus' own linter, accepts the live exposition.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := kmbdtest.RequireTool(t, "KMB_PROMTOOL", "promtool")
	a := testCluster(t, withBackup(t))[0]
	traffic(t, a)
	waitBackedUp(t, a)
	text, _ := scrape(t, a, "")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	t.Logf("promtool check metrics: ok (%d bytes of exposition)", len(text))
}
