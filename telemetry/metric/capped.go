package metric

import (
	"fmt"
	"unicode/utf8"
)

// OverflowLabelValue is the label value of the series that a
// CappedLoopCounterVec counts every value beyond its cap into.
const OverflowLabelValue = "_overflow"

// loopChunk is how many CappedLoopCounterVec children are allocated at
// once. Children of one vec share an owner, so packing them together costs
// no false sharing and makes PublishDirty's walk cache-friendly.
const loopChunk = 16

// CappedLoopCounterVec is a family of LoopCounters with one label whose
// number of distinct values is capped, for labels such as tenants whose
// cardinality clients control. The first cap distinct values each get a
// series; every later new value is counted in one overflow series labelled
// OverflowLabelValue, which exists only once something overflowed. A value
// equal to OverflowLabelValue is always counted as overflow.
//
// All children belong to one owning goroutine, typically an event loop:
// only it may call Add or Inc on them, and it calls PublishDirty once per
// loop iteration or tick to publish the children touched since the last
// call. With itself is safe from any goroutine.
type CappedLoopCounterVec struct {
	name  string
	limit int
	children[LoopCounter]
	admitted int           // guarded by mu: distinct values with their own series
	spare    []LoopCounter // guarded by mu: allocated, not yet handed out

	// dirty lists the children added to since the last PublishDirty. Only
	// the owner touches it: children append themselves in Add.
	dirty []*LoopCounter
}

// NewCappedLoopCounterVec registers and returns a capped family of
// LoopCounters labelled by labelName, admitting at most limit distinct
// values. limit must not be negative; with a limit of zero every value is
// overflow.
func (r *Registry) NewCappedLoopCounterVec(name, help, labelName string, limit int) *CappedLoopCounterVec {
	if limit < 0 {
		panic(fmt.Sprintf("metric: %s: negative cap %d", name, limit))
	}
	v := &CappedLoopCounterVec{name: name, limit: limit}
	r.register(&family{name: name, help: help, kind: KindCounter, labelNames: []string{labelName},
		collect: func() []Series {
			cs := v.gatherable()
			series := make([]Series, len(cs))
			for i, c := range cs {
				series[i] = Series{LabelValues: c.labelValues, Value: float64(c.metric.Value())}
			}
			return series
		}})
	return v
}

// With returns the child for value, creating it on first use, or the
// overflow child once cap distinct values have been admitted. It panics if
// value is not valid UTF-8. Only the vec's owner may record into the child.
//
// With is the slow path (a lock and a map lookup): resolve each child once
// and keep the *LoopCounter rather than calling With per event.
func (v *CappedLoopCounterVec) With(value string) *LoopCounter {
	if c := v.lookupString(value); c != nil {
		return c
	}
	if !utf8.ValidString(value) {
		panic(fmt.Sprintf("metric: %s: label value %q is not valid UTF-8", v.name, value))
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.byKey[value]; c != nil { // created since lookup
		return c.metric
	}
	if value == OverflowLabelValue || v.admitted >= v.limit {
		if c := v.byKey[OverflowLabelValue]; c != nil {
			return c.metric
		}
		c := v.newChildLocked()
		v.insertLocked(OverflowLabelValue, []string{OverflowLabelValue}, c)
		return c
	}
	c := v.newChildLocked()
	v.insertLocked(value, []string{value}, c)
	v.admitted++
	return c
}

// newChildLocked hands out the next preallocated child. v.mu must be held.
func (v *CappedLoopCounterVec) newChildLocked() *LoopCounter {
	if len(v.spare) == 0 {
		v.spare = newIsolated[[loopChunk]LoopCounter]()[:]
	}
	c := &v.spare[0]
	v.spare = v.spare[1:]
	c.vec = v
	return c
}

// Len returns the number of distinct values admitted with their own
// series, not counting the overflow series. It never exceeds the cap.
func (v *CappedLoopCounterVec) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.admitted
}

// PublishDirty publishes every child added to since the last call, like
// calling Publish on each, at a cost proportional to the number of children
// touched rather than the number that exist. Only the owner may call it.
func (v *CappedLoopCounterVec) PublishDirty() {
	for _, c := range v.dirty {
		c.Publish()
		c.queued = false
	}
	v.dirty = v.dirty[:0]
}
