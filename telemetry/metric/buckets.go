package metric

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// HistogramOpts configures a histogram's buckets and units.
type HistogramOpts struct {
	// Buckets are upper bounds in exported units (e.g. seconds), strictly
	// increasing; +Inf is implicit (a trailing +Inf is accepted and
	// dropped). No buckets at all is valid: the histogram then exports only
	// its count and sum.
	Buckets []float64
	// Scale converts a raw integer observation to exported units:
	// exported = raw * Scale. Use 1e-9 for durations observed in nanoseconds
	// (exported as seconds) and 1 for counts or bytes. Zero means 1.
	Scale float64
}

// DurationBuckets returns latency buckets in seconds suited to a storage
// engine, from 50µs to 10s. Use them with Scale 1e-9 and ObserveDuration.
// Each call returns a new slice.
func DurationBuckets() []float64 {
	return []float64{
		0.00005, 0.0001, 0.00025, 0.0005,
		0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
		0.1, 0.25, 0.5, 1, 2.5, 5, 10,
	}
}

// Exemplar is one observation and the trace it belongs to.
type Exemplar struct {
	Value   float64 // in exported units
	TraceID string  // W3C trace id, 32 hex digits
	Time    time.Time
}

// HistogramSnapshot is a histogram's state at one moment, in exported
// units, shaped like a Prometheus histogram.
type HistogramSnapshot struct {
	// Upper holds the bucket upper bounds in exported units, without +Inf.
	// It is shared by every snapshot of the histogram: do not modify it.
	Upper []float64
	// Counts holds the cumulative count per upper bound (the number of
	// observations <= Upper[i]); len(Counts) == len(Upper).
	Counts []uint64
	// Count is the number of observations, including those above the last
	// bound.
	Count uint64
	// Sum is the sum of all observations, in exported units. It is kept
	// as an int64 sum of raw units, which wraps after 2^63 of them (292
	// years of nanoseconds).
	Sum float64
	// Exemplars holds the latest traced observation of each bucket that
	// has one, in bucket order (histograms recorded with
	// ObserveDurationWithExemplar only).
	Exemplars []Exemplar
}

// bucketLayout is a histogram's immutable geometry, computed once per
// family and shared by all its children.
type bucketLayout struct {
	upper  []float64 // exported bounds, without +Inf
	bounds []int64   // raw bounds: v goes in bucket i if bounds[i-1] < v <= bounds[i]
	search bucketSearch
	scale  float64
}

// newBucketLayout validates opts and converts the bounds to raw units. It
// panics on invalid options, which are programming errors.
func newBucketLayout(name string, opts HistogramOpts) *bucketLayout {
	scale := opts.Scale
	if scale == 0 {
		scale = 1
	}
	if !(scale > 0) || math.IsInf(scale, 1) {
		panic(fmt.Sprintf("metric: histogram %s: Scale %v must be positive and finite", name, opts.Scale))
	}
	upper := opts.Buckets
	if n := len(upper); n > 0 && math.IsInf(upper[n-1], 1) {
		upper = upper[:n-1]
	}
	upper = append([]float64(nil), upper...) // callers may reuse their slice
	bounds := make([]int64, len(upper))
	for i, u := range upper {
		if math.IsNaN(u) || math.IsInf(u, 0) {
			panic(fmt.Sprintf("metric: histogram %s: bucket bound %v is not finite", name, u))
		}
		if i > 0 && u <= upper[i-1] {
			panic(fmt.Sprintf("metric: histogram %s: buckets must be strictly increasing, got %v after %v", name, u, upper[i-1]))
		}
		bounds[i] = rawBound(u, scale)
	}
	return &bucketLayout{upper: upper, bounds: bounds, search: newBucketSearch(bounds), scale: scale}
}

// rawBound returns the largest integer raw value whose exported value is at
// most upper, that is floor(upper/scale).
//
// The division is done in floating point, where a bound meant to be exact
// can come out a hair below the integer (1 s at scale 1e-9 gives
// 999999999.99999988 ns), and a plain floor would push an observation of
// exactly 1s into the next bucket. Quotients within a relative 1e-12
// of an integer are therefore taken to be that integer: far above the few
// ulps of rounding error, far below any real difference between bounds.
func rawBound(upper, scale float64) int64 {
	q := upper / scale
	if r := math.Round(q); math.Abs(q-r) <= 1e-12*math.Max(1, math.Abs(r)) {
		q = r
	} else {
		q = math.Floor(q)
	}
	switch {
	case q >= math.MaxInt64: // float64(MaxInt64) rounds up to 2^63
		return math.MaxInt64
	case q <= math.MinInt64:
		return math.MinInt64
	}
	return int64(q)
}

