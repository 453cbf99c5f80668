package metric

import "slices"

// vec is the label-resolving core shared by CounterVec and HistogramVec.
type vec[T any] struct {
	name       string
	labelNames []string
	newMetric  func() *T
	children[T]
}

// with returns the child for labelValues, creating it on first use. A hit
// takes a read lock and a map lookup and does not allocate.
func (v *vec[T]) with(labelValues []string) *T {
	var buf [128]byte
	key := appendKey(buf[:0], labelValues)
	if m := v.lookup(key); m != nil {
		return m
	}
	checkLabelValues(v.name, v.labelNames, labelValues)

	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.byKey[string(key)]; c != nil { // created since lookup
		return c.metric
	}
	m := v.newMetric()
	v.insertLocked(string(key), slices.Clone(labelValues), m)
	return m
}

// CounterVec is a family of Counters distinguished by label values.
type CounterVec struct {
	v vec[Counter]
}

// NewCounterVec registers and returns a family of Counters with the given
// label names.
func (r *Registry) NewCounterVec(name, help string, labelNames ...string) *CounterVec {
	cv := &CounterVec{v: vec[Counter]{name: name, labelNames: slices.Clone(labelNames), newMetric: newCounter}}
	r.register(&family{name: name, help: help, kind: KindCounter, labelNames: cv.v.labelNames,
		collect: func() []Series {
			cs := cv.v.gatherable()
			series := make([]Series, len(cs))
			for i, c := range cs {
				series[i] = Series{LabelValues: c.labelValues, Value: float64(c.metric.Value())}
			}
			return series
		}})
	return cv
}

// With returns the Counter for the given label values, one per label name,
// creating it on first use. It panics if the number of values is wrong or a
// value is not valid UTF-8.
//
// With is the slow path (a lock and a map lookup): resolve each child once
// and keep the *Counter rather than calling With per event.
func (cv *CounterVec) With(labelValues ...string) *Counter {
	return cv.v.with(labelValues)
}

// HistogramVec is a family of Histograms distinguished by label values,
// all with the same buckets.
type HistogramVec struct {
	v vec[Histogram]
}

// NewHistogramVec registers and returns a family of Histograms with the
// given options and label names. It panics if opts are invalid or a label
// is named "le".
func (r *Registry) NewHistogramVec(name, help string, opts HistogramOpts, labelNames ...string) *HistogramVec {
	layout := newBucketLayout(name, opts)
	hv := &HistogramVec{v: vec[Histogram]{name: name, labelNames: slices.Clone(labelNames),
		newMetric: func() *Histogram { return newHistogram(layout) }}}
	r.register(&family{name: name, help: help, kind: KindHistogram, labelNames: hv.v.labelNames,
		collect: func() []Series {
			cs := hv.v.gatherable()
			// One allocation each for all snapshots and all their counts.
			nb := len(layout.upper)
			snaps := make([]HistogramSnapshot, len(cs))
			counts := make([]uint64, len(cs)*nb)
			series := make([]Series, len(cs))
			for i, c := range cs {
				snaps[i] = c.metric.snapshotInto(counts[i*nb : (i+1)*nb : (i+1)*nb])
				series[i] = Series{LabelValues: c.labelValues, Histogram: &snaps[i]}
			}
			return series
		}})
	return hv
}

// With returns the Histogram for the given label values, one per label
// name, creating it on first use. It panics if the number of values is
// wrong or a value is not valid UTF-8.
//
// With is the slow path (a lock and a map lookup): resolve each child once
// and keep the *Histogram rather than calling With per observation.
func (hv *HistogramVec) With(labelValues ...string) *Histogram {
	return hv.v.with(labelValues)
}
