package bench

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelmetric "go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// Both recording interfaces the contenders reduce to.
type (
	incer    interface{ Inc() }
	observer func(i int) // records the i-th value of the latency stream
)

// latencies is a fixed stream of log-uniform latencies from 10µs to ~20s,
// in nanoseconds and in seconds, so that histograms spread observations over
// every bucket instead of letting the branch predictor learn one.
type latencies struct {
	nanos   []int64
	seconds []float64
}

const streamMask = 1023

func newLatencies() latencies {
	rng := rand.New(rand.NewPCG(1, 2))
	l := latencies{nanos: make([]int64, streamMask+1), seconds: make([]float64, streamMask+1)}
	for i := range l.nanos {
		d := time.Duration(float64(10*time.Microsecond) * float64(uint64(1)<<rng.IntN(21)) * (1 + rng.Float64()))
		l.nanos[i] = int64(d)
		l.seconds[i] = d.Seconds()
	}
	return l
}

// otelMeter returns a meter whose provider aggregates with a ManualReader,
// and the precomputed attribute option its instruments are recorded with.
func otelMeter(b *testing.B) (otelmetric.Meter, otelmetric.MeasurementOption) {
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	return provider.Meter("bench"), otelmetric.WithAttributeSet(attribute.NewSet(attribute.String("op", "append")))
}

// otelCounter adapts an OTel Int64Counter to incer.
type otelCounter struct {
	c   otelmetric.Int64Counter
	opt otelmetric.AddOption
}

func (o otelCounter) Inc() { o.c.Add(context.Background(), 1, o.opt) }

// counters returns each contender's counter handle, named as its
// sub-benchmark. The loop counter is left out where parallel is true: it
// has a single writer by contract.
func counters(b *testing.B, parallel bool) []struct {
	name string
	c    incer
} {
	var cs []struct {
		name string
		c    incer
	}
	add := func(name string, c incer) {
		cs = append(cs, struct {
			name string
			c    incer
		}{name, c})
	}

	r := metric.NewRegistry()
	if !parallel {
		add("kmb-loop", r.NewLoopCounter("kmb_loop_total", ""))
	}
	add("kmb-sharded", r.NewCounterVec("kmb_total", "", "op").With("append"))

	add("client_golang", prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prom_total"}, []string{"op"}).WithLabelValues("append"))

	add("victoriametrics", vm.NewSet().NewCounter(`vm_total{op="append"}`))

	meter, attrs := otelMeter(b)
	c, err := meter.Int64Counter("otel_total")
	if err != nil {
		b.Fatal(err)
	}
	add("otel-sdk", otelCounter{c: c, opt: attrs})
	return cs
}

// histograms returns each contender's histogram, as a function recording
// the i-th latency of lat, named as its sub-benchmark.
func histograms(b *testing.B, lat latencies, parallel bool) []struct {
	name    string
	observe observer
} {
	var hs []struct {
		name    string
		observe observer
	}
	add := func(name string, o observer) {
		hs = append(hs, struct {
			name    string
			observe observer
		}{name, o})
	}
	opts := metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}

	r := metric.NewRegistry()
	if !parallel {
		loop := r.NewLoopHistogram("kmb_loop_seconds", "", opts)
		add("kmb-loop", func(i int) { loop.Observe(lat.nanos[i&streamMask]) })
	}
	sharded := r.NewHistogramVec("kmb_seconds", "", opts, "op").With("append")
	add("kmb-sharded", func(i int) { sharded.Observe(lat.nanos[i&streamMask]) })

	prom := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "prom_seconds", Buckets: metric.DurationBuckets()}, []string{"op"}).WithLabelValues("append")
	add("client_golang", func(i int) { prom.Observe(lat.seconds[i&streamMask]) })

	victoria := vm.NewSet().NewHistogram(`vm_seconds{op="append"}`)
	add("victoriametrics", func(i int) { victoria.Update(lat.seconds[i&streamMask]) })

	meter, attrs := otelMeter(b)
	otel, err := meter.Float64Histogram("otel_seconds", otelmetric.WithExplicitBucketBoundaries(metric.DurationBuckets()...))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	add("otel-sdk", func(i int) { otel.Record(ctx, lat.seconds[i&streamMask], attrs) })
	return hs
}

func BenchmarkCounterInc(b *testing.B) {
	for _, tc := range counters(b, false) {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.c.Inc()
			}
		})
	}
}

func BenchmarkCounterIncParallel(b *testing.B) {
	for _, tc := range counters(b, true) {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tc.c.Inc()
				}
			})
		})
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	lat := newLatencies()
	for _, tc := range histograms(b, lat, false) {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tc.observe(i)
				i++
			}
		})
	}
}

func BenchmarkHistogramObserveParallel(b *testing.B) {
	lat := newLatencies()
	for _, tc := range histograms(b, lat, true) {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					tc.observe(i)
					i++
				}
			})
		})
	}
}
