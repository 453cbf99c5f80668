package metric

import "sync/atomic"

// LoopCounter is a counter owned by a single goroutine, typically an event
// loop. Only the owner may call Add, Inc and Publish; any goroutine may call
// Value.
//
// Add is a plain, non-atomic add into the owner's running total, which
// costs about as much as incrementing a local variable. Readers never look at
// that total: they read the value the owner last copied out with Publish, an
// atomic word that only Publish writes. The owner calls Publish once per loop
// iteration or tick, so readers lag by at most one tick.
//
// Create LoopCounters with Registry.NewLoopCounter or
// CappedLoopCounterVec.With.
type LoopCounter struct {
	total     uint64        // owner only: every Add so far
	published atomic.Uint64 // total as of the last Publish; what readers see

	// queued is true while the counter is on its vec's dirty list, so that
	// Add pays for a single predictable branch rather than a list update.
	// Standalone counters are born queued and stay so: they are published
	// explicitly and have no list.
	queued bool                  // owner only
	vec    *CappedLoopCounterVec // nil for standalone counters
}

func newLoopCounter() *LoopCounter {
	c := newIsolated[LoopCounter]()
	c.queued = true
	return c
}

// Add increases the counter by n. Only the owning goroutine may call it.
func (c *LoopCounter) Add(n uint64) {
	c.total += n
	if !c.queued {
		c.enqueue()
	}
}

// Inc increases the counter by one. Only the owning goroutine may call it.
func (c *LoopCounter) Inc() {
	c.Add(1)
}

// enqueue puts a vec child on its vec's dirty list the first time it is
// touched after a PublishDirty. It is kept out of line so Add stays small
// enough to inline.
//
//go:noinline
func (c *LoopCounter) enqueue() {
	c.queued = true
	if c.vec != nil {
		c.vec.dirty = append(c.vec.dirty, c)
	}
}

// Publish makes the counts added so far visible to Value and Gather. Only
// the owning goroutine may call it.
func (c *LoopCounter) Publish() {
	// Skipping unchanged counters saves a LOCKed store and keeps the cache
	// line shared with readers.
	if c.published.Load() != c.total {
		c.published.Store(c.total)
	}
}

// Total returns the owner's running total, published or not. Only the
// owning goroutine may call it.
func (c *LoopCounter) Total() uint64 { return c.total }

// Value returns the count as of the last Publish.
func (c *LoopCounter) Value() uint64 {
	return c.published.Load()
}
