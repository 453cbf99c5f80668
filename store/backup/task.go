package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmb-db/kmb/status"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
	"github.com/kmb-db/kmb/telemetry/spans"
	"go.opentelemetry.io/otel/codes"
)

// Source is the node a Task backs up.
type Source interface {
	// BackupRole reports whether this node should run the task (it
	// leads a view in normal operation) and how far its committed,
	// applied log reaches.
	BackupRole() (lead bool, op, position uint64)
	// ReadFrames reads committed ops from, from+1, ... up to last from
	// the local log as it stores them, at least one and about maxBytes,
	// into buf (see log.ReadFrames).
	ReadFrames(from, last uint64, maxBytes int, buf []byte) (kmblog.Frames, error)
	// CommitMarker commits an op with no entries through the cluster
	// and returns its number and commit time. Commit times increase
	// strictly along the log, so once the marker is in the repository
	// the checkpoint covers every op committed up to its time. Only a
	// leader a quorum follows can commit one.
	CommitMarker(ctx context.Context) (op uint64, t time.Time, err error)
	// CommitAdmin commits an administrative action as a system op (the
	// task records pauses and resumes with it, for the audit trail).
	CommitAdmin(ctx context.Context, action string, detail any, principal string) (uint64, error)
}

// TaskConfig configures the continuous backup task. Zero values take
// the defaults in brackets.
type TaskConfig struct {
	// FlushInterval is how often committed ops are shipped [1s].
	FlushInterval time.Duration
	// CheckpointInterval is how often the checkpoint time advances
	// while nothing is committed, and how often a paused or standby
	// task rereads the manifest [10s].
	CheckpointInterval time.Duration
	// SegmentBytes bounds a segment object's raw size [16 MiB].
	SegmentBytes int
	// SnapshotInterval is the snapshot schedule; 0 takes none.
	SnapshotInterval time.Duration
	// Retention runs after each snapshot.
	Retention RetentionPolicy
	// VerifyInterval is the verify schedule; 0 runs none.
	VerifyInterval time.Duration
	// RetryMin and RetryMax bound the backoff after errors [1s, 1m].
	RetryMin, RetryMax time.Duration
}

func (c TaskConfig) withDefaults() TaskConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.FlushInterval, time.Second)
	def(&c.CheckpointInterval, 10*time.Second)
	def(&c.RetryMin, time.Second)
	def(&c.RetryMax, time.Minute)
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 16 << 20
	}
	return c
}

// TaskStatus is the task as /status shows it.
type TaskStatus = status.Backup

// Task is the continuous log backup: while its node leads, it ships
// committed ops to the repository as segments and advances the
// checkpoint, also when idle; it takes scheduled snapshots, applies
// retention and verifies. On the other nodes it stands by and keeps its
// gauges (read from the manifest) current, so that any of them can take
// over from the manifest after a failover.
type Task struct {
	cfg     TaskConfig
	url     string
	backend Backend
	src     Source
	logger  *slog.Logger
	tracer  *spans.Tracer
	m       *taskMetrics
	now     func() time.Time

	repo    *Repository // owned by Run
	st      atomic.Pointer[TaskStatus]
	stats   atomic.Pointer[Stats]
	snapRun atomic.Bool
	bg      sync.WaitGroup

	frameBuf            []byte // reused by flush
	lastCheckpointWrite time.Time
	lastSnapshotTick    time.Time
	lastVerifyRun       time.Time
	failures            int
}

// NewTask builds the task for the repository at url on backend. Its
// families are registered on reg.
func NewTask(cfg TaskConfig, url string, backend Backend, src Source, reg *metric.Registry, logger *slog.Logger, tracer *spans.Tracer) *Task {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if tracer == nil {
		tracer = spans.Disabled()
	}
	kind := "file"
	if k, ok := backend.(interface{ Kind() string }); ok {
		kind = k.Kind()
	}
	t := &Task{cfg: cfg.withDefaults(), url: url, src: src, logger: logger, tracer: tracer, now: time.Now}
	t.m = newTaskMetrics(reg, kind)
	t.backend = timedBackend{Backend: backend, observe: t.m.observe}
	t.st.Store(&TaskStatus{State: StateStandby, Repository: url})
	t.stats.Store(&Stats{})
	t.register(reg)
	return t
}

