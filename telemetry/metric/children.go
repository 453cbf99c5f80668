package metric

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"
)

// child is one labelled member of a vec.
type child[T any] struct {
	labelValues []string // immutable; handed out by Gather
	metric      *T
}

// children is the concurrent index of a vec's children: a map for With and
// a sorted list for Gather.
//
// The sorted list is rebuilt only when children were added since the last
// Gather, and rebuilt into a new slice, so a Gather can walk the list it got
// without holding the lock while other goroutines add children.
type children[T any] struct {
	mu     sync.RWMutex
	byKey  map[string]*child[T]
	sorted []*child[T] // immutable once published by gatherable
	added  []*child[T] // added since sorted was built, in arrival order
}

// lookup returns the child stored under key, or nil.
func (cs *children[T]) lookup(key []byte) *T {
	cs.mu.RLock()
	c := cs.byKey[string(key)] // converted without allocating: map index
	cs.mu.RUnlock()
	if c == nil {
		return nil
	}
	return c.metric
}

// lookupString is lookup for a key already held as a string.
func (cs *children[T]) lookupString(key string) *T {
	cs.mu.RLock()
	c := cs.byKey[key]
	cs.mu.RUnlock()
	if c == nil {
		return nil
	}
	return c.metric
}

// insertLocked stores a new child under key. cs.mu must be held for
// writing and key must be absent.
func (cs *children[T]) insertLocked(key string, labelValues []string, m *T) {
	if cs.byKey == nil {
		cs.byKey = make(map[string]*child[T])
	}
	c := &child[T]{labelValues: labelValues, metric: m}
	cs.byKey[key] = c
	cs.added = append(cs.added, c)
}

// gatherable returns every child sorted by label values. The returned slice
// is never modified afterwards.
func (cs *children[T]) gatherable() []*child[T] {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.added) > 0 {
		merged := make([]*child[T], 0, len(cs.sorted)+len(cs.added))
		merged = append(append(merged, cs.sorted...), cs.added...)
		slices.SortFunc(merged, func(a, b *child[T]) int {
			return slices.Compare(a.labelValues, b.labelValues)
		})
		cs.sorted = merged
		cs.added = cs.added[:0]
	}
	return cs.sorted
}

// appendKey appends an unambiguous encoding of labelValues to dst: each
// value is preceded by its length, so no choice of values can make two
// different combinations collide.
func appendKey(dst []byte, labelValues []string) []byte {
	for _, v := range labelValues {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// checkLabelValues panics unless labelValues has one valid UTF-8 value per
// label name.
func checkLabelValues(name string, labelNames, labelValues []string) {
	if len(labelValues) != len(labelNames) {
		panic(fmt.Sprintf("metric: %s: got %d label values for %d label names %q", name, len(labelValues), len(labelNames), labelNames))
	}
	for _, v := range labelValues {
		if !utf8.ValidString(v) {
			panic(fmt.Sprintf("metric: %s: label value %q is not valid UTF-8", name, v))
		}
	}
}