// bucketSearch finds the bucket of a raw observation.
//
// Comparing against every bound, or binary searching them, costs several
// dependent loads and, for observations spread across buckets, branch
// mispredictions that dominate an otherwise few-nanosecond Observe. Instead
// a table indexed by the observation's bit length (its power-of-two octave)
// gives the first candidate bucket together with its bound, so when at most
// one bound lies inside the octave, as in latency and size layouts, which
// are roughly exponential, finding the bucket is one table load and one
// branch-free comparison. Denser layouts then walk the remaining bounds of
// the octave, which is never more work than the linear scan other
// libraries do.
type bucketSearch struct {
	// octaves[bits.Len64(uint64(v))] describes the octave of v; slot 0
	// holds just zero and slot 64 every negative value.
	octaves *[65]octave
	// bounds are the raw bounds followed by a MaxInt64 sentinel, which no
	// observation exceeds, so the walk needs no length check.
	bounds []int64
}

// octave is the search table entry for one power-of-two range of values.
type octave struct {
	first int64 // the bucket of the octave's smallest value
	bound int64 // bounds[first], copied here to save a dependent load
}

func newBucketSearch(bounds []int64) bucketSearch {
	s := bucketSearch{
		octaves: new([65]octave),
		bounds:  append(slices.Clip(bounds), math.MaxInt64),
	}
	for length := range 65 {
		var smallest int64 // of the values with this bit length
		switch length {
		case 0:
			smallest = 0
		case 64:
			smallest = math.MinInt64
		default:
			smallest = int64(1) << (length - 1)
		}
		first := lowerBound(bounds, smallest)
		s.octaves[length] = octave{first: int64(first), bound: s.bounds[first]}
	}
	return s
}

// index returns the index of the first bound >= v, or the number of bounds
// for the implicit +Inf bucket. It is small enough to inline.
func (s *bucketSearch) index(v int64) int {
	// With at most one bound inside the octave, v is either in the
	// octave's first bucket or, if above that bucket's bound, the next.
	o := &s.octaves[bits.Len64(uint64(v))]
	i := int(o.first) + b2i(o.bound < v)
	// Denser layouts walk on from there. For the others this check is a
	// correctly predicted branch whose load is off the critical path.
	for s.bounds[i] < v {
		i++
	}
	return i
}

// lowerBound returns the index of the first bound >= v, or len(bounds).
func lowerBound(bounds []int64, v int64) int {
	i, _ := slices.BinarySearch(bounds, v)
	return i
}

// b2i compiles to a flag-setting instruction (SETcc) rather than a branch.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Both histogram types store, per shard, sumCell followed by one count per
// bucket, the last for +Inf.
const (
	sumCell    = 0
	firstCount = 1
)

// cellsPerShard is the number of words a shard of this layout uses.
func (l *bucketLayout) cellsPerShard() int {
	return firstCount + len(l.bounds) + 1
}

// snapshot sums shards of cells (shard s starts at s*stride) into a
// snapshot. counts must have len(l.upper) elements and is used as the
// snapshot's Counts, so Gather can hand out slices of one allocation.
//
// Buckets and sum are read one word at a time while writers may be
// recording, so a snapshot taken under load can include an observation's
// bucket but not yet its sum. Count is derived from the buckets, so counts
// are always mutually consistent.
func (l *bucketLayout) snapshot(cells []atomic.Uint64, stride int, counts []uint64) HistogramSnapshot {
	nb := len(l.bounds)
	clear(counts)
	var sum, inf uint64
	for base := 0; base+stride <= len(cells); base += stride {
		sh := cells[base : base+stride]
		sum += sh[sumCell].Load()
		for i := range nb {
			counts[i] += sh[firstCount+i].Load()
		}
		inf += sh[firstCount+nb].Load()
	}
	var cum uint64
	for i := range counts {
		cum += counts[i]
		counts[i] = cum
	}
	return HistogramSnapshot{
		Upper:  l.upper,
		Counts: counts,
		Count:  cum + inf,
		// The sum is kept as wrapping uint64 adds of int64 values, which is
		// two's complement int64 arithmetic.
		Sum: float64(int64(sum)) * l.scale,
	}
}
