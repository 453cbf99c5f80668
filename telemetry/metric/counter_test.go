package metric

import (
	"sync"
	"testing"
)

// inParallel runs fn(g) on goroutines g = 0..n-1 and waits for them.
func inParallel(n int, fn func(g int)) {
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() { fn(g) })
	}
	wg.Wait()
}

func TestCounterConcurrentAdds(t *testing.T) {
	const goroutines, adds = 8, 100_000
	c := NewRegistry().NewCounter("c", "")
	inParallel(goroutines, func(g int) {
		for i := range adds {
			if i%2 == 0 {
				c.Inc()
			} else {
				c.Add(uint64(g))
			}
		}
	})
	// Each goroutine adds adds/2 ones and adds/2 times its index.
	want := uint64(goroutines*adds/2 + adds/2*(0+1+2+3+4+5+6+7))
	if got := c.Value(); got != want {
		t.Errorf("Value() = %d, want %d", got, want)
	}
}

func TestHistogramConcurrentObserves(t *testing.T) {
	const goroutines, observations = 8, 20_000
	h := NewRegistry().NewHistogram("h", "", HistogramOpts{Buckets: []float64{1, 2}})
	inParallel(goroutines, func(g int) {
		for i := range observations {
			h.Observe(int64(i % 4)) // 0, 1, 2, 3
		}
	})
	assertSnapshot(t, h.Snapshot(), HistogramSnapshot{
		Upper:  []float64{1, 2},
		Counts: []uint64{goroutines * observations / 2, goroutines * observations * 3 / 4},
		Count:  goroutines * observations,
		Sum:    goroutines * observations / 4 * (0 + 1 + 2 + 3),
	})
}

func TestGauge(t *testing.T) {
	g := NewRegistry().NewGauge("g", "")
	g.Set(10)
	g.Add(-3)
	g.Inc()
	g.Dec()
	g.Dec()
	if got := g.Value(); got != 6 {
		t.Errorf("Value() = %d, want 6", got)
	}
	inParallel(4, func(int) {
		for range 1000 {
			g.Inc()
			g.Add(2)
			g.Dec()
		}
	})
	if got := g.Value(); got != 6+4*1000*2 {
		t.Errorf("after concurrent adds Value() = %d, want %d", got, 6+4*1000*2)
	}
}

func TestLoopCounterVisibleOnlyAfterPublish(t *testing.T) {
	c := NewRegistry().NewLoopCounter("c", "")
	c.Add(5)
	c.Inc()
	if got := c.Value(); got != 0 {
		t.Fatalf("before Publish Value() = %d, want 0", got)
	}
	c.Publish()
	if got := c.Value(); got != 6 {
		t.Fatalf("after Publish Value() = %d, want 6", got)
	}
	c.Add(10)
	if got := c.Value(); got != 6 {
		t.Fatalf("unpublished add is visible: Value() = %d, want 6", got)
	}
	c.Publish()
	c.Publish()
	if got := c.Value(); got != 16 {
		t.Fatalf("after second Publish Value() = %d, want 16", got)
	}
}

// TestLoopCounterPublishedToReaders has an owner goroutine add and publish
// while readers watch: readers must only ever see published totals, and
// see them grow monotonically (and the race detector must stay quiet).
func TestLoopCounterPublishedToReaders(t *testing.T) {
	const ticks, addsPerTick = 2000, 3
	r := NewRegistry()
	c := r.NewLoopCounter("c", "")
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for range ticks {
			for range addsPerTick {
				c.Inc()
			}
			c.Publish()
		}
	})
	for range 2 {
		wg.Go(func() {
			var last uint64
			for {
				select {
				case <-done:
					return
				default:
				}
				v := c.Value()
				if v < last || v%addsPerTick != 0 {
					t.Errorf("reader saw %d after %d: not a published total", v, last)
					return
				}
				last = v
				r.Gather()
			}
		})
	}
	wg.Wait()
	if got := c.Value(); got != ticks*addsPerTick {
		t.Errorf("Value() = %d, want %d", got, ticks*addsPerTick)
	}
}

func TestZeroLoopCounterWorksUnregistered(t *testing.T) {
	var c LoopCounter
	c.Add(2)
	c.Publish()
	if got := c.Value(); got != 2 {
		t.Errorf("Value() = %d, want 2", got)
	}
}