func (t *Task) register(r *metric.Registry) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	r.NewGaugeVecFunc("kmb_backup_task_state", "Continuous backup task state: 1 for the current one (running, paused, error; standby on nodes that do not lead), 0 for the others.",
		[]string{"task", "state"}, func(emit func(float64, ...string)) {
			cur := t.st.Load().State
			for _, s := range States {
				emit(b2f(s == cur), TaskName, s)
			}
		})
	task := func(name, help string, f func(s *Stats) float64) {
		r.NewGaugeVecFunc(name, help, []string{"task"}, func(emit func(float64, ...string)) { emit(f(t.stats.Load()), TaskName) })
	}
	secs := func(tm time.Time) float64 {
		if tm.IsZero() {
			return 0
		}
		return float64(tm.UnixNano()) / 1e9
	}
	task("kmb_backup_checkpoint_position", "Last log position safely in the repository.", func(s *Stats) float64 { return float64(s.Checkpoint.Position) })
	task("kmb_backup_checkpoint_timestamp_seconds", "Commit time the checkpoint covers: every op committed at or before it is in the repository.", func(s *Stats) float64 { return secs(s.Checkpoint.Time()) })
	task("kmb_backup_lag_entries", "Committed log entries not yet in the repository (commit position minus checkpoint position).", func(s *Stats) float64 { return float64(t.lag(s)) })
	gauge := func(name, help string, f func(s *Stats) float64) {
		r.NewGaugeFunc(name, help, func() float64 { return f(t.stats.Load()) })
	}
	gauge(snapSuccessName, snapSuccessHelp, func(s *Stats) float64 { return secs(s.LastSnapshotSuccess) })
	gauge(verifySuccessName, verifySuccessHelp, func(s *Stats) float64 { return secs(s.LastVerifySuccess) })
	gauge("kmb_backup_snapshots", "Snapshots in the repository.", func(s *Stats) float64 { return float64(s.Snapshots) })
	gauge("kmb_backup_repository_size_bytes", "Stored size of the repository's segments and snapshots.", func(s *Stats) float64 { return float64(s.StoredBytes) })
	gauge("kmb_backup_oldest_restorable_timestamp_seconds", "Commit time of the oldest op a restore can reach; 0 when the repository is empty.", func(s *Stats) float64 { return secs(s.OldestRestorable) })
	gauge("kmb_backup_repository_created_timestamp_seconds", "When the repository was initialised.", func(s *Stats) float64 { return secs(s.Created) })
	interval := t.cfg.SnapshotInterval.Seconds()
	r.NewGaugeFunc("kmb_snapshot_interval_seconds", "The snapshot schedule; 0 when none is set.", func() float64 { return interval })
}

// Status returns the task's status.
func (t *Task) Status() TaskStatus {
	s := *t.st.Load()
	s.LagEntries = t.lag(t.stats.Load())
	return s
}

// lag is how many entries this node applied that the checkpoint, as last
// read, does not hold. It is read when asked, so that it counts commits
// made while a flush runs.
func (t *Task) lag(s *Stats) uint64 {
	_, _, pos := t.src.BackupRole()
	if pos > s.Checkpoint.Position {
		return pos - s.Checkpoint.Position
	}
	return 0
}

func (t *Task) setState(state string, lastErr error) {
	s := *t.st.Load()
	prev := s.State
	s.State = state
	s.LastError = ""
	if lastErr != nil {
		s.LastError = lastErr.Error()
	}
	t.st.Store(&s)
	if prev != state {
		t.logger.Info("backup task state changed", slog.String("from", prev), slog.String("to", state), slog.String("repository", t.url))
	}
}

