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

// Each contender gets its own loop over its concrete type, so that every
// call can be inlined the way it would be in kmbd; an interface or closure
// in between would add a dynamic call to each operation. Serial loops run
// over b.N rather than b.Loop, whose out-of-line slow path keeps loop
// variables on the stack and adds a store-to-load chain per iteration
// comparable to the cost of the cheapest contenders.

// latencies is a fixed stream of log-uniform latencies from 10µs to ~20s,
// in nanoseconds for kmb and in seconds for the others, so that histograms
// spread observations over every bucket instead of letting the branch
// predictor learn one.
type latencies struct {
	nanos   []int64
	seconds []float64
}

const streamMask = 1023 // stream length - 1

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

// otelMeter returns a meter whose provider aggregates for reader, and the
// precomputed attribute option to record with.
func otelMeter(tb testing.TB) (otelmetric.Meter, otelmetric.MeasurementOption, *sdkmetric.ManualReader) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tb.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	return provider.Meter("bench"), otelmetric.WithAttributeSet(attribute.NewSet(attribute.String("op", "append"))), reader
}

// counters holds one resolved counter per contender.
type counters struct {
	loop     *metric.LoopCounter
	sharded  *metric.Counter
	prom     prometheus.Counter
	victoria *vm.Counter
	otel     otelmetric.Int64Counter
	// otelOpts is built once: passing the option variadically per call
	// would allocate the slice each time, a cost of the call site rather
	// than of the SDK.
	otelOpts   []otelmetric.AddOption
	otelReader *sdkmetric.ManualReader
}

func newCounters(tb testing.TB) counters {
	r := metric.NewRegistry()
	meter, attrs, reader := otelMeter(tb)
	otel, err := meter.Int64Counter("otel_total")
	if err != nil {
		tb.Fatal(err)
	}
	return counters{
		loop:       r.NewLoopCounter("kmb_loop_total", ""),
		sharded:    r.NewCounterVec("kmb_total", "", "op").With("append"),
		prom:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prom_total"}, []string{"op"}).WithLabelValues("append"),
		victoria:   vm.NewSet().NewCounter(`vm_total{op="append"}`),
		otel:       otel,
		otelOpts:   []otelmetric.AddOption{attrs},
		otelReader: reader,
	}
}

func BenchmarkCounterInc(b *testing.B) {
	c := newCounters(b)
	b.Run("kmb-loop", func(b *testing.B) {
		for range b.N {
			c.loop.Inc()
		}
		c.loop.Publish()
	})
	b.Run("kmb-sharded", func(b *testing.B) {
		for range b.N {
			c.sharded.Inc()
		}
	})
	b.Run("client_golang", func(b *testing.B) {
		for range b.N {
			c.prom.Inc()
		}
	})
	b.Run("victoriametrics", func(b *testing.B) {
		for range b.N {
			c.victoria.Inc()
		}
	})
	b.Run("otel-sdk", func(b *testing.B) {
		ctx := context.Background()
		for range b.N {
			c.otel.Add(ctx, 1, c.otelOpts...)
		}
	})
}

// BenchmarkCounterIncParallel has no kmb-loop case: a LoopCounter has one
// writer by contract.
func BenchmarkCounterIncParallel(b *testing.B) {
	c := newCounters(b)
	b.Run("kmb-sharded", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.sharded.Inc()
			}
		})
	})
	b.Run("client_golang", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.prom.Inc()
			}
		})
	})
	b.Run("victoriametrics", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.victoria.Inc()
			}
		})
	})
	b.Run("otel-sdk", func(b *testing.B) {
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.otel.Add(ctx, 1, c.otelOpts...)
			}
		})
	})
}

// histograms holds one resolved histogram per contender, all with
// DurationBuckets except VictoriaMetrics, whose buckets are fixed.
type histograms struct {
	loop     *metric.LoopHistogram
	sharded  *metric.Histogram
	prom     prometheus.Observer
	victoria *vm.Histogram
	otel     otelmetric.Float64Histogram
	otelOpts []otelmetric.RecordOption // see counters.otelOpts
}

func newHistograms(b *testing.B) histograms {
	r := metric.NewRegistry()
	opts := metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}
	meter, attrs, _ := otelMeter(b)
	otel, err := meter.Float64Histogram("otel_seconds", otelmetric.WithExplicitBucketBoundaries(metric.DurationBuckets()...))
	if err != nil {
		b.Fatal(err)
	}
	return histograms{
		loop:     r.NewLoopHistogram("kmb_loop_seconds", "", opts),
		sharded:  r.NewHistogramVec("kmb_seconds", "", opts, "op").With("append"),
		prom:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "prom_seconds", Buckets: metric.DurationBuckets()}, []string{"op"}).WithLabelValues("append"),
		victoria: vm.NewSet().NewHistogram(`vm_seconds{op="append"}`),
		otel:     otel,
		otelOpts: []otelmetric.RecordOption{attrs},
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h, lat := newHistograms(b), newLatencies()
	b.Run("kmb-loop", func(b *testing.B) {
		for i := range b.N {
			h.loop.Observe(lat.nanos[i&streamMask])
		}
		h.loop.Publish()
	})
	b.Run("kmb-sharded", func(b *testing.B) {
		for i := range b.N {
			h.sharded.Observe(lat.nanos[i&streamMask])
		}
	})
	b.Run("client_golang", func(b *testing.B) {
		for i := range b.N {
			h.prom.Observe(lat.seconds[i&streamMask])
		}
	})
	b.Run("victoriametrics", func(b *testing.B) {
		for i := range b.N {
			h.victoria.Update(lat.seconds[i&streamMask])
		}
	})
	b.Run("otel-sdk", func(b *testing.B) {
		ctx := context.Background()
		for i := range b.N {
			h.otel.Record(ctx, lat.seconds[i&streamMask], h.otelOpts...)
		}
	})
}

// BenchmarkHistogramObserveParallel has no kmb-loop case: a LoopHistogram
// has one writer by contract.
func BenchmarkHistogramObserveParallel(b *testing.B) {
	h, lat := newHistograms(b), newLatencies()
	b.Run("kmb-sharded", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				h.sharded.Observe(lat.nanos[i&streamMask])
			}
		})
	})
	b.Run("client_golang", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				h.prom.Observe(lat.seconds[i&streamMask])
			}
		})
	})
	b.Run("victoriametrics", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				h.victoria.Update(lat.seconds[i&streamMask])
			}
		})
	})
	b.Run("otel-sdk", func(b *testing.B) {
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				h.otel.Record(ctx, lat.seconds[i&streamMask], h.otelOpts...)
			}
		})
	})
}
