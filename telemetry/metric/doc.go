// Package metric provides the metric primitives kmbd records on its hot
// paths: counters, gauges and histograms that cost a few nanoseconds, never
// allocate and never lock while recording.
//
// # Model
//
// A Registry holds metric families, each a name, a help text, a Kind and
// zero or more label names. There is no default registry: every component
// receives the Registry it records into. Registration is a slow path that
// validates names and panics on misuse (invalid or duplicate names are
// programming errors, like a nil map write). Gather reads every family,
// sorted by name, for the exporter and for tests.
//
// Primitives come in three flavours, chosen by who writes them:
//
//   - Multi-writer (Counter, Histogram, Gauge): any goroutine may record.
//     Counter and Histogram are sharded per P (the scheduler's processor,
//     whose id the runtime's procPin reports): each shard sits alone in its
//     own 128-byte block, and a writer atomically updates the shard of the
//     P it runs on, so concurrent writers on different CPUs do not bounce a
//     cache line between them. Readers sum the shards. Gauge is a single
//     atomic word because Set cannot be sharded.
//
//   - Loop-owned (LoopCounter, LoopHistogram, CappedLoopCounterVec): exactly
//     one goroutine, typically a replica's event loop, records. On amd64
//     every sync/atomic write is a LOCKed instruction, so the owner records
//     with plain adds into memory only it touches, and calls Publish once per
//     loop iteration or tick to copy those values into atomics that readers
//     load. Readers therefore see values as of the last Publish. Calling
//     Add, Observe or Publish from any other goroutine is a data race.
//
//   - Function-backed (NewGaugeFunc, NewCounterFunc, NewGaugeVecFunc): the
//     value is computed by a callback at Gather time, for state that already
//     lives elsewhere.
//
// # Units
//
// Histograms record raw integers (nanoseconds, bytes, counts) and convert
// to exported units only when gathered: exported = raw * Scale. Bucket
// bounds are given in exported units (seconds for durations) and are
// converted once, at registration, to integer bounds, so recording does
// integer comparisons and an integer sum. Buckets follow Prometheus "le"
// semantics: an observation equal to a bound lands in that bound's bucket.
//
// # Labels
//
// CounterVec and HistogramVec resolve a child for a combination of label
// values with With, under a lock and a map lookup: that is the slow path.
// Resolve children once and keep them; recording into a child is as cheap
// as recording into an unlabelled metric. CappedLoopCounterVec bounds the
// number of distinct values of its one label (tenants, for example) and
// folds the rest into a single OverflowLabelValue series.
package metric
