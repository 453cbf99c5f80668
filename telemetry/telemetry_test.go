package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kmb-db/kmb/telemetry/metric"
)

func TestNewServesMetricsAndLogs(t *testing.T) {
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:9090" // loopback: pprof is served to every client
	tel, err := New(cfg, Options{NodeID: 7, Build: Build{Version: "v1", Revision: "abc", GoVersion: "go1.26"}, LogOutput: &logs})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	c := tel.Metrics.NewCounter("kmb_test_total", "A test counter.")
	c.Add(3)
	h := tel.Metrics.NewHistogram("kmb_test_seconds", "A test histogram.", metric.HistogramOpts{Buckets: []float64{0.1, 1}, Scale: 1e-9})
	h.ObserveDuration(500 * time.Millisecond)

	mux := http.NewServeMux()
	tel.Mount(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`kmb_test_total{node_id="7"} 3`,
		`kmb_test_seconds_bucket{node_id="7",le="1"} 1`,
		`kmb_test_seconds_bucket{node_id="7",le="0.1"} 0`,
		`kmb_build_info{goversion="go1.26",node_id="7",revision="abc",version="v1"} 1`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
		`kmb_tracing_spans_dropped_total{node_id="7"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if rec := httptest.NewRecorder(); true {
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
		if rec.Code != 200 {
			t.Errorf("pprof not mounted: %d", rec.Code)
		}
	}

	tel.Logger("kmb_vsr").Info("Became leader", "view", 5)
	tel.Logger("kmb_vsr").Debug("hidden at info")
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log output %q: %v", logs.String(), err)
	}
	if line["target"] != "kmb_vsr" || line["message"] != "Became leader" || line["fields"].(map[string]any)["view"] != 5.0 {
		t.Fatalf("log line %v", line)
	}
}

func TestPprofSwitch(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PprofEnabled = false
	tel, err := New(cfg, Options{LogOutput: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	tel.Mount(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/heap", nil))
	if rec.Code != 404 {
		t.Fatalf("pprof disabled but /debug/pprof/heap = %d", rec.Code)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LogFormat = "xml"
	if _, err := New(cfg, Options{}); err == nil {
		t.Fatal("invalid config accepted")
	}
}

// blockingExporter holds every export until released.
type blockingExporter struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
}

func (e *blockingExporter) ExportSpans(ctx context.Context, s []sdktrace.ReadOnlySpan) error {
	<-e.release
	e.mu.Lock()
	e.got += len(s)
	e.mu.Unlock()
	return nil
}
func (e *blockingExporter) Shutdown(context.Context) error { return nil }

// A stalled exporter never blocks ending spans: the queue drops and counts.
func TestSpanQueueDropsInsteadOfBlocking(t *testing.T) {
	reg := metric.NewRegistry()
	m := newSpanQueueMetrics(reg)
	exp := &blockingExporter{release: make(chan struct{})}
	q := newSpanQueue(exp, 4, 2, time.Hour, m, nilLogger())
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q))
	tr := tp.Tracer("test")
	start := time.Now()
	for i := 0; i < 100; i++ {
		_, s := tr.Start(context.Background(), "x")
		s.End()
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("ending 100 spans took %v", elapsed)
	}
	if d := m.dropped.Value(); d < 90 {
		t.Fatalf("dropped %d of 100 with a queue of 4 and a stalled exporter", d)
	}
	close(exp.release)
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	exp.mu.Lock()
	defer exp.mu.Unlock()
	if uint64(exp.got)+m.dropped.Value() != 100 || m.exported.Value() != uint64(exp.got) {
		t.Fatalf("exported %d (counted %d) + dropped %d != 100", exp.got, m.exported.Value(), m.dropped.Value())
	}
}

// Sampling is decided before the SDK: the provider records whatever it is
// asked for, but never under an unsampled parent.
func TestProviderSampling(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := newProvider(nil, sdktrace.NewSimpleSpanProcessor(exp))
	tr := tp.Tracer("test")
	_, s := tr.Start(context.Background(), "root")
	s.End()
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
	}))
	_, s = tr.Start(unsampled, "child-of-unsampled")
	s.End()
	if got := exp.GetSpans(); len(got) != 1 || got[0].Name != "root" {
		t.Fatalf("spans %v", got)
	}
}

func nilLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Histogram exemplars are served with their trace ids in OpenMetrics.
func TestExemplarsInOpenMetrics(t *testing.T) {
	tel, err := New(DefaultConfig(), Options{NodeID: 1, LogOutput: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	h := tel.Metrics.NewHistogram("kmb_test_seconds", "A test histogram.", metric.HistogramOpts{Buckets: []float64{0.1, 1}, Scale: 1e-9})
	h.ObserveDurationWithExemplar(500*time.Millisecond, "4bf92f3577b34da6a3ce929d0e0e4736")
	mux := http.NewServeMux()
	tel.Mount(mux)
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	want := `kmb_test_seconds_bucket{node_id="1",le="1.0"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.5`
	if !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("OpenMetrics output lacks %q:\n%s", want, grep(rec.Body.String(), "kmb_test_seconds_bucket"))
	}
}

func grep(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Listening beyond loopback without authentication, pprof answers only
// loopback clients, and a WARN at start says how to open it safely.
func TestPprofLoopbackOnlyWithoutAuth(t *testing.T) {
	var logs bytes.Buffer
	tel, err := New(DefaultConfig(), Options{LogOutput: &logs}) // listen ":9090"
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	tel.Mount(mux)
	for addr, want := range map[string]int{"127.0.0.1:4000": 200, "192.0.2.1:4000": 403} {
		req := httptest.NewRequest("GET", "/debug/pprof/heap", nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("heap from %s: %d, want %d", addr, rec.Code, want)
		}
	}
	if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), "telemetry.web_config_file") {
		t.Errorf("no WARN about pprof: %s", logs.String())
	}
}
