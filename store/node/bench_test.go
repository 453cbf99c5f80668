package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
	"github.com/kmb-db/kmb/telemetry/spans"
)

// BenchmarkAppend measures durable single-node append throughput: every
// append is fsynced before it returns, concurrent writers share fsyncs.
// One op is one request of `batch` entries with 100-byte values.
//
//	go test ./store/node -run '^$' -bench Append -benchtime 3s -count 5
func BenchmarkAppend(b *testing.B) {
	value := []byte(`"` + strings.Repeat("v", 98) + `"`) // 100 bytes of JSON
	for _, writers := range []int{1, 16, 64} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("writers=%d/batch=%d", writers, batch), func(b *testing.B) {
				benchAppend(b, writers, batch, value)
			})
		}
	}
}

func benchAppend(b *testing.B, writers, batch int, value []byte) {
	n := startNode(b, b.TempDir(), metric.NewRegistry(), nil)
	runAppendBench(b, n, writers, batch, value)
}

// runAppendBench spreads b.N appends of batch entries over writers
// goroutines and reports throughput and latency percentiles.
func runAppendBench(b *testing.B, n *Node, writers, batch int, value []byte) {
	entries := make([]kmblog.Entry, batch)
	for i := range entries {
		entries[i] = kmblog.Entry{Key: fmt.Sprintf("key-%d", i), Value: value}
	}
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		wg        sync.WaitGroup
		next      = make(chan struct{}, b.N)
	)
	for i := 0; i < b.N; i++ {
		next <- struct{}{}
	}
	close(next)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, b.N/writers+1)
			for range next {
				t0 := time.Now()
				if _, err := n.Append(context.Background(), Write{Tenant: "bench", Entries: entries}); err != nil {
					b.Error(err)
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkAppendTracing measures write throughput with tracing off, at 1%
// and at 100% sampling, in one run: each write is wrapped in a kmb.write
// span as the API does, and the node adds its prepare and commit spans.
// Spans go through a batching processor to an exporter that discards them.
//
//	go test ./store/node -run '^$' -bench AppendTracing -benchtime 3s -count 5
func BenchmarkAppendTracing(b *testing.B) {
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	for _, mode := range []struct {
		name  string
		ratio float64
		on    bool
	}{{"off", 0, false}, {"sampled-1pct", 0.01, true}, {"sampled-100pct", 1, true}} {
		b.Run(mode.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(
				sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
				sdktrace.WithBatcher(discardExporter{}),
			)
			defer tp.Shutdown(context.Background())
			tracer := spans.New(tp, mode.on, mode.ratio)
			cfg := DefaultConfig()
			cfg.DataDir = b.TempDir()
			n, err := New(cfg, Deps{Metrics: metric.NewRegistry(), Tracer: tracer})
			if err != nil {
				b.Fatal(err)
			}
			go n.Run()
			defer n.Stop()
			for n.Ready() != nil {
				time.Sleep(time.Millisecond)
			}
			entries := []kmblog.Entry{{Key: "k", Value: value}}
			b.SetParallelism(8) // 16 writers on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx, span := tracer.Start(context.Background(), spans.Write, trace.SpanKindServer)
					if _, err := n.Append(ctx, Write{Tenant: "bench", Entries: entries}); err != nil {
						b.Error(err)
					}
					span.End()
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
