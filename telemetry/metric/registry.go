package metric

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Registry holds metric families. It is safe for concurrent use.
//
// Registering a name twice, or an invalid metric or label name, panics:
// those are programming errors. Metric names must match
// [a-zA-Z_:][a-zA-Z0-9_:]* and label names [a-zA-Z_][a-zA-Z0-9_]*.
type Registry struct {
	mu       sync.Mutex
	families []*family // sorted by name
}

// family is a registered family: its description and how to read it.
type family struct {
	name, help string
	kind       Kind
	labelNames []string
	// collect returns the family's series, sorted by label values. It is
	// called without the registry lock held, so it may be slow or call
	// user code.
	collect func() []Series
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{}
}

// register validates and adds a family, panicking on invalid or duplicate
// names.
func (r *Registry) register(f *family) {
	checkNames(f.name, f.kind, f.labelNames)
	if !r.insert(f) {
		panic(fmt.Sprintf("metric: duplicate registration of %q", f.name))
	}
}

// insert adds f in name order and reports whether its name was free.
func (r *Registry) insert(f *family) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, found := slices.BinarySearchFunc(r.families, f.name, func(f *family, name string) int {
		return strings.Compare(f.name, name)
	})
	if found {
		return false
	}
	r.families = slices.Insert(r.families, i, f)
	return true
}

// Gather returns every family sorted by name, with its series sorted by
// label values. It is safe to call concurrently with recording; values
// recorded concurrently may or may not be included.
func (r *Registry) Gather() []Family {
	r.mu.Lock()
	families := slices.Clone(r.families)
	r.mu.Unlock()

	out := make([]Family, len(families))
	for i, f := range families {
		out[i] = Family{
			Name:       f.name,
			Help:       f.help,
			Kind:       f.kind,
			LabelNames: f.labelNames,
			Series:     f.collect(),
		}
	}
	return out
}

// single returns a collect function for an unlabelled family with one value.
func single(value func() float64) func() []Series {
	return func() []Series { return []Series{{Value: value()}} }
}

// NewCounter registers and returns a Counter that any goroutine may add to.
func (r *Registry) NewCounter(name, help string) *Counter {
	c := newCounter()
	r.register(&family{name: name, help: help, kind: KindCounter,
		collect: single(func() float64 { return float64(c.Value()) })})
	return c
}

// NewLoopCounter registers and returns a LoopCounter, which only its owning
// goroutine may add to and publish.
func (r *Registry) NewLoopCounter(name, help string) *LoopCounter {
	c := newLoopCounter()
	r.register(&family{name: name, help: help, kind: KindCounter,
		collect: single(func() float64 { return float64(c.Value()) })})
	return c
}

// NewGauge registers and returns a Gauge that any goroutine may set.
func (r *Registry) NewGauge(name, help string) *Gauge {
	g := newIsolated[Gauge]()
	r.register(&family{name: name, help: help, kind: KindGauge,
		collect: single(func() float64 { return float64(g.Value()) })})
	return g
}

// NewGaugeFunc registers a gauge whose value is f(), called at every
// Gather. f must be safe to call from any goroutine.
func (r *Registry) NewGaugeFunc(name, help string, f func() float64) {
	if f == nil {
		panicNilFunc(name)
	}
	r.register(&family{name: name, help: help, kind: KindGauge, collect: single(f)})
}

// NewCounterFunc registers a counter whose value is f(), called at every
// Gather. f must be safe to call from any goroutine and must never return
// less than it did before.
func (r *Registry) NewCounterFunc(name, help string, f func() float64) {
	if f == nil {
		panicNilFunc(name)
	}
	r.register(&family{name: name, help: help, kind: KindCounter, collect: single(f)})
}

// NewHistogram registers and returns a Histogram that any goroutine may
// record into. It panics if opts are invalid.
func (r *Registry) NewHistogram(name, help string, opts HistogramOpts) *Histogram {
	h := newHistogram(newBucketLayout(name, opts))
	r.register(&family{name: name, help: help, kind: KindHistogram,
		collect: func() []Series {
			snap := h.Snapshot()
			return []Series{{Histogram: &snap}}
		}})
	return h
}

// NewLoopHistogram registers and returns a LoopHistogram, which only its
// owning goroutine may record into and publish. It panics if opts are
// invalid.
func (r *Registry) NewLoopHistogram(name, help string, opts HistogramOpts) *LoopHistogram {
	h := newLoopHistogram(newBucketLayout(name, opts))
	r.register(&family{name: name, help: help, kind: KindHistogram,
		collect: func() []Series {
			snap := h.Snapshot()
			return []Series{{Histogram: &snap}}
		}})
	return h
}

// NewGaugeVecFunc registers a labelled gauge family whose series are
// produced at every Gather: f is called with an emit callback and calls it
// once per series, e.g. emit(1, "normal") and emit(0, "view_change") for a
// state set. Each call must pass one value per label name, or Gather
// panics; emitting the same label values twice is a mistake the registry
// does not detect. emit is valid only until f returns. f must be safe to
// call from any goroutine.
func (r *Registry) NewGaugeVecFunc(name, help string, labelNames []string, f func(emit func(value float64, labelValues ...string))) {
	if f == nil {
		panicNilFunc(name)
	}
	labelNames = slices.Clone(labelNames)
	r.register(&family{name: name, help: help, kind: KindGauge, labelNames: labelNames,
		collect: func() []Series {
			var series []Series
			f(func(value float64, labelValues ...string) {
				checkLabelValues(name, labelNames, labelValues)
				series = append(series, Series{LabelValues: slices.Clone(labelValues), Value: value})
			})
			slices.SortFunc(series, func(a, b Series) int {
				return slices.Compare(a.LabelValues, b.LabelValues)
			})
			return series
		}})
}

// panicNilFunc reports a nil callback passed to a Func registration.
func panicNilFunc(name string) {
	panic(fmt.Sprintf("metric: %s: nil function", name))
}
