package metric

import (
	"sync/atomic"
	"time"
)

// LoopHistogram is a histogram owned by a single goroutine, typically an
// event loop. Only the owner may call Observe, ObserveDuration and Publish;
// any goroutine may call Snapshot.
//
// As with LoopCounter, Observe does plain adds into memory only the owner
// touches, and Publish copies the counts and sum into atomics that Snapshot
// and Gather read. Readers see the histogram as of the last Publish.
//
// Create LoopHistograms with Registry.NewLoopHistogram.
type LoopHistogram struct {
	search bucketSearch // copy of layout.search, saving an indirection per Observe
	// local is the owner's copy, laid out like one shard of a Histogram
	// (sumCell, then counts) and padded to whole blocks so it shares no
	// cache line with other hot data.
	local []uint64
	// published mirrors local as of the last Publish; only Publish writes it.
	published []atomic.Uint64
	layout    *bucketLayout
}

func newLoopHistogram(l *bucketLayout) *LoopHistogram {
	n := l.cellsPerShard()
	h := newIsolated[LoopHistogram]() // read by every Observe; see newCounter
	*h = LoopHistogram{
		search:    l.search,
		local:     isolatedSlice[uint64](roundUp(n, blockWords))[:n],
		published: make([]atomic.Uint64, n),
		layout:    l,
	}
	return h
}

// Observe records v, in raw units (exported as v * Scale). Only the owning
// goroutine may call it.
func (h *LoopHistogram) Observe(v int64) {
	i := h.search.index(v)
	h.local[firstCount+i]++
	h.local[sumCell] += uint64(v)
}

// ObserveDuration records d in nanoseconds. It is meant for histograms with
// Scale 1e-9, which export seconds. Only the owning goroutine may call it.
func (h *LoopHistogram) ObserveDuration(d time.Duration) {
	h.Observe(int64(d))
}

// Publish makes the observations recorded so far visible to Snapshot and
// Gather. Only the owning goroutine may call it.
func (h *LoopHistogram) Publish() {
	pub := h.published[:len(h.local)]
	for i, v := range h.local {
		// Most buckets do not change between ticks; skipping them saves a
		// LOCKed store each.
		if pub[i].Load() != v {
			pub[i].Store(v)
		}
	}
}

// Snapshot returns the histogram as of the last Publish, in exported units.
func (h *LoopHistogram) Snapshot() HistogramSnapshot {
	return h.snapshotInto(make([]uint64, len(h.layout.bounds)))
}

func (h *LoopHistogram) snapshotInto(counts []uint64) HistogramSnapshot {
	return h.layout.snapshot(h.published, len(h.published), counts)
}