// publish refreshes the gauges and status from the repository's
// manifest as last read or written.
func (t *Task) publish() {
	if t.repo == nil {
		return
	}
	st := t.repo.Stats()
	t.stats.Store(&st)
	s := *t.st.Load()
	s.CheckpointOp, s.CheckpointPosition, s.CheckpointTime = st.Checkpoint.Op, st.Checkpoint.Position, st.Checkpoint.Time()
	s.Snapshots, s.LastSnapshotSuccess, s.LastVerifySuccess = st.Snapshots, st.LastSnapshotSuccess, st.LastVerifySuccess
	s.SnapshotRunning = t.snapRun.Load()
	t.st.Store(&s)
}

// Run runs the task until ctx ends, then waits for a running snapshot or
// verify to stop.
func (t *Task) Run(ctx context.Context) {
	defer t.bg.Wait()
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = t.step(ctx)
	}
}

// step does one round of work and says how long to wait for the next.
func (t *Task) step(ctx context.Context) time.Duration {
	lead, commitOp, _ := t.src.BackupRole()
	if t.repo == nil {
		if err := t.open(ctx, lead); err != nil {
			return t.failed(ctx, "open", err)
		}
	}
	if !lead {
		if t.st.Load().State != StateStandby {
			t.setState(StateStandby, nil)
		}
		if t.repo == nil {
			return min(t.cfg.FlushInterval, 200*time.Millisecond) // the leader creates the repository
		}
		if t.now().Sub(t.lastCheckpointWrite) >= t.cfg.CheckpointInterval {
			if err := t.repo.Reload(ctx); err != nil && !errors.Is(err, ErrNoRepository) {
				t.logger.Warn("backup: cannot reread the manifest", slog.String("error", err.Error()))
			}
			t.lastCheckpointWrite = t.now()
		}
		t.publish()
		return min(t.cfg.FlushInterval, 200*time.Millisecond)
	}
	if st := t.st.Load().State; st == StateStandby || st == StateError {
		// Taking over (or retrying after a fatal error): start from what
		// the repository says.
		if err := t.repo.Reload(ctx); err != nil {
			return t.failed(ctx, "open", err)
		}
		t.setState(StateRunning, nil)
		t.logger.Info("backup task resumed from the manifest", slog.Uint64("checkpoint_op", t.repo.Checkpoint().Op), slog.String("repository", t.url))
	}
	t.logPauseChange(ctx)
	if !t.repo.Stats().Paused.IsZero() {
		if t.st.Load().State != StatePaused {
			t.setState(StatePaused, nil)
		}
		if t.now().Sub(t.lastCheckpointWrite) >= t.cfg.CheckpointInterval {
			if err := t.repo.Reload(ctx); err != nil {
				return t.failed(ctx, "checkpoint", err)
			}
			t.lastCheckpointWrite = t.now()
		}
		t.publish()
		return min(t.cfg.FlushInterval, time.Second)
	}
	if t.st.Load().State == StatePaused {
		t.setState(StateRunning, nil)
	}

	cp := t.repo.Checkpoint()
	switch {
	case cp.Op < commitOp:
		if err := t.flush(ctx, cp, commitOp); err != nil {
			return t.failed(ctx, "flush", err)
		}
		t.failures = 0
		t.publish()
		if t.repo.Checkpoint().Op < commitOp {
			return 0 // more to ship
		}
	case t.now().Sub(t.lastCheckpointWrite) >= t.cfg.CheckpointInterval:
		if err := t.advanceIdle(ctx); err != nil {
			return t.failed(ctx, "checkpoint", err)
		}
		t.failures = 0
	}
	t.schedule(ctx)
	t.publish()
	return t.cfg.FlushInterval
}

