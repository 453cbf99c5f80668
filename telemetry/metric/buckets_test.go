package metric

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestRawBound(t *testing.T) {
	tests := []struct {
		upper, scale float64
		want         int64
	}{
		{upper: 0.00005, scale: 1e-9, want: 50_000},
		{upper: 0.00025, scale: 1e-9, want: 250_000},
		{upper: 0.001, scale: 1e-9, want: 1_000_000},
		{upper: 0.25, scale: 1e-9, want: 250_000_000}, // 249999999.99999997 in float64
		{upper: 1, scale: 1e-9, want: 1_000_000_000},  // 999999999.99999988 in float64
		{upper: 2.5, scale: 1e-9, want: 2_500_000_000},
		{upper: 10, scale: 1e-9, want: 10_000_000_000},
		{upper: 0.3, scale: 0.1, want: 3}, // 0.3/0.1 is 2.9999999999999996 in float64
		{upper: 0.5, scale: 1, want: 0},
		{upper: 1.5, scale: 1, want: 1},
		{upper: -0.5, scale: 1, want: -1},
		{upper: -2, scale: 1, want: -2},
		{upper: 1024, scale: 1, want: 1024},
		{upper: 1e30, scale: 1, want: math.MaxInt64},
		{upper: -1e30, scale: 1, want: math.MinInt64},
	}
	for _, tt := range tests {
		if got := rawBound(tt.upper, tt.scale); got != tt.want {
			t.Errorf("rawBound(%v, %v) = %d, want %d", tt.upper, tt.scale, got, tt.want)
		}
	}
}

func TestBucketPlacement(t *testing.T) {
	// Raw bounds -10, 0, 5, 10: buckets (-Inf,-10] (-10,0] (0,5] (5,10] (10,+Inf).
	l := newBucketLayout("h", HistogramOpts{Buckets: []float64{-10, 0, 5, 10}})
	tests := []struct {
		v    int64
		want int
	}{
		{math.MinInt64, 0},
		{-11, 0},
		{-10, 0}, // on a bound: that bound's bucket ("le")
		{-9, 1},
		{-1, 1},
		{0, 1},
		{1, 2},
		{5, 2},
		{6, 3},
		{10, 3},
		{11, 4}, // above the last bound: +Inf
		{1 << 40, 4},
		{math.MaxInt64, 4},
	}
	for _, tt := range tests {
		if got := l.search.index(tt.v); got != tt.want {
			t.Errorf("index(%d) = %d, want %d", tt.v, got, tt.want)
		}
	}
}

func TestDurationBucketBoundaries(t *testing.T) {
	l := newBucketLayout("h", HistogramOpts{Buckets: DurationBuckets(), Scale: 1e-9})
	for i, upper := range DurationBuckets() {
		d := time.Duration(math.Round(upper * 1e9))
		if got := l.search.index(int64(d)); got != i {
			t.Errorf("%v: bucket %d, want %d (le=%v)", d, got, i, upper)
		}
		if got := l.search.index(int64(d + 1)); got != i+1 {
			t.Errorf("%v: bucket %d, want %d", d+1, got, i+1)
		}
	}
}

// TestBucketSearchMatchesBinarySearch checks the octave table against a
// plain binary search, for sparse layouts (one bound per octave at most),
// dense ones that walk, negative bounds and no bounds, at every bound, its
// neighbours and every power of two and its neighbours.
func TestBucketSearchMatchesBinarySearch(t *testing.T) {
	layouts := map[string]HistogramOpts{
		"durations":   {Buckets: DurationBuckets(), Scale: 1e-9},
		"exponential": {Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}},
		"1-2-5":       {Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500}},
		"linear":      {Buckets: []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}},
		"negative":    {Buckets: []float64{-1000, -100, -10, -1, 0, 1, 10, 100, 1000}},
		"fractional":  {Buckets: []float64{0.5, 0.7, 1.5, 2.5}},
		"huge":        {Buckets: []float64{1e18, 9e18, 1e30}},
		"none":        {},
	}
	for name, opts := range layouts {
		l := newBucketLayout(name, opts)
		probes := []int64{math.MinInt64, math.MinInt64 + 1, -1, 0, 1, math.MaxInt64 - 1, math.MaxInt64}
		for _, b := range l.bounds {
			probes = append(probes, b-1, b, b+1)
		}
		for shift := range 63 {
			p := int64(1) << shift
			probes = append(probes, p-1, p, p+1, -p-1, -p, -p+1)
		}
		for _, v := range probes {
			want, _ := slices.BinarySearch(l.bounds, v)
			if got := l.search.index(v); got != want {
				t.Errorf("%s: index(%d) = %d, want %d", name, v, got, want)
			}
		}
	}
}

