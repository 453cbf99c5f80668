package metric

import (
	"sync/atomic"
	"time"
)

// Histogram counts observations into buckets and keeps their sum; any
// goroutine may record.
//
// Like Counter it is sharded per P. Each shard holds the raw sum and one
// count per bucket, padded to whole 128-byte blocks, so an observation is a
// table-driven bucket search and two atomic adds on memory that normally no
// other CPU is writing.
//
// Create Histograms with Registry.NewHistogram or HistogramVec.With.
type Histogram struct {
	search bucketSearch // copy of layout.search, saving an indirection per Observe
	// cells holds shard s in cells[s*stride:]: sumCell, then the bucket
	// counts from firstCount on.
	cells  []atomic.Uint64
	stride int
	mask   int
	layout *bucketLayout
	// exemplars holds the latest exemplar of each bucket (+Inf last); nil
	// pointers until a traced observation lands there.
	exemplars []atomic.Pointer[Exemplar]
}

func newHistogram(l *bucketLayout) *Histogram {
	shards := shardCount()
	stride := roundUp(l.cellsPerShard(), blockWords)
	h := newIsolated[Histogram]() // read by every Observe; see newCounter
	*h = Histogram{
		search: l.search,
		cells:  isolatedSlice[atomic.Uint64](shards * stride),
		stride: stride,
		mask:   shards - 1,
		layout: l,

		exemplars: make([]atomic.Pointer[Exemplar], len(l.bounds)+1),
	}
	return h
}

// Observe records v, in raw units (exported as v * Scale).
func (h *Histogram) Observe(v int64) {
	base := shard(h.mask) * h.stride
	i := h.search.index(v)
	h.cells[base+firstCount+i].Add(1)
	h.cells[base+sumCell].Add(uint64(v))
}

// ObserveDuration records d in nanoseconds. It is meant for histograms with
// Scale 1e-9, which export seconds.
func (h *Histogram) ObserveDuration(d time.Duration) {
	h.Observe(int64(d))
}

// Snapshot returns the histogram's current state in exported units.
func (h *Histogram) Snapshot() HistogramSnapshot {
	return h.snapshotInto(make([]uint64, len(h.layout.bounds)))
}

func (h *Histogram) snapshotInto(counts []uint64) HistogramSnapshot {
	s := h.layout.snapshot(h.cells, h.stride, counts)
	for i := range h.exemplars {
		if e := h.exemplars[i].Load(); e != nil {
			s.Exemplars = append(s.Exemplars, *e)
		}
	}
	return s
}

// ObserveDurationWithExemplar records d like ObserveDuration and, when
// traceID is not empty, keeps it as the exemplar of d's bucket so a
// dashboard can jump from the bucket to the trace. Only traced operations
// pay for the exemplar (one small allocation); the observation itself stays
// lock-free.
func (h *Histogram) ObserveDurationWithExemplar(d time.Duration, traceID string) {
	h.Observe(int64(d))
	if traceID == "" {
		return
	}
	i := h.search.index(int64(d))
	h.exemplars[i].Store(&Exemplar{Value: float64(d) * h.layout.scale, TraceID: traceID, Time: time.Now()})
}
