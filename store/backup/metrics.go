package backup

import (
	"context"
	"strings"
	"time"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// TaskName is the task label of the continuous log backup's series.
const TaskName = "log"

// Task states, the values of kmb_backup_task_state's state label.
const (
	StateRunning = "running" // shipping committed ops and advancing the checkpoint
	StatePaused  = "paused"  // an operator paused it (kmbd backup pause)
	StateError   = "error"   // a fatal error stopped it; it retries slowly
	StateStandby = "standby" // this node does not lead: another one runs the task
)

// States lists the task states.
var States = []string{StateRunning, StatePaused, StateError, StateStandby}

// Error classes, the class label of kmb_backup_errors_total.
const (
	ClassRetryable = "retryable"
	ClassFatal     = "fatal"
)

// Storage operations, the operation label of
// kmb_backup_storage_operation_duration_seconds.
const (
	OpSegment    = "segment"    // writing a segment object
	OpManifest   = "manifest"   // writing the manifest
	OpCheckpoint = "checkpoint" // advancing the checkpoint time while idle
	OpRead       = "read"       // reading or listing objects
	OpSnapshot   = "snapshot"   // writing a snapshot part
	OpDelete     = "delete"     // retention deleting an object
)

var durationOpts = metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}

// Families a node and a one-shot command both export.
const (
	verifyRunsName     = "kmb_backup_verify_runs_total"
	verifyRunsHelp     = "Repository verify runs, by result: ok, corrupt (problems found) or error (could not finish)."
	verifyCorruptName  = "kmb_backup_verify_corrupt_objects"
	verifyCorruptHelp  = "Objects the last verify run found missing, corrupt or inconsistent (the manifest counts as one); 0 after a clean run."
	verifySuccessName  = "kmb_backup_last_verify_success_timestamp_seconds"
	verifySuccessHelp  = "When the last verify run found no problem, from the manifest; 0 for never."
	snapStartedName    = "kmb_snapshot_started_total"
	snapStartedHelp    = "Snapshots started."
	snapCompletedName  = "kmb_snapshot_completed_total"
	snapCompletedHelp  = "Snapshots finished, by result: success or failure."
	snapDurationName   = "kmb_snapshot_duration_seconds"
	snapDurationHelp   = "Duration of snapshots, by result."
	snapSuccessName    = "kmb_snapshot_last_success_timestamp_seconds"
	snapSuccessHelp    = "When the last snapshot succeeded, from the manifest (so it survives restarts); 0 for never."
	snapInProgressName = "kmb_snapshot_in_progress"
	snapInProgressHelp = "1 while a snapshot runs on this node."
)

var snapDurationOpts = metric.HistogramOpts{Buckets: []float64{0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 4 * 3600}, Scale: 1e-9}

// RecordVerify registers on reg the outcome of one verify run, for a
// one-shot command to push: the run counter by result, the corrupt object
// count, and, after a clean run only, the success time, so that a failed
// run pushed with push-add never replaces an earlier success.
func RecordVerify(reg *metric.Registry, rep *Report, err error, success time.Time) {
	runs := reg.NewCounterVec(verifyRunsName, verifyRunsHelp, "result")
	switch {
	case err != nil:
		runs.With("error").Inc()
	case !rep.OK():
		runs.With("corrupt").Inc()
		reg.NewGauge(verifyCorruptName, verifyCorruptHelp).Set(int64(len(rep.Problems)))
	default:
		runs.With("ok").Inc()
		reg.NewGauge(verifyCorruptName, verifyCorruptHelp)
		reg.NewGaugeFunc(verifySuccessName, verifySuccessHelp, func() float64 { return float64(success.UnixNano()) / 1e9 })
	}
}