func (t *Task) open(ctx context.Context, lead bool) error {
	var r *Repository
	var err error
	if lead {
		r, err = OpenOrInit(ctx, t.backend)
	} else {
		r, err = Open(ctx, t.backend)
		if errors.Is(err, ErrNoRepository) {
			return nil // the leader creates it
		}
	}
	if err != nil {
		return err
	}
	t.repo = r
	t.publish()
	return nil
}

// flush ships committed ops after cp, up to commit, as one segment of
// about SegmentBytes at most (a segment does not span the log's own
// segments). The log's frames are shipped as they are.
func (t *Task) flush(ctx context.Context, cp Checkpoint, commit uint64) error {
	f, err := t.src.ReadFrames(cp.Op+1, commit, t.cfg.SegmentBytes, t.frameBuf)
	if err != nil {
		return &fatalError{reason: "log_read", err: fmt.Errorf("read ops %d..%d from the local log: %w", cp.Op+1, commit, err)}
	}
	t.frameBuf = f.Data[:0]
	ctx, span := t.tracer.StartAlways(ctx, spans.BackupFlush,
		spans.AttrOpNumber.Int64(int64(f.First.Op)), spans.AttrOpNumberLast.Int64(int64(f.Last.Op)))
	defer span.End()
	info, err := t.repo.AppendFrames(ctx, f)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	entries := f.Last.LastPosition() - cp.Position
	t.m.entries.Add(entries)
	t.m.bytes.Add(info.RawBytes)
	t.m.stored.Add(info.StoredBytes)
	t.m.segments.Inc()
	span.SetAttributes(spans.AttrBatchEntries.Int64(int64(entries)), spans.AttrStoredBytes.Int64(int64(info.StoredBytes)))
	t.lastCheckpointWrite = t.now()
	t.logger.Debug("backup segment stored", slog.Uint64("first_op", f.First.Op), slog.Uint64("last_op", f.Last.Op), slog.Uint64("entries", entries))
	return nil
}

// advanceIdle moves the checkpoint time on while nothing is written: it
// commits a marker op through the cluster and ships it, so the
// checkpoint time becomes the marker's commit time. Because the marker
// needs a quorum, a node that only believes it leads (cut off, or
// restarted in an old view) cannot move the checkpoint, and the claim
// depends on no clock but the one that stamped the marker.
func (t *Task) advanceIdle(ctx context.Context) error {
	start := time.Now()
	mctx, cancel := context.WithTimeout(ctx, t.cfg.CheckpointInterval)
	op, _, err := t.src.CommitMarker(mctx)
	cancel()
	if err != nil {
		return err
	}
	t.lastCheckpointWrite = t.now()
	for cp := t.repo.Checkpoint(); cp.Op < op; cp = t.repo.Checkpoint() {
		if err := t.flush(ctx, cp, op); err != nil {
			return err
		}
	}
	t.m.observe(OpCheckpoint, time.Since(start))
	return nil
}

// schedule starts a due snapshot or verify run in the background.
func (t *Task) schedule(ctx context.Context) {
	now := t.now()
	if iv := t.cfg.SnapshotInterval; iv > 0 {
		st := t.repo.Stats()
		last := st.LastSnapshotSuccess
		if last.IsZero() {
			last = st.Created
		}
		due := now.Sub(last) >= iv && now.Sub(t.lastSnapshotTick) >= iv
		if due && st.Checkpoint.Op > 0 {
			t.lastSnapshotTick = now
			if !t.snapRun.CompareAndSwap(false, true) {
				t.m.snapSkipped.Inc()
				t.logger.Warn("scheduled snapshot skipped: the previous one is still running", slog.Duration("interval", iv))
			} else {
				t.m.snapStarted.Inc()
				t.m.snapInProgress.Set(1)
				t.bg.Add(1)
				go func() {
					defer t.bg.Done()
					defer t.snapRun.Store(false)
					defer t.m.snapInProgress.Set(0)
					t.snapshot(ctx)
				}()
			}
		}
	}
	if iv := t.cfg.VerifyInterval; iv > 0 && now.Sub(t.lastVerifyRun) >= iv {
		if last := t.repo.Stats().LastVerifySuccess; now.Sub(last) >= iv {
			t.lastVerifyRun = now
			t.bg.Add(1)
			go func() {
				defer t.bg.Done()
				t.verify(ctx)
			}()
		}
	}
}

