package metric

import (
	"testing"
	"time"
)

// TestHotPathsDoNotAllocate pins the package's central promise: recording,
// publishing and resolving an existing child never allocate.
func TestHotPathsDoNotAllocate(t *testing.T) {
	r := NewRegistry()
	opts := HistogramOpts{Buckets: DurationBuckets(), Scale: 1e-9}
	c := r.NewCounter("c", "")
	lc := r.NewLoopCounter("lc", "")
	g := r.NewGauge("g", "")
	h := r.NewHistogram("h", "", opts)
	lh := r.NewLoopHistogram("lh", "", opts)
	linear := r.NewLoopHistogram("linear", "", HistogramOpts{Buckets: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}})
	cv := r.NewCounterVec("cv", "", "op", "code")
	cv.With("write", "ok")
	hv := r.NewHistogramVec("hv", "", opts, "op")
	hv.With("write")
	capped := r.NewCappedLoopCounterVec("capped", "", "tenant", 2)
	tenant := capped.With("a")
	capped.With("b")
	capped.With("c") // overflow
	// Grow the dirty list to its steady-state capacity.
	tenant.Inc()
	capped.With("b").Inc()
	capped.With("c").Inc()
	capped.PublishDirty()

	hotPaths := map[string]func(){
		"Counter.Add":                  func() { c.Add(2) },
		"Counter.Inc":                  func() { c.Inc() },
		"LoopCounter.Add":              func() { lc.Add(2) },
		"LoopCounter.Inc":              func() { lc.Inc() },
		"LoopCounter.Publish":          func() { lc.Inc(); lc.Publish() },
		"Gauge.Set":                    func() { g.Set(3) },
		"Gauge.Add":                    func() { g.Add(-1) },
		"Gauge.Inc":                    func() { g.Inc() },
		"Gauge.Dec":                    func() { g.Dec() },
		"Histogram.Observe":            func() { h.Observe(12345) },
		"Histogram.ObserveDuration":    func() { h.ObserveDuration(3 * time.Millisecond) },
		"LoopHistogram.Observe":        func() { lh.Observe(12345) },
		"LoopHistogram.ObserveLinear":  func() { linear.Observe(4) },
		"LoopHistogram.ObserveDur":     func() { lh.ObserveDuration(time.Second) },
		"LoopHistogram.Publish":        func() { lh.Observe(1); lh.Publish() },
		"CappedLoopCounterVec.tick":    func() { tenant.Inc(); capped.With("b").Inc(); capped.PublishDirty() },
		"CounterVec.With (existing)":   func() { cv.With("write", "ok").Inc() },
		"HistogramVec.With (existing)": func() { hv.With("write").Observe(1) },
		"CappedLoopCounterVec.With":    func() { capped.With("a").Inc(); capped.With("zzz").Inc() },
		"Value and Snapshot reads":     func() { _, _, _ = c.Value(), lc.Value(), g.Value() },
	}
	for name, fn := range hotPaths {
		if allocs := testing.AllocsPerRun(100, fn); allocs != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, allocs)
		}
	}
}
