package metric

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// The serial benchmarks loop over b.N rather than b.Loop: b.Loop's
// out-of-line slow path makes the compiler keep loop variables on the
// stack, which adds a store-to-load chain per iteration comparable to the
// cost of the cheapest primitives measured here.

// benchValues is a fixed stream of latencies, log-uniform from 10µs to
// ~20s, so histogram benchmarks spread observations over every bucket
// instead of letting the branch predictor learn one.
func benchValues() []int64 {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 1024)
	for i := range vals {
		vals[i] = int64(float64(10*time.Microsecond) * float64(uint64(1)<<rng.IntN(21)) * (1 + rng.Float64()))
	}
	return vals
}

const benchMask = 1023 // len(benchValues()) - 1

func durationOpts() HistogramOpts {
	return HistogramOpts{Buckets: DurationBuckets(), Scale: 1e-9}
}

func BenchmarkCounterAdd(b *testing.B) {
	c := NewRegistry().NewCounter("c", "")
	b.Run("serial", func(b *testing.B) {
		for range b.N {
			c.Add(1)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Add(1)
			}
		})
	})
}

func BenchmarkLoopCounterAdd(b *testing.B) {
	c := NewRegistry().NewLoopCounter("c", "")
	for range b.N {
		c.Add(1)
	}
	c.Publish()
}

// BenchmarkLoopCounterPublish is an add and a publish per iteration, the
// worst case of an event loop that ticks after every event.
func BenchmarkLoopCounterPublish(b *testing.B) {
	c := NewRegistry().NewLoopCounter("c", "")
	for range b.N {
		c.Add(1)
		c.Publish()
	}
}

func BenchmarkCappedLoopCounterVecAdd(b *testing.B) {
	v := NewRegistry().NewCappedLoopCounterVec("c", "", "tenant", 16)
	c := v.With("t1")
	for range b.N {
		c.Add(1)
	}
	v.PublishDirty()
}

// BenchmarkCappedLoopCounterVecTick is one event-loop tick over 10,000
// tenants of which 100 were active: 100 adds and a PublishDirty.
func BenchmarkCappedLoopCounterVecTick(b *testing.B) {
	const tenants, active = 10_000, 100
	v := NewRegistry().NewCappedLoopCounterVec("c", "", "tenant", tenants)
	children := make([]*LoopCounter, tenants)
	for i := range children {
		children[i] = v.With("tenant-" + strconv.Itoa(i))
	}
	next := 0
	b.ResetTimer()
	for range b.N {
		for range active {
			children[next].Inc()
			next = (next + 97) % tenants // spread across tenants
		}
		v.PublishDirty()
	}
}

func BenchmarkGaugeSet(b *testing.B) {
	g := NewRegistry().NewGauge("g", "")
	b.Run("serial", func(b *testing.B) {
		for i := range b.N {
			g.Set(int64(i))
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var i int64
			for pb.Next() {
				g.Set(i)
				i++
			}
		})
	})
}

func BenchmarkGaugeAdd(b *testing.B) {
	g := NewRegistry().NewGauge("g", "")
	b.Run("serial", func(b *testing.B) {
		for range b.N {
			g.Add(1)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g.Add(1)
			}
		})
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewRegistry().NewHistogram("h", "", durationOpts())
	vals := benchValues()
	b.Run("serial", func(b *testing.B) {
		for i := range b.N {
			h.Observe(vals[i&benchMask])
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				h.Observe(vals[i&benchMask])
				i++
			}
		})
	})
}

func BenchmarkLoopHistogramObserve(b *testing.B) {
	h := NewRegistry().NewLoopHistogram("h", "", durationOpts())
	vals := benchValues()
	for i := range b.N {
		h.Observe(vals[i&benchMask])
	}
	h.Publish()
}

// BenchmarkLoopHistogramPublish is an observation and a publish per
// iteration, the worst case of an event loop that ticks after every event.
func BenchmarkLoopHistogramPublish(b *testing.B) {
	h := NewRegistry().NewLoopHistogram("h", "", durationOpts())
	vals := benchValues()
	for i := range b.N {
		h.Observe(vals[i&benchMask])
		h.Publish()
	}
}

func BenchmarkBucketIndex(b *testing.B) {
	l := newBucketLayout("h", durationOpts())
	vals := benchValues()
	sink := 0
	for i := range b.N {
		sink += l.search.index(vals[i&benchMask])
	}
	benchSink = sink
}

// benchSink keeps benchmarked results alive.
var benchSink int

func BenchmarkCounterVecWith(b *testing.B) {
	v := NewRegistry().NewCounterVec("c", "", "op", "status")
	v.With("append", "ok")
	for range b.N {
		v.With("append", "ok")
	}
}

// BenchmarkGather10kTenants gathers a registry holding a 10,000-tenant
// capped vec, the size the exporter must render in well under a few ms.
func BenchmarkGather10kTenants(b *testing.B) {
	r := NewRegistry()
	v := r.NewCappedLoopCounterVec("kmb_tenant_appends_total", "", "tenant", 10_000)
	for i := range 10_000 {
		v.With("tenant-" + strconv.Itoa(i)).Inc()
	}
	v.PublishDirty()
	r.Gather() // sort once, as the first scrape after startup does
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.Gather()
	}
}

// BenchmarkFloor measures what the primitives are built from, on this
// machine: the shard hint, one uncontended atomic add, and a plain
// read-modify-write of one memory word (what LoopCounter.Add is).
func BenchmarkFloor(b *testing.B) {
	b.Run("shard-hint", func(b *testing.B) {
		sink := 0
		for range b.N {
			sink += shard(maxShards - 1)
		}
		benchSink = sink
	})
	b.Run("atomic-add", func(b *testing.B) {
		n := newIsolated[atomic.Uint64]()
		for range b.N {
			n.Add(1)
		}
	})
	b.Run("plain-increment", func(b *testing.B) {
		n := newIsolated[uint64]()
		for range b.N {
			*n++
		}
	})
}