// snapshot takes a snapshot and applies retention, recording its
// metrics and span.
func (t *Task) snapshot(ctx context.Context) {
	ctx, span := t.tracer.StartAlways(ctx, spans.Snapshot)
	defer span.End()
	res, err := t.repo.CreateSnapshot(ctx, t.now(), 0, nil)
	result := "success"
	if err != nil {
		result = "failure"
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		t.m.errors.With("snapshot", ClassRetryable, reason(err)).Inc()
		t.logger.Error("snapshot failed", slog.String("error", err.Error()), slog.Duration("duration", res.Duration))
	} else {
		span.SetAttributes(spans.AttrOpNumberLast.Int64(int64(res.Snapshot.Op)), spans.AttrSnapshotCreated.Bool(res.Created))
		t.logger.Info("snapshot done", slog.String("id", res.Snapshot.ID), slog.Uint64("op", res.Snapshot.Op),
			slog.Uint64("position", res.Snapshot.Position), slog.Bool("created", res.Created),
			slog.Uint64("stored_bytes", res.StoredBytes), slog.Duration("duration", res.Duration))
		t.applyRetention(ctx)
	}
	t.m.snapCompleted.With(result).Inc()
	t.m.snapDuration.With(result).ObserveDuration(res.Duration)
}

func (t *Task) applyRetention(ctx context.Context) {
	res, err := t.repo.ApplyRetention(ctx, t.cfg.Retention, t.now())
	if err != nil {
		t.m.errors.With("retention", ClassRetryable, reason(err)).Inc()
		t.logger.Warn("retention failed; the next snapshot retries it", slog.String("error", err.Error()))
	}
	t.m.retentionDeleted.With("snapshot").Add(uint64(res.Snapshots))
	t.m.retentionDeleted.With("segment").Add(uint64(res.Segments))
	if res.Objects > 0 {
		t.logger.Info("retention deleted old backups", slog.Int("snapshots", res.Snapshots), slog.Int("segments", res.Segments), slog.Int("objects", res.Objects))
	}
}

// verify verifies the repository and records the outcome.
func (t *Task) verify(ctx context.Context) {
	ctx, span := t.tracer.StartAlways(ctx, spans.BackupVerify)
	defer span.End()
	rep, err := VerifyBackend(ctx, t.backend)
	switch {
	case err != nil:
		t.m.verifyRuns.With("error").Inc()
		t.m.errors.With("verify", ClassRetryable, reason(err)).Inc()
		span.SetStatus(codes.Error, err.Error())
		t.logger.Warn("backup verify could not finish", slog.String("error", err.Error()))
	case !rep.OK():
		t.m.verifyRuns.With("corrupt").Inc()
		t.m.verifyCorrupt.Set(int64(len(rep.Problems)))
		span.SetStatus(codes.Error, "repository corrupt")
		for _, p := range rep.Problems {
			t.logger.Error("backup repository problem", slog.String("object", p.Object), slog.String("kind", p.Kind), slog.String("detail", p.Detail))
		}
	default:
		t.m.verifyRuns.With("ok").Inc()
		t.m.verifyCorrupt.Set(0)
		if err := t.repo.RecordVerifySuccess(ctx, t.now()); err != nil {
			t.logger.Warn("backup verify passed but could not be recorded", slog.String("error", err.Error()))
		}
	}
}

