package backup

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
	"github.com/kmb-db/kmb/telemetry/spans"
)

// fakeSource is a node: a committed log it may or may not lead, and the
// commit-time floor CheckpointBound raises.
type fakeSource struct {
	mu     sync.Mutex
	lead   bool
	ops    []*kmblog.Op // committed
	clock  time.Time    // stamps markers
	broken bool         // ReadFrames fails, as for a truncated log
	// markerErr, when set, fails CommitMarker: a node that believes it
	// leads but has no quorum.
	markerErr error
	markers   int
	admin     []string // actions of the admin ops committed
}

func (s *fakeSource) BackupRole() (bool, uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ops) == 0 {
		return s.lead, 0, 0
	}
	last := s.ops[len(s.ops)-1]
	return s.lead, last.Op, last.LastPosition()
}

func (s *fakeSource) ReadFrames(from, last uint64, maxBytes int, buf []byte) (kmblog.Frames, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken || from == 0 || last > uint64(len(s.ops)) || last < from {
		return kmblog.Frames{}, errors.New("op not in the local log")
	}
	f := kmblog.Frames{Data: buf[:0], First: *s.ops[from-1]}
	for n := from; n <= last && (f.Ops == 0 || len(f.Data) < maxBytes); n++ {
		var err error
		if f.Data, err = kmblog.AppendFrame(f.Data, s.ops[n-1]); err != nil {
			return kmblog.Frames{}, err
		}
		f.Ops, f.Last = f.Ops+1, *s.ops[n-1]
	}
	return f, nil
}

func (s *fakeSource) CommitMarker(ctx context.Context) (uint64, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.markerErr != nil {
		return 0, time.Time{}, s.markerErr
	}
	last := s.ops[len(s.ops)-1]
	op := &kmblog.Op{Op: last.Op + 1, View: last.View, FirstPosition: last.LastPosition() + 1,
		Timestamp: max(s.clock.UnixNano(), last.Timestamp+1)}
	s.ops = append(s.ops[:len(s.ops):len(s.ops)], op) // never into a caller's array
	s.markers++
	return op.Op, time.Unix(0, op.Timestamp), nil
}

func (s *fakeSource) CommitAdmin(ctx context.Context, action string, detail any, principal string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	value, err := json.Marshal(detail)
	if err != nil {
		return 0, err
	}
	last := s.ops[len(s.ops)-1]
	op := &kmblog.Op{Op: last.Op + 1, View: last.View, FirstPosition: last.LastPosition() + 1, Kind: kmblog.KindAdmin,
		Timestamp: max(s.clock.UnixNano(), last.Timestamp+1), Principal: principal, Entries: []kmblog.Entry{{Key: action, Value: value}}}
	s.ops = append(s.ops[:len(s.ops):len(s.ops)], op)
	s.admin = append(s.admin, action)
	return op.Op, nil
}

