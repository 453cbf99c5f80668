package metric

import (
	"slices"
	"strconv"
	"testing"
)

func TestCappedLoopCounterVecCap(t *testing.T) {
	const limit = 3
	r := NewRegistry()
	v := r.NewCappedLoopCounterVec("appends_total", "", "tenant", limit)

	for i := range limit {
		v.With("t" + strconv.Itoa(i)).Add(uint64(i + 1))
	}
	if got := v.Len(); got != limit {
		t.Fatalf("Len() = %d, want %d", got, limit)
	}
	v.PublishDirty()
	assertSeries(t, r, "appends_total", map[string]float64{"t0": 1, "t1": 2, "t2": 3})

	// Every new value beyond the cap shares the overflow child.
	over := v.With("t3")
	if v.With("t4") != over || v.With(OverflowLabelValue) != over {
		t.Fatal("values beyond the cap do not share one overflow child")
	}
	if v.With("t1") == over {
		t.Fatal("an admitted value maps to overflow")
	}
	over.Add(10)
	v.With("t1").Inc()
	if got := v.Len(); got != limit {
		t.Fatalf("Len() = %d after overflow, want %d", got, limit)
	}
	v.PublishDirty()
	assertSeries(t, r, "appends_total", map[string]float64{"t0": 1, "t1": 3, "t2": 3, OverflowLabelValue: 10})
}

func TestCappedLoopCounterVecOverflowValueBeforeCap(t *testing.T) {
	r := NewRegistry()
	v := r.NewCappedLoopCounterVec("c", "", "tenant", 2)
	v.With(OverflowLabelValue).Inc()
	v.With("a").Inc()
	v.PublishDirty()
	if got := v.Len(); got != 1 {
		t.Errorf("Len() = %d, want 1: the overflow value must not use up the cap", got)
	}
	assertSeries(t, r, "c", map[string]float64{"a": 1, OverflowLabelValue: 1})
}

func TestCappedLoopCounterVecZeroCap(t *testing.T) {
	r := NewRegistry()
	v := r.NewCappedLoopCounterVec("c", "", "tenant", 0)
	assertSeries(t, r, "c", map[string]float64{})
	v.With("a").Inc()
	v.With("b").Inc()
	v.PublishDirty()
	if got := v.Len(); got != 0 {
		t.Errorf("Len() = %d, want 0", got)
	}
	assertSeries(t, r, "c", map[string]float64{OverflowLabelValue: 2})
}

func TestCappedLoopCounterVecPublishDirtyOnlyTouched(t *testing.T) {
	const tenants = 1000
	v := NewRegistry().NewCappedLoopCounterVec("c", "", "tenant", tenants)
	children := make([]*LoopCounter, tenants)
	for i := range children {
		children[i] = v.With(strconv.Itoa(i))
	}
	if len(v.dirty) != 0 {
		t.Fatalf("%d children dirty before any add", len(v.dirty))
	}
	for _, i := range []int{7, 500, 7, 999} {
		children[i].Inc()
	}
	if len(v.dirty) != 3 {
		t.Fatalf("dirty list has %d children, want the 3 touched", len(v.dirty))
	}
	v.PublishDirty()
	if len(v.dirty) != 0 {
		t.Fatalf("dirty list has %d children after PublishDirty, want 0", len(v.dirty))
	}
	for i, c := range children {
		want := map[int]uint64{7: 2, 500: 1, 999: 1}[i]
		if got := c.Value(); got != want {
			t.Errorf("child %d Value() = %d, want %d", i, got, want)
		}
	}
	// A child touched again after publishing is queued again.
	children[500].Add(4)
	v.PublishDirty()
	if got := children[500].Value(); got != 5 {
		t.Errorf("child 500 Value() = %d after second tick, want 5", got)
	}
}

func TestCappedLoopCounterVecInvalid(t *testing.T) {
	r := NewRegistry()
	t.Run("negative cap", func(t *testing.T) {
		defer wantPanic(t)
		r.NewCappedLoopCounterVec("c", "", "tenant", -1)
	})
	t.Run("invalid UTF-8", func(t *testing.T) {
		v := r.NewCappedLoopCounterVec("d", "", "tenant", 1)
		defer wantPanic(t)
		v.With("\xff")
	})
}

// assertSeries checks that family name has exactly the given series, keyed
// by their single label value, in label-value order.
func assertSeries(t *testing.T, r *Registry, name string, want map[string]float64) {
	t.Helper()
	f := findFamily(t, r, name)
	got := make(map[string]float64, len(f.Series))
	var order []string
	for _, s := range f.Series {
		got[s.LabelValues[0]] = s.Value
		order = append(order, s.LabelValues[0])
	}
	if !slices.IsSorted(order) {
		t.Errorf("%s: series not sorted by label value: %q", name, order)
	}
	if len(got) != len(want) {
		t.Errorf("%s: got series %v, want %v", name, got, want)
		return
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s: got series %v, want %v", name, got, want)
			return
		}
	}
}

func findFamily(t *testing.T, r *Registry, name string) Family {
	t.Helper()
	for _, f := range r.Gather() {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("family %s not gathered", name)
	return Family{}
}