func TestBucketLayoutOptions(t *testing.T) {
	l := newBucketLayout("h", HistogramOpts{Buckets: []float64{1, 2, math.Inf(1)}})
	if !slices.Equal(l.upper, []float64{1, 2}) || l.scale != 1 {
		t.Errorf("trailing +Inf: upper %v scale %v, want [1 2] and 1", l.upper, l.scale)
	}
	buckets := []float64{1, 2}
	l = newBucketLayout("h", HistogramOpts{Buckets: buckets})
	buckets[0] = 100
	if l.upper[0] != 1 {
		t.Error("layout aliases the caller's Buckets slice")
	}

	invalid := map[string]HistogramOpts{
		"decreasing":     {Buckets: []float64{2, 1}},
		"equal":          {Buckets: []float64{1, 1}},
		"NaN":            {Buckets: []float64{math.NaN()}},
		"-Inf":           {Buckets: []float64{math.Inf(-1), 1}},
		"inner +Inf":     {Buckets: []float64{math.Inf(1), math.Inf(1)}},
		"negative scale": {Buckets: []float64{1}, Scale: -1},
		"NaN scale":      {Buckets: []float64{1}, Scale: math.NaN()},
		"+Inf scale":     {Buckets: []float64{1}, Scale: math.Inf(1)},
	}
	for name, opts := range invalid {
		t.Run(name, func(t *testing.T) {
			defer wantPanic(t)
			newBucketLayout("h", opts)
		})
	}
}

// histogramUnderTest lets one table drive both histogram types.
type histogramUnderTest struct {
	name string
	new  func(r *Registry, opts HistogramOpts) (observe func(int64), snapshot func() HistogramSnapshot)
}

func histogramKinds() []histogramUnderTest {
	return []histogramUnderTest{
		{name: "Histogram", new: func(r *Registry, opts HistogramOpts) (func(int64), func() HistogramSnapshot) {
			h := r.NewHistogram("h", "", opts)
			return h.Observe, h.Snapshot
		}},
		{name: "LoopHistogram", new: func(r *Registry, opts HistogramOpts) (func(int64), func() HistogramSnapshot) {
			h := r.NewLoopHistogram("h", "", opts)
			return h.Observe, func() HistogramSnapshot { h.Publish(); return h.Snapshot() }
		}},
	}
}

func TestHistogramSnapshot(t *testing.T) {
	for _, kind := range histogramKinds() {
		t.Run(kind.name, func(t *testing.T) {
			observe, snapshot := kind.new(NewRegistry(), HistogramOpts{Buckets: []float64{0.001, 0.01, 0.1}, Scale: 1e-6})
			// Raw microseconds: bounds are 1000, 10000, 100000.
			for _, v := range []int64{-5, 0, 1000, 1001, 10_000, 99_999, 100_000, 100_001, 5_000_000} {
				observe(v)
			}
			got := snapshot()
			rawSum, scale := int64(5_311_996), 1e-6 // Sum is exported as rawSum * Scale
			want := HistogramSnapshot{
				Upper:  []float64{0.001, 0.01, 0.1},
				Counts: []uint64{3, 5, 7},
				Count:  9,
				Sum:    float64(rawSum) * scale,
			}
			assertSnapshot(t, got, want)
		})
	}
}

func TestHistogramObserveDuration(t *testing.T) {
	h := NewRegistry().NewHistogram("h", "", HistogramOpts{Buckets: DurationBuckets(), Scale: 1e-9})
	h.ObserveDuration(250 * time.Microsecond)
	h.ObserveDuration(3 * time.Second)
	got := h.Snapshot()
	rawSum, scale := int64(3_000_250_000), 1e-9
	if got.Count != 2 || got.Sum != float64(rawSum)*scale {
		t.Errorf("count %d sum %v, want 2 and %v", got.Count, got.Sum, float64(rawSum)*scale)
	}
	// 250µs is exactly the 0.00025 bound; 3s falls in (2.5, 5].
	if i := slices.Index(got.Upper, 0.00025); got.Counts[i] != 1 || got.Counts[i-1] != 0 {
		t.Errorf("250µs not in le=0.00025: counts %v", got.Counts)
	}
	if i := slices.Index(got.Upper, 5.0); got.Counts[i] != 2 || got.Counts[i-1] != 1 {
		t.Errorf("3s not in le=5: counts %v", got.Counts)
	}
}

func TestHistogramWithoutBuckets(t *testing.T) {
	h := NewRegistry().NewHistogram("h", "", HistogramOpts{})
	h.Observe(7)
	h.Observe(-2)
	assertSnapshot(t, h.Snapshot(), HistogramSnapshot{Upper: []float64{}, Counts: []uint64{}, Count: 2, Sum: 5})
}

func TestLoopHistogramPublish(t *testing.T) {
	h := NewRegistry().NewLoopHistogram("h", "", HistogramOpts{Buckets: []float64{10}})
	h.Observe(3)
	h.Observe(30)
	assertSnapshot(t, h.Snapshot(), HistogramSnapshot{Upper: []float64{10}, Counts: []uint64{0}})
	h.Publish()
	assertSnapshot(t, h.Snapshot(), HistogramSnapshot{Upper: []float64{10}, Counts: []uint64{1}, Count: 2, Sum: 33})
	h.Observe(4)
	assertSnapshot(t, h.Snapshot(), HistogramSnapshot{Upper: []float64{10}, Counts: []uint64{1}, Count: 2, Sum: 33})
	h.Publish()
	assertSnapshot(t, h.Snapshot(), HistogramSnapshot{Upper: []float64{10}, Counts: []uint64{2}, Count: 3, Sum: 37})
}

func assertSnapshot(t *testing.T, got, want HistogramSnapshot) {
	t.Helper()
	if !slices.Equal(got.Upper, want.Upper) || !slices.Equal(got.Counts, want.Counts) ||
		got.Count != want.Count || got.Sum != want.Sum {
		t.Errorf("snapshot = %+v, want %+v", got, want)
	}
}

func wantPanic(t *testing.T) {
	t.Helper()
	if recover() == nil {
		t.Error("did not panic")
	}
}
