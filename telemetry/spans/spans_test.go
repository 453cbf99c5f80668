package spans

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func provider() (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	return sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(exp)),
	), exp
}

func parent(sampled bool) context.Context {
	cfg := trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}, Remote: true}
	if sampled {
		cfg.TraceFlags = trace.FlagsSampled
	}
	return trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(cfg))
}

func TestSamplingDecisions(t *testing.T) {
	tests := []struct {
		name    string
		enabled bool
		ratio   float64
		ctx     context.Context
		want    bool
	}{
		{"off", false, 1, context.Background(), false},
		{"off with sampled parent", false, 1, parent(true), false},
		{"ratio 1 root", true, 1, context.Background(), true},
		{"ratio 0 root", true, 0, context.Background(), false},
		{"ratio 0 sampled parent", true, 0, parent(true), true},
		{"ratio 1 unsampled parent", true, 1, parent(false), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, exp := provider()
			tr := New(tp, tt.enabled, tt.ratio)
			ctx, span := tr.Start(tt.ctx, Write, trace.SpanKindServer)
			span.End()
			if got := len(exp.GetSpans()) == 1; got != tt.want {
				t.Fatalf("recorded = %v, want %v", got, tt.want)
			}
			if !tt.want && ctx != tt.ctx {
				t.Fatal("an unsampled Start changed the context")
			}
			if tt.want && exp.GetSpans()[0].Name != Write {
				t.Fatalf("name %q", exp.GetSpans()[0].Name)
			}
		})
	}
}

func TestRatioRoughlyHonoured(t *testing.T) {
	tp, exp := provider()
	tr := New(tp, true, 0.25)
	for i := 0; i < 4000; i++ {
		_, s := tr.Start(context.Background(), Query, trace.SpanKindServer)
		s.End()
	}
	if n := len(exp.GetSpans()); n < 800 || n > 1200 {
		t.Fatalf("ratio 0.25 sampled %d of 4000", n)
	}
}

func TestInjectExtractRoundTrip(t *testing.T) {
	tp, _ := provider()
	tr := New(tp, true, 1)
	ctx, span := tr.Start(context.Background(), Prepare, trace.SpanKindInternal)
	defer span.End()
	tp1 := Inject(ctx)
	if len(tp1) != 55 || tp1[:3] != "00-" || tp1[len(tp1)-3:] != "-01" {
		t.Fatalf("traceparent %q", tp1)
	}
	got := trace.SpanContextFromContext(Extract(context.Background(), tp1))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() || !got.IsRemote() || !got.IsSampled() {
		t.Fatalf("extracted %+v from %q", got, tp1)
	}
	if Inject(context.Background()) != "" || Inject(parent(false)) != "" {
		t.Fatal("an unsampled context produced a traceparent")
	}
	if trace.SpanContextFromContext(Extract(context.Background(), "garbage")).IsValid() {
		t.Fatal("a malformed traceparent produced a span context")
	}
}

func TestAllocationFreeWhenUntraced(t *testing.T) {
	tp, _ := provider()
	off := Disabled()
	out := New(tp, true, 0)
	ctx := context.Background()
	for name, tr := range map[string]*Tracer{"off": off, "sampled out": out} {
		if n := testing.AllocsPerRun(1000, func() {
			_, s := tr.Start(ctx, Write, trace.SpanKindServer)
			s.End()
		}); n != 0 {
			t.Errorf("%s: %v allocs per span", name, n)
		}
	}
}

// Span cost per instrumentation point:
//
//	go test ./telemetry/spans -run '^$' -bench . -benchmem -count 5
func BenchmarkSpan(b *testing.B) {
	ctx := context.Background()
	tp, _ := provider()
	batched := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithBatcher(discard{}),
	)
	defer batched.Shutdown(ctx)
	for _, bc := range []struct {
		name string
		tr   *Tracer
	}{
		{"off", Disabled()},
		{"sampled-out", New(tp, true, 0)},
		{"sampled-1pct", New(batched, true, 0.01)},
		{"sampled", New(batched, true, 1)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_, s := bc.tr.Start(ctx, Write, trace.SpanKindServer)
				s.End()
			}
		})
	}
	// The OpenTelemetry SDK's own sampler deciding, for comparison.
	sdkOut := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))), sdktrace.WithBatcher(discard{}))
	defer sdkOut.Shutdown(ctx)
	b.Run("otel-sdk-parentbased-1pct", func(b *testing.B) {
		tr := sdkOut.Tracer("x")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, s := tr.Start(ctx, Write)
			s.End()
		}
	})
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// ExtractHTTP follows a request's traceparent header, and without one
// returns the context as it was, allocating nothing.
func TestExtractHTTP(t *testing.T) {
	tp, _ := provider()
	tr := New(tp, true, 1)
	ctx, span := tr.Start(context.Background(), Write, trace.SpanKindServer)
	defer span.End()
	h := http.Header{}
	h.Set("traceparent", Inject(ctx))
	h.Set("Content-Type", "application/json")
	got := trace.SpanContextFromContext(ExtractHTTP(context.Background(), propagation.HeaderCarrier(h)))
	if got.TraceID() != span.SpanContext().TraceID() || !got.IsRemote() || !got.IsSampled() {
		t.Fatalf("extracted %+v", got)
	}
	// Any other carrier goes through the propagator.
	got = trace.SpanContextFromContext(ExtractHTTP(context.Background(), propagation.MapCarrier{"traceparent": Inject(ctx)}))
	if got.TraceID() != span.SpanContext().TraceID() {
		t.Fatalf("map carrier: extracted %+v", got)
	}
	bare := context.Background()
	none := http.Header{"Content-Type": {"application/json"}, "Kmb-Client-Id": {"1"}}
	if ExtractHTTP(bare, propagation.HeaderCarrier(none)) != bare {
		t.Fatal("a request without traceparent changed the context")
	}
	if n := testing.AllocsPerRun(1000, func() { ExtractHTTP(bare, propagation.HeaderCarrier(none)) }); n != 0 {
		t.Fatalf("%v allocations for a request without traceparent", n)
	}
}

// The sampled-out decision looks past a context that holds values but no
// span, and follows one that holds an unsampled or a sampled span context.
func TestParentLookup(t *testing.T) {
	tp, exp := provider()
	tr := New(tp, true, 0)
	type key struct{}
	valued := context.WithValue(context.Background(), key{}, "x")
	for _, tt := range []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"values, no span", valued, false},
		{"unsampled parent under values", context.WithValue(parent(false), key{}, 1), false},
		{"sampled parent under values", context.WithValue(parent(true), key{}, 1), true},
	} {
		before := len(exp.GetSpans())
		_, s := tr.Start(tt.ctx, Query, trace.SpanKindServer)
		s.End()
		if got := len(exp.GetSpans()) > before; got != tt.want {
			t.Errorf("%s: recorded %v, want %v", tt.name, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(1000, func() {
		_, s := tr.Start(valued, Query, trace.SpanKindServer)
		s.End()
	}); n != 0 {
		t.Errorf("%v allocations sampling out", n)
	}
}