// fatalError marks an error no retry can mend.
type fatalError struct {
	reason string
	err    error
}

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// reason is an error's reason label: a small fixed set.
func reason(err error) string {
	var fe *fatalError
	switch {
	case errors.As(err, &fe):
		return fe.reason
	case errors.Is(err, ErrConcurrentWriter):
		return "concurrent_writer"
	case errors.Is(err, ErrOverlap):
		return "overlap"
	case errors.Is(err, ErrNotContiguous):
		return "not_contiguous"
	case errors.Is(err, ErrCorruptManifest):
		return "corrupt_manifest"
	case errors.Is(err, ErrCorruptSegment):
		return "corrupt_segment"
	case errors.Is(err, ErrEmptyRepository):
		return "empty"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "storage"
	}
}

// fatal reports whether err cannot be mended by retrying: the local log
// no longer holds ops the repository needs, or the manifest is corrupt.
func fatal(err error) bool {
	var fe *fatalError
	return errors.As(err, &fe) || errors.Is(err, ErrCorruptManifest) || errors.Is(err, ErrGap)
}

// logPauseChange commits the last pause or resume to the cluster's log, as
// an admin op, unless the log holds it already: the leader running the
// task is the one node that sees the change and can commit. A failure is
// tried again next round (a crash in between logs the change twice, with
// the same time).
func (t *Task) logPauseChange(ctx context.Context) {
	c, ok := t.repo.UnloggedPauseChange()
	if !ok {
		return
	}
	action := "backup_resume"
	if c.Paused {
		action = "backup_pause"
	}
	detail := map[string]string{"repository": t.url, "repository_id": t.repo.Stats().RepositoryID, "at": c.At.UTC().Format(time.RFC3339Nano)}
	op, err := t.src.CommitAdmin(ctx, action, detail, "")
	if err == nil {
		err = t.repo.PauseChangeLogged(ctx, c.At)
	}
	if err != nil {
		t.logger.Warn("backup: pause or resume not yet in the log's audit trail; trying again", slog.String("action", action), slog.String("error", err.Error()))
		return
	}
	t.logger.Info("backup "+strings.TrimPrefix(action, "backup_")+" recorded in the log", slog.Uint64("op", op), slog.Time("at", c.At))
}

// failed counts err and says how long to back off. Another writer's
// change or an overlap is mended by rereading the manifest; a fatal
// error moves the task to error, where it retries at the slowest pace.
func (t *Task) failed(ctx context.Context, operation string, err error) time.Duration {
	if ctx.Err() != nil {
		return 0
	}
	r := reason(err)
	if fatal(err) {
		t.m.errors.With(operation, ClassFatal, r).Inc()
		if t.st.Load().State != StateError {
			t.logger.Error("backup task failed; it retries every retry_max until the cause is mended", slog.String("operation", operation),
				slog.String("reason", r), slog.String("error", err.Error()))
		}
		t.setState(StateError, err)
		return t.cfg.RetryMax
	}
	t.m.errors.With(operation, ClassRetryable, r).Inc()
	t.m.retries.With(operation, r).Inc()
	if t.repo != nil && (errors.Is(err, ErrConcurrentWriter) || errors.Is(err, ErrNotContiguous)) {
		if rerr := t.repo.Reload(ctx); rerr == nil {
			t.logger.Info("backup manifest changed by another writer; continuing from it", slog.String("reason", r), slog.Uint64("checkpoint_op", t.repo.Checkpoint().Op))
			return 0
		}
	}
	t.failures++
	d := t.cfg.RetryMin << min(t.failures-1, 16)
	d = min(d, t.cfg.RetryMax)
	d = d/2 + rand.N(d/2+1) // jitter
	t.logger.Warn("backup operation failed; retrying", slog.String("operation", operation), slog.String("reason", r),
		slog.String("error", err.Error()), slog.Duration("backoff", d), slog.Int("attempt", t.failures))
	s := *t.st.Load()
	s.LastError = err.Error()
	t.st.Store(&s)
	return d
}