// RecordSnapshot registers on reg the outcome of one snapshot, for a
// one-shot command to push, on the same terms as RecordVerify.
func RecordSnapshot(reg *metric.Registry, res SnapshotResult, err error, success time.Time) {
	reg.NewCounter(snapStartedName, snapStartedHelp).Inc()
	reg.NewGauge(snapInProgressName, snapInProgressHelp)
	result := "success"
	if err != nil {
		result = "failure"
	}
	reg.NewCounterVec(snapCompletedName, snapCompletedHelp, "result").With(result).Inc()
	reg.NewHistogramVec(snapDurationName, snapDurationHelp, snapDurationOpts, "result").With(result).ObserveDuration(res.Duration)
	if err == nil {
		reg.NewGaugeFunc(snapSuccessName, snapSuccessHelp, func() float64 { return float64(success.UnixNano()) / 1e9 })
	}
}

// taskMetrics are the continuous task's counters and histograms; its
// gauges are functions of its status, read at scrape time.
type taskMetrics struct {
	entries, bytes, stored, segments *metric.Counter
	errors                           *metric.CounterVec
	retries                          *metric.CounterVec
	storage                          *metric.HistogramVec
	backend                          string

	snapStarted    *metric.Counter
	snapCompleted  *metric.CounterVec
	snapSkipped    *metric.Counter
	snapInProgress *metric.Gauge
	snapDuration   *metric.HistogramVec

	verifyRuns    *metric.CounterVec
	verifyCorrupt *metric.Gauge

	retentionDeleted *metric.CounterVec
}

func newTaskMetrics(r *metric.Registry, backend string) *taskMetrics {
	m := &taskMetrics{
		entries:  r.NewCounterVec("kmb_backup_entries_total", "Log entries the continuous backup task stored in the repository.", "task").With(TaskName),
		bytes:    r.NewCounterVec("kmb_backup_bytes_total", "Raw bytes (records as in the log) the continuous backup task stored.", "task").With(TaskName),
		stored:   r.NewCounterVec("kmb_backup_stored_bytes_total", "Bytes written to the repository for segment objects, after compression.", "task").With(TaskName),
		segments: r.NewCounterVec("kmb_backup_segments_total", "Segment objects the continuous backup task wrote.", "task").With(TaskName),
		errors: r.NewCounterVec("kmb_backup_errors_total",
			"Backup errors by operation (flush, checkpoint, open, snapshot, verify, retention), class (retryable: retried with backoff; fatal: the task moves to error) and reason.",
			"operation", "class", "reason"),
		retries: r.NewCounterVec("kmb_backup_retries_total", "Backup operations retried after a retryable error, by operation and reason.", "operation", "reason"),
		storage: r.NewHistogramVec("kmb_backup_storage_operation_duration_seconds",
			"Duration of repository operations by backend (file, s3) and operation (segment, manifest, checkpoint, read, snapshot, delete).",
			durationOpts, "backend", "operation"),
		backend: backend,

		snapStarted:    r.NewCounter(snapStartedName, snapStartedHelp),
		snapCompleted:  r.NewCounterVec(snapCompletedName, snapCompletedHelp, "result"),
		snapSkipped:    r.NewCounterVec("kmb_snapshot_skipped_total", "Scheduled snapshots skipped, by reason (previous_running: the previous one still ran).", "reason").With("previous_running"),
		snapInProgress: r.NewGauge(snapInProgressName, snapInProgressHelp),
		snapDuration:   r.NewHistogramVec(snapDurationName, snapDurationHelp, snapDurationOpts, "result"),

		verifyRuns:    r.NewCounterVec(verifyRunsName, verifyRunsHelp, "result"),
		verifyCorrupt: r.NewGauge(verifyCorruptName, verifyCorruptHelp),

		retentionDeleted: r.NewCounterVec("kmb_backup_retention_deleted_total", "Snapshots and segments retention removed, by kind.", "kind"),
	}
	for _, res := range []string{"success", "failure"} {
		m.snapCompleted.With(res)
		m.snapDuration.With(res)
	}
	for _, res := range []string{"ok", "corrupt", "error"} {
		m.verifyRuns.With(res)
	}
	// The errors an operator most needs to see start at 0 rather than
	// appear on first occurrence, so rate() and increase() see them.
	for _, op := range []string{"open", "flush", "checkpoint", "snapshot", "verify", "retention"} {
		m.errors.With(op, ClassRetryable, "storage")
		m.retries.With(op, "storage")
	}
	m.errors.With("flush", ClassFatal, "log_read")
	m.errors.With("open", ClassFatal, "corrupt_manifest")
	m.retentionDeleted.With("snapshot")
	m.retentionDeleted.With("segment")
	for _, op := range []string{OpSegment, OpManifest, OpCheckpoint, OpRead} {
		m.storage.With(backend, op)
	}
	return m
}

