package log

import (
	"time"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// Metrics are the log's instruments. Every field may be nil, and so may
// the *Metrics given to Open.
//
// They are loop-owned metrics: only the log's writer goroutine (the one
// calling Append, Sync, TruncateAfter and Close) records into them, and the
// log publishes them at the end of each Sync, so that they need no other
// owner. The size of the log is not here because it must be read at scrape
// time: register a gauge function over Log.SizeBytes.
type Metrics struct {
	Entries        *metric.LoopCounter   // entries appended (kmb_log_entries_total)
	Bytes          *metric.LoopCounter   // record bytes appended including framing (kmb_log_bytes_total)
	FsyncDuration  *metric.LoopHistogram // each fsync of a segment or of the directory (kmb_log_fsync_duration_seconds)
	SegmentsRolled *metric.LoopCounter   // segments started by rolling (kmb_log_segments_rolled_total)
}

// NewMetrics registers the log's metrics in r under their kmb_log_* names.
func NewMetrics(r *metric.Registry) *Metrics {
	return &Metrics{
		Entries: r.NewLoopCounter("kmb_log_entries_total",
			"Entries appended to the log."),
		Bytes: r.NewLoopCounter("kmb_log_bytes_total",
			"Bytes of records appended to the log, including framing."),
		FsyncDuration: r.NewLoopHistogram("kmb_log_fsync_duration_seconds",
			"Duration of each fsync of a log segment or of the log directory.",
			metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}),
		SegmentsRolled: r.NewLoopCounter("kmb_log_segments_rolled_total",
			"Log segments started because the active one reached segment_size_bytes."),
	}
}

// The helpers below keep nil checks out of the log's logic.

func (m *Metrics) appended(entries, bytes int) {
	if m == nil {
		return
	}
	if m.Entries != nil {
		m.Entries.Add(uint64(entries))
	}
	if m.Bytes != nil {
		m.Bytes.Add(uint64(bytes))
	}
}

func (m *Metrics) fsynced(d time.Duration) {
	if m != nil && m.FsyncDuration != nil {
		m.FsyncDuration.ObserveDuration(d)
	}
}

func (m *Metrics) rolled() {
	if m != nil && m.SegmentsRolled != nil {
		m.SegmentsRolled.Inc()
	}
}

func (m *Metrics) publish() {
	if m == nil {
		return
	}
	for _, c := range [...]*metric.LoopCounter{m.Entries, m.Bytes, m.SegmentsRolled} {
		if c != nil {
			c.Publish()
		}
	}
	if m.FsyncDuration != nil {
		m.FsyncDuration.Publish()
	}
}