func (s *fakeSource) set(f func(s *fakeSource)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

type taskHarness struct {
	t    *testing.T
	task *Task
	src  *fakeSource
	reg  *metric.Registry
	// clock is the task's clock (Unix ns): snapshots read it from their
	// own goroutine.
	clock atomic.Int64
}

func (h *taskHarness) now() time.Time { return time.Unix(0, h.clock.Load()) }

func (h *taskHarness) advance(d time.Duration) { h.clock.Add(int64(d)) }

func newTaskHarness(t *testing.T, b Backend, src *fakeSource, cfg TaskConfig) *taskHarness {
	h := &taskHarness{t: t, src: src, reg: metric.NewRegistry()}
	h.clock.Store(time.Now().UnixNano())
	h.task = NewTask(cfg, "file:///test", b, src, h.reg, nil, nil)
	h.task.now = h.now
	return h
}

// run steps the task until it has nothing left to do right away.
func (h *taskHarness) run() {
	h.t.Helper()
	for i := 0; i < 1000; i++ {
		if h.task.step(context.Background()) > 0 {
			return
		}
	}
	h.t.Fatal("the task never settled")
}

func (h *taskHarness) value(name string, labels ...string) float64 {
	h.t.Helper()
	for _, f := range h.reg.Gather() {
		if f.Name != name {
			continue
		}
		for _, s := range f.Series {
			if strings.Join(s.LabelValues, ",") == strings.Join(labels, ",") {
				if s.Histogram != nil {
					return float64(s.Histogram.Count)
				}
				return s.Value
			}
		}
	}
	if len(labels) == 0 {
		h.t.Fatalf("no series %s", name)
	}
	return 0 // a child not created yet
}

func (h *taskHarness) state() string { return h.task.Status().State }

func TestTaskShipsAndAdvancesWhenIdle(t *testing.T) {
	ops := sourceLog(t, genOps(1, 1, 200, 11))
	b, _ := NewDirBackend(t.TempDir())
	src := &fakeSource{lead: true, ops: ops[:120]}
	h := newTaskHarness(t, b, src, TaskConfig{SegmentBytes: 4 << 10})
	h.run()
	if h.state() != StateRunning {
		t.Fatalf("state %s", h.state())
	}
	st := h.task.Status()
	if st.CheckpointOp != 120 || st.LagEntries != 0 {
		t.Fatalf("status %+v", st)
	}
	if segs := h.value("kmb_backup_segments_total", TaskName); segs < 2 {
		t.Fatalf("%v segments for 120 ops of 4 KiB segments", segs)
	}
	if got, want := h.value("kmb_backup_entries_total", TaskName), float64(ops[119].LastPosition()); got != want {
		t.Fatalf("entries_total %v, want %v", got, want)
	}
	if h.value("kmb_backup_task_state", TaskName, StateRunning) != 1 || h.value("kmb_backup_task_state", TaskName, StateStandby) != 0 {
		t.Fatal("state gauge")
	}
	if h.value("kmb_backup_storage_operation_duration_seconds", "file", OpSegment) == 0 {
		t.Fatal("no segment write timed")
	}

	// Idle: a marker committed through the cluster carries the
	// checkpoint time forward.
	idle := time.Unix(0, ops[119].Timestamp).Add(5 * time.Minute)
	src.set(func(s *fakeSource) { s.clock = idle })
	h.advance(time.Minute)
	h.run()
	if got := h.task.Status().CheckpointTime; !got.Equal(idle) || src.markers != 1 || h.task.Status().CheckpointOp != 121 {
		t.Fatalf("idle checkpoint %+v after %d markers, want time %v at op 121", h.task.Status(), src.markers, idle)
	}
	if h.value("kmb_backup_checkpoint_timestamp_seconds", TaskName) != float64(idle.UnixNano())/1e9 {
		t.Fatal("checkpoint gauge")
	}

	// New commits: lag shows until they are shipped.
	marker := src.ops[120]
	var more []*kmblog.Op
	for _, op := range ops[120:] { // renumbered after the marker, which holds no position
		o := *op
		o.Op++
		o.Timestamp += marker.Timestamp - ops[120].Timestamp + 1
		more = append(more, &o)
	}
	src.set(func(s *fakeSource) { s.ops = append(s.ops, more...) })
	ops = src.ops
	if h.value("kmb_backup_lag_entries", TaskName) != float64(ops[199].LastPosition()-ops[120].LastPosition()) {
		t.Fatal("lag gauge")
	}
	h.run()
	rep, err := VerifyBackend(context.Background(), b)
	if err != nil || !rep.OK() || rep.Checkpoint.Op != 201 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestTaskFailoverNoGapNoDuplicate(t *testing.T) {
	ops := sourceLog(t, genOps(1, 1, 300, 12))
	b, _ := NewDirBackend(t.TempDir())
	a := newTaskHarness(t, b, &fakeSource{lead: true, ops: ops[:100]}, TaskConfig{SegmentBytes: 2 << 10})
	c := newTaskHarness(t, b, &fakeSource{lead: false, ops: ops[:100]}, TaskConfig{SegmentBytes: 2 << 10})
	a.run()
	c.run()
	if c.state() != StateStandby || c.task.Status().CheckpointOp != 0 && c.task.Status().CheckpointOp != 100 {
		t.Fatalf("standby: %+v", c.task.Status())
	}
	// The leader fails; c leads and goes on from the manifest.
	c.src.set(func(s *fakeSource) { s.lead, s.ops = true, ops[:250] })
	c.run()
	if got := c.task.Status(); got.State != StateRunning || got.CheckpointOp != 250 {
		t.Fatalf("after failover: %+v", got)
	}
	// The old leader, cut off but believing it leads, cannot commit a
	// marker, so it never moves the checkpoint time, however late its
	// clock.
	before := c.task.repo.Checkpoint()
	a.src.set(func(s *fakeSource) { s.markerErr, s.clock = errors.New("no quorum"), time.Now().Add(time.Hour) })
	a.advance(time.Hour)
	a.task.step(context.Background())
	a.task.step(context.Background())
	if err := c.task.repo.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.task.repo.Checkpoint(); got != before {
		t.Fatalf("a leader without a quorum moved the checkpoint: %+v → %+v", before, got)
	}
	// The old leader comes back believing it leads, with a stale
	// manifest: it must neither duplicate nor move the checkpoint back.
	a.src.set(func(s *fakeSource) { s.ops = ops[:260] })
	a.run()
	c.src.set(func(s *fakeSource) { s.ops = ops })
	c.run()
	a.run()
	m := c.task.repo.Manifest()
	if err := c.task.repo.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	m = c.task.repo.Manifest()
	if m.Checkpoint.Op != 300 {
		t.Fatalf("checkpoint op %d", m.Checkpoint.Op)
	}
	next := uint64(1)
	for _, s := range m.Segments {
		if s.FirstOp != next {
			t.Fatalf("segment %s: want first op %d", s.Name, next)
		}
		next = s.LastOp + 1
	}
	if a.value("kmb_backup_errors_total", "flush", ClassRetryable, "concurrent_writer")+a.value("kmb_backup_errors_total", "flush", ClassRetryable, "overlap") == 0 {
		t.Fatal("the stale leader's conflict was not counted")
	}
	rep, err := VerifyBackend(context.Background(), b)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep.Problems, err)
	}
}