func (m *taskMetrics) observe(op string, d time.Duration) {
	m.storage.With(m.backend, op).ObserveDuration(d)
}

// timedBackend records each call's duration under its operation.
type timedBackend struct {
	Backend
	observe func(op string, d time.Duration)
}

func (b timedBackend) Put(ctx context.Context, key string, data []byte) error {
	start := time.Now()
	err := b.Backend.Put(ctx, key, data)
	op := OpSegment
	switch {
	case key == ManifestKey:
		op = OpManifest
	case strings.HasPrefix(key, snapshotsPrefix):
		op = OpSnapshot
	}
	b.observe(op, time.Since(start))
	return err
}

func (b timedBackend) Swap(ctx context.Context, key string, old, data []byte) error {
	start := time.Now()
	err := b.Backend.Swap(ctx, key, old, data)
	b.observe(OpManifest, time.Since(start))
	return err
}

func (b timedBackend) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	data, err := b.Backend.Get(ctx, key)
	b.observe(OpRead, time.Since(start))
	return data, err
}

func (b timedBackend) List(ctx context.Context, prefix string) ([]string, error) {
	start := time.Now()
	keys, err := b.Backend.List(ctx, prefix)
	b.observe(OpRead, time.Since(start))
	return keys, err
}

func (b timedBackend) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := b.Backend.Delete(ctx, key)
	b.observe(OpDelete, time.Since(start))
	return err
}

// RestoreMetrics are the families of a restore run, for the restore
// command to register (and push).
type RestoreMetrics struct {
	InProgress *metric.Gauge
	Entries    *metric.Counter
	Duration   *metric.HistogramVec

	target, applied *metric.Gauge
}

// NewRestoreMetrics registers the kmb_restore_* families on r.
func NewRestoreMetrics(r *metric.Registry) *RestoreMetrics {
	m := &RestoreMetrics{
		InProgress: r.NewGauge("kmb_restore_in_progress", "1 while a restore runs."),
		Entries:    r.NewCounter("kmb_restore_entries_total", "Entries a restore wrote to the new data dir."),
		Duration:   r.NewHistogramVec("kmb_restore_duration_seconds", "Duration of restores, by result: success or failure.", metric.HistogramOpts{Buckets: []float64{0.1, 1, 10, 60, 300, 1800, 3600, 4 * 3600}, Scale: 1e-9}, "result"),
		target:     r.NewGauge("kmb_restore_target_position", "The last position the running restore will write (an upper bound for a time target)."),
		applied:    r.NewGauge("kmb_restore_applied_position", "The last position the running restore wrote."),
	}
	r.NewGaugeFunc("kmb_restore_progress_ratio", "Progress of the running restore, 0..1.", func() float64 {
		t, a := m.target.Value(), m.applied.Value()
		if t <= 0 {
			if m.InProgress.Value() == 0 && a > 0 {
				return 1
			}
			return 0
		}
		return min(1, float64(a)/float64(t))
	})
	m.Duration.With("success")
	m.Duration.With("failure")
	return m
}

// Progress is a Restore progress callback that updates the gauges.
func (m *RestoreMetrics) Progress(done, total uint64) {
	m.target.Set(int64(total))
	m.applied.Set(int64(done))
}
