package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kmb-db/kmb/store/node"
	"github.com/kmb-db/kmb/telemetry/metric"
	"github.com/kmb-db/kmb/telemetry/spans"
)

// tracedAPI serves a ready single node whose spans go to an in-memory
// exporter. New traces are never started (ratio 0): only sampled client
// traces are continued.
func tracedAPI(t *testing.T) (*API, *tracetest.InMemoryExporter, *metric.Registry) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(exp)))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tracer := spans.New(tp, true, 0)
	ncfg := node.DefaultConfig()
	ncfg.DataDir = t.TempDir()
	reg := metric.NewRegistry()
	n, err := node.New(ncfg, node.Deps{Metrics: reg, Tracer: tracer})
	if err != nil {
		t.Fatal(err)
	}
	go n.Run()
	t.Cleanup(n.Stop)
	for deadline := time.Now().Add(10 * time.Second); n.Ready() != nil; {
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
		time.Sleep(time.Millisecond)
	}
	a, err := New(DefaultConfig(), n, reg, nil, tracer)
	if err != nil {
		t.Fatal(err)
	}
	return a, exp, reg
}

// A client's traceparent continues into kmb.write, whose children are the
// node's prepare and commit spans; reads are kmb.query spans.
func TestSpans(t *testing.T) {
	a, exp, _ := tracedAPI(t)
	srv := httptest.NewServer(a)
	defer srv.Close()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	do := func(method, path, body, traceparent string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	do("POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k","value":1}]}`, "00-"+traceID+"-00f067aa0ba902b7-01")
	do("GET", "/v1/tenants/acme/keys/k", "", "00-"+traceID+"-00f067aa0ba902b8-01")
	do("GET", "/v1/tenants/acme/entries", "", "00-"+traceID+"-00f067aa0ba902b9-00")   // not sampled
	do("POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k","value":2}]}`, "") // no trace, ratio 0

	byName := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() != traceID {
			t.Errorf("span %s in trace %s", s.Name, s.SpanContext.TraceID())
		}
		byName[s.Name] = append(byName[s.Name], s)
	}
	if len(byName[spans.Write]) != 1 || len(byName[spans.Query]) != 1 || len(byName[spans.Prepare]) != 1 || len(byName[spans.Commit]) != 1 {
		t.Fatalf("spans: %v", names(exp.GetSpans()))
	}
	write := byName[spans.Write][0]
	if write.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("kmb.write parent %s", write.Parent.SpanID())
	}
	for _, child := range []string{spans.Prepare, spans.Commit} {
		if p := byName[child][0].Parent.SpanID(); p != write.SpanContext.SpanID() {
			t.Errorf("%s parent %s, want kmb.write %s", child, p, write.SpanContext.SpanID())
		}
	}
	attrs := map[string]string{}
	for _, kv := range write.Attributes {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["http.request.method"] != "POST" || attrs["http.response.status_code"] != "200" || attrs["kmb.tenant"] != "acme" {
		t.Errorf("kmb.write attributes %v", attrs)
	}
}

func names(ss tracetest.SpanStubs) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

// A traced request leaves its trace id as the exemplar of its latency
// bucket.
func TestExemplars(t *testing.T) {
	a, _, reg := tracedAPI(t)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/tenants/acme/entries", strings.NewReader(`{"entries":[{"key":"k","value":1}]}`))
	req.Header.Set("traceparent", "00-7bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	a.ServeHTTP(rec, req)
	rec = httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/tenants/acme/entries", strings.NewReader(`{"entries":[{"key":"k","value":2}]}`)))
	for _, f := range reg.Gather() {
		if f.Name != "kmb_write_duration_seconds" {
			continue
		}
		h := f.Series[0].Histogram
		if h.Count != 2 || len(h.Exemplars) != 1 || h.Exemplars[0].TraceID != "7bf92f3577b34da6a3ce929d0e0e4736" {
			t.Fatalf("write histogram %+v", h)
		}
		return
	}
	t.Fatal("no kmb_write_duration_seconds")
}