func TestTaskPauseResumeAndFatal(t *testing.T) {
	ops := sourceLog(t, genOps(1, 1, 60, 13))
	b, _ := NewDirBackend(t.TempDir())
	src := &fakeSource{lead: true, ops: ops[:30]}
	h := newTaskHarness(t, b, src, TaskConfig{})
	h.run()
	op, err := Open(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if err := op.SetPaused(context.Background(), true, h.now()); err != nil {
		t.Fatal(err)
	}
	src.set(func(s *fakeSource) { s.ops = ops })
	h.advance(time.Minute)
	h.run() // meets the changed manifest
	h.advance(time.Minute)
	h.run()
	if h.state() != StatePaused || h.task.Status().CheckpointOp != 30 {
		t.Fatalf("paused: %+v", h.task.Status())
	}
	if h.value("kmb_backup_task_state", TaskName, StatePaused) != 1 {
		t.Fatal("paused gauge")
	}
	if err := op.SetPaused(context.Background(), false, h.now()); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Minute)
	h.run()
	h.run()
	h.run()
	// The pause and the resume are in the log (ops 61 and 62), for the
	// audit trail, and were backed up with the rest.
	if h.state() != StateRunning || h.task.Status().CheckpointOp != 62 {
		t.Fatalf("resumed: %+v", h.task.Status())
	}
	if got := strings.Join(src.admin, ","); got != "backup_pause,backup_resume" {
		t.Fatalf("admin ops %q, want the pause and the resume", got)
	}
	h.run()
	if len(src.admin) != 2 {
		t.Fatalf("the resume was logged again: %v", src.admin)
	}

	// The local log lost ops the repository needs: fatal.
	src.set(func(s *fakeSource) {
		last := s.ops[len(s.ops)-1]
		s.ops = append(s.ops, &kmblog.Op{Op: last.Op + 1, View: last.View, FirstPosition: last.LastPosition() + 1, Timestamp: last.Timestamp + 1})
		s.broken = true
	})
	h.task.step(context.Background())
	if h.state() != StateError || h.value("kmb_backup_errors_total", "flush", ClassFatal, "log_read") != 1 {
		t.Fatalf("after a lost op: %+v", h.task.Status())
	}
}

