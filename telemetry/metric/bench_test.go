package metric

import (
	"math/rand/v2"
	"testing"
	"time"
)

// benchValues is a fixed spread of latencies, log-uniform from 10µs to
// 20s, so histogram benchmarks exercise every bucket rather than letting
// the branch predictor learn one.
func benchValues() []int64 {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 1024)
	for i := range vals {
		// 10µs * 2^[0,21) spans 10µs .. ~21s.
		vals[i] = int64(float64(10*time.Microsecond) * float64(uint64(1)<<rng.IntN(21)) * (1 + rng.Float64()))
	}
	return vals
}

func durationOpts() HistogramOpts {
	return HistogramOpts{Buckets: DurationBuckets(), Scale: 1e-9}
}

func BenchmarkCounterAdd(b *testing.B) {
	c := NewRegistry().NewCounter("c", "")
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
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
	for b.Loop() {
		c.Add(1)
	}
	c.Publish()
}

func BenchmarkLoopCounterPublish(b *testing.B) {
	c := NewRegistry().NewLoopCounter("c", "")
	for b.Loop() {
		c.Add(1)
		c.Publish()
	}
}

func BenchmarkCappedLoopCounterVecAdd(b *testing.B) {
	v := NewRegistry().NewCappedLoopCounterVec("c", "", "tenant", 16)
	c := v.With("t1")
	for b.Loop() {
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
		children[i] = v.With("tenant-" + itoa(i))
	}
	i := 0
	for b.Loop() {
		for range active {
			children[i%tenants].Inc()
			i += 97 // spread across tenants
		}
		v.PublishDirty()
	}
}

func BenchmarkGaugeSet(b *testing.B) {
	g := NewRegistry().NewGauge("g", "")
	b.Run("serial", func(b *testing.B) {
		var i int64
		for b.Loop() {
			g.Set(i)
			i++
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
		for b.Loop() {
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
		i := 0
		for b.Loop() {
			h.Observe(vals[i&1023])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				h.Observe(vals[i&1023])
				i++
			}
		})
	})
}

func BenchmarkLoopHistogramObserve(b *testing.B) {
	h := NewRegistry().NewLoopHistogram("h", "", durationOpts())
	vals := benchValues()
	i := 0
	for b.Loop() {
		h.Observe(vals[i&1023])
		i++
	}
	h.Publish()
}

func BenchmarkLoopHistogramPublish(b *testing.B) {
	h := NewRegistry().NewLoopHistogram("h", "", durationOpts())
	vals := benchValues()
	i := 0
	for b.Loop() {
		h.Observe(vals[i&1023])
		h.Publish()
		i++
	}
}

func BenchmarkBucketIndex(b *testing.B) {
	l := newBucketLayout("h", durationOpts())
	vals := benchValues()
	i, sink := 0, 0
	for b.Loop() {
		sink += l.search.index(vals[i&1023])
		i++
	}
	_ = sink
}

func BenchmarkCounterVecWith(b *testing.B) {
	v := NewRegistry().NewCounterVec("c", "", "op", "status")
	v.With("append", "ok")
	for b.Loop() {
		v.With("append", "ok")
	}
}

// BenchmarkGather10kTenants gathers a registry holding a 10,000-tenant
// capped vec, the size the exporter must render in well under a few ms.
func BenchmarkGather10kTenants(b *testing.B) {
	r := NewRegistry()
	v := r.NewCappedLoopCounterVec("kmb_tenant_appends_total", "", "tenant", 10_000)
	for i := range 10_000 {
		v.With("tenant-" + itoa(i)).Inc()
	}
	v.PublishDirty()
	r.Gather() // sort once, as the first scrape after startup does
	for b.Loop() {
		r.Gather()
	}
}
