package metric

import "sync/atomic"

// Counter is a monotonically increasing count that any goroutine may add to.
//
// It is sharded per P: each shard is one word alone in its own 128-byte
// block, and Add atomically updates the shard of the P the caller runs on,
// so writers on different CPUs do not contend for a cache line. Value sums
// the shards.
//
// Create Counters with Registry.NewCounter or CounterVec.With.
type Counter struct {
	// cells holds one block per shard; shard s counts in cells[s*blockWords].
	cells []atomic.Uint64
	mask  int
}

func newCounter() *Counter {
	shards := shardCount()
	// Every Add reads the Counter itself, so it is isolated too: an object
	// that another CPU writes sharing its cache line would make those reads
	// miss, which costs as much as the contention sharding avoids.
	c := newIsolated[Counter]()
	c.cells = isolatedSlice[atomic.Uint64](shards * blockWords)
	c.mask = shards - 1
	return c
}

// Add increases the counter by n.
func (c *Counter) Add(n uint64) {
	c.cells[shard(c.mask)*blockWords].Add(n)
}

// Inc increases the counter by one.
func (c *Counter) Inc() {
	c.cells[shard(c.mask)*blockWords].Add(1)
}

// Value returns the current count. Adds that complete before Value is called
// are included; adds racing with it may or may not be.
func (c *Counter) Value() uint64 {
	var sum uint64
	for i := 0; i < len(c.cells); i += blockWords {
		sum += c.cells[i].Load()
	}
	return sum
}