// blockingBackend holds snapshot part writes until released.
type blockingBackend struct {
	Backend
	release chan struct{}
}

func (b blockingBackend) Put(ctx context.Context, key string, data []byte) error {
	if strings.HasPrefix(key, snapshotsPrefix) {
		<-b.release
	}
	return b.Backend.Put(ctx, key, data)
}

func TestTaskSnapshotScheduleAndRestart(t *testing.T) {
	ops := sourceLog(t, genOps(1, 1, 50, 14))
	dir, _ := NewDirBackend(t.TempDir())
	b := blockingBackend{Backend: dir, release: make(chan struct{})}
	src := &fakeSource{lead: true, ops: ops}
	cfg := TaskConfig{SnapshotInterval: time.Hour, Retention: RetentionPolicy{KeepLast: 1}}
	h := newTaskHarness(t, b, src, cfg)
	h.run()
	if h.value("kmb_snapshot_started_total") != 0 {
		t.Fatal("a snapshot before its schedule")
	}
	h.advance(61 * time.Minute)
	h.run()
	if h.value("kmb_snapshot_started_total") != 1 || h.value("kmb_snapshot_in_progress") != 1 {
		t.Fatal("the scheduled snapshot did not start")
	}
	h.advance(61 * time.Minute)
	h.run() // due again while the first still runs
	if h.value("kmb_snapshot_skipped_total", "previous_running") != 1 {
		t.Fatal("overlap not counted")
	}
	close(b.release)
	h.task.bg.Wait()
	if h.value("kmb_snapshot_completed_total", "success") != 1 || h.value("kmb_snapshot_in_progress") != 0 {
		t.Fatal("snapshot did not complete")
	}
	h.run()
	success := h.task.Status().LastSnapshotSuccess
	if success.IsZero() || h.value("kmb_backup_snapshots") != 1 {
		t.Fatalf("status %+v", h.task.Status())
	}

	// A restarted node (a new task) reports the persisted success at
	// once, before it leads anything.
	r := newTaskHarness(t, dir, &fakeSource{lead: false}, cfg)
	r.run()
	if got := r.value("kmb_snapshot_last_success_timestamp_seconds"); got != float64(success.UnixNano())/1e9 {
		t.Fatalf("after restart: last success %v, want %v", got, float64(success.UnixNano())/1e9)
	}
}

// The task's work shows as spans: a flush per segment, a snapshot, a
// verify run.
func TestTaskSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(exp)))
	defer tp.Shutdown(context.Background())
	ops := sourceLog(t, genOps(1, 1, 40, 15))
	b, _ := NewDirBackend(t.TempDir())
	h := newTaskHarness(t, b, &fakeSource{lead: true, ops: ops}, TaskConfig{SnapshotInterval: time.Hour, VerifyInterval: time.Hour})
	h.task.tracer = spans.New(tp, true, 0) // rare operations are traced whatever the ratio
	h.run()
	h.advance(2 * time.Hour)
	h.run()
	h.task.bg.Wait()
	got := map[string]int{}
	flushedTo := map[int64]bool{}
	for _, s := range exp.GetSpans() {
		got[s.Name]++
		if s.Name == spans.BackupFlush {
			last, _ := attrInt(s, string(spans.AttrOpNumberLast))
			flushedTo[last] = true
		}
	}
	if !flushedTo[40] {
		t.Errorf("no flush span ends at op 40: %v", flushedTo)
	}
	for _, name := range []string{spans.BackupFlush, spans.Snapshot, spans.BackupVerify} {
		if got[name] == 0 {
			t.Errorf("no %s span; spans: %v", name, got)
		}
	}
}

func attrInt(s tracetest.SpanStub, key string) (int64, bool) {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.AsInt64(), true
		}
	}
	return 0, false
}
