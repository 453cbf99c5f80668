package backup

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
)

func TestInitOpen(t *testing.T) {
	ctx := context.Background()
	b, err := NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, b); !errors.Is(err, ErrNoRepository) {
		t.Fatalf("Open of an empty directory: %v", err)
	}
	r, err := Init(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	m := r.Manifest()
	if len(m.RepositoryID) != 32 || m.Generation != 1 || m.Checkpoint != (Checkpoint{}) || len(m.Segments) != 0 {
		t.Fatalf("new manifest %+v", m)
	}
	if _, err := Init(ctx, b); !errors.Is(err, ErrRepositoryExists) {
		t.Fatalf("second Init: %v", err)
	}
	for _, open := range []func(context.Context, Backend) (*Repository, error){Open, OpenOrInit} {
		o, err := open(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if got := o.Manifest(); !reflect.DeepEqual(got, m) {
			t.Fatalf("reopened manifest %+v, want %+v", got, m)
		}
	}
	b2, _ := NewDirBackend(t.TempDir())
	if r2, err := OpenOrInit(ctx, b2); err != nil || r2.Manifest().RepositoryID == m.RepositoryID {
		t.Fatalf("OpenOrInit of an empty directory: %v", err)
	}
}

// Many ops across several segments come back exactly, and Verify finds
// the repository sound.
func TestAppendSegmentRoundTrip(t *testing.T) {
	ctx := context.Background()
	r, b, ops := backedUpRepo(t, 2000, 1, 7, 300, 64, 1000)
	m := r.Manifest()
	if len(m.Segments) != 10 {
		t.Fatalf("%d segments", len(m.Segments))
	}
	last := ops[len(ops)-1]
	if want := (Checkpoint{Op: last.Op, Position: last.LastPosition(), TimestampUnixNano: last.Timestamp}); m.Checkpoint != want {
		t.Fatalf("checkpoint %+v, want %+v", m.Checkpoint, want)
	}
	if m.Generation != 1+10 {
		t.Fatalf("generation %d", m.Generation)
	}

	// Read back through a fresh Open, as another process would.
	o, err := Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var got []kmblog.Op
	for _, s := range o.Manifest().Segments {
		data, err := b.Get(ctx, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		seg, err := decodeAll(data)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		got = append(got, seg...)
	}
	assertOps(t, got, ops)

	rep, err := r.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || !rep.ManifestOK || rep.Segments != 10 || rep.SegmentsOK != 10 || rep.Ops != 2000 || rep.Entries != last.LastPosition() || len(rep.Orphans) != 0 {
		t.Fatalf("verify: %+v", rep)
	}
	st := r.Stats()
	if st.Segments != 10 || st.Entries != rep.Entries || st.StoredBytes != rep.StoredBytes || st.RawBytes != rep.RawBytes ||
		!st.OldestRestorable.Equal(time.Unix(0, ops[0].Timestamp)) || st.Checkpoint != m.Checkpoint {
		t.Fatalf("stats %+v vs report %+v", st, rep)
	}
}

func TestAppendSegmentRejects(t *testing.T) {
	ctx := context.Background()
	ops := genOps(1, 1, 30, 3)
	batchGap := []*kmblog.Op{ops[10], ops[12]}
	shifted := *ops[10]
	shifted.FirstPosition++
	inner := *ops[11]
	inner.FirstPosition++
	for _, tc := range []struct {
		name string
		ops  []*kmblog.Op
		is   error
		want string
	}{
		{"gap", ops[12:15], ErrGap, "ops 11..12 would be missing"},
		{"overlap whole", ops[5:10], ErrOverlap, "ops 6..10 are already in the repository"},
		{"overlap partial", ops[8:15], ErrOverlap, "ops 9..10 are already in the repository"},
		{"from op 1 again", ops[0:1], ErrOverlap, "ops 1..1"},
		{"position mismatch", []*kmblog.Op{&shifted}, ErrNotContiguous, "checkpoint is position"},
		{"gap inside the batch", batchGap, ErrNotContiguous, "op 13 follows op 11"},
		{"position gap inside the batch", []*kmblog.Op{ops[10], &inner}, ErrNotContiguous, "op 12 starts at position"},
		{"empty", nil, nil, "no ops"},
		{"nil op", []*kmblog.Op{ops[10], nil}, nil, "nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, b := newRepo(t)
			backUp(t, r, ops[:10], 4)
			before := r.Manifest()
			keys, _ := b.List(ctx, "")
			err := r.AppendSegment(ctx, tc.ops)
			if err == nil {
				t.Fatal("accepted")
			}
			if (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %v containing %q", err, tc.is, tc.want)
			}
			if after, _ := b.List(ctx, ""); !reflect.DeepEqual(after, keys) {
				t.Fatalf("objects written: %v, before %v", after, keys)
			}
			if m := r.Manifest(); !reflect.DeepEqual(m, before) {
				t.Fatal("manifest changed")
			}
			// The repository goes on from its checkpoint.
			if err := r.AppendSegment(ctx, ops[10:]); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A gap is a gap in an empty repository too.
	r, _ := newRepo(t)
	if err := r.AppendSegment(ctx, ops[1:3]); !errors.Is(err, ErrGap) {
		t.Fatalf("empty repository, segment from op 2: %v", err)
	}
}

func TestCheckpointNeverMovesBackwards(t *testing.T) {
	ctx := context.Background()
	r, b := newRepo(t)
	ops := genOps(1, 1, 20, 5)
	backUp(t, r, ops[:10], 10)
	cp := r.Checkpoint()
	if cp.TimestampUnixNano != ops[9].Timestamp {
		t.Fatalf("checkpoint time %d, want %d", cp.TimestampUnixNano, ops[9].Timestamp)
	}
	gen := r.Manifest().Generation

	// Idle: time moves forwards only.
	later := time.Unix(0, cp.TimestampUnixNano).Add(time.Minute)
	if err := r.AdvanceCheckpointTime(ctx, later); err != nil {
		t.Fatal(err)
	}
	if got := r.Checkpoint(); got.TimestampUnixNano != later.UnixNano() || got.Op != cp.Op || got.Position != cp.Position {
		t.Fatalf("after advancing: %+v", got)
	}
	for _, t0 := range []time.Time{later, later.Add(-time.Second), time.Unix(0, 0), {}} {
		if err := r.AdvanceCheckpointTime(ctx, t0); err != nil {
			t.Fatal(err)
		}
		if got := r.Checkpoint().TimestampUnixNano; got != later.UnixNano() {
			t.Fatalf("AdvanceCheckpointTime(%v) moved the checkpoint to %d", t0, got)
		}
	}
	if g := r.Manifest().Generation; g != gen+1 {
		t.Fatalf("no-op advances wrote the manifest: generation %d, want %d", g, gen+1)
	}

	// Ops committed before the checkpoint's time do not pull it back.
	if err := r.AppendSegment(ctx, ops[10:15]); err != nil {
		t.Fatal(err)
	}
	if got := r.Checkpoint(); got.TimestampUnixNano != later.UnixNano() || got.Op != 15 {
		t.Fatalf("after appending older ops: %+v", got)
	}
	// The stored manifest agrees, and stays consistent.
	o, err := Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if o.Checkpoint() != r.Checkpoint() {
		t.Fatalf("stored checkpoint %+v, in memory %+v", o.Checkpoint(), r.Checkpoint())
	}

	// Last successes only move forwards too.
	t1 := time.Unix(1_800_000_000, 0)
	for _, rec := range []func(context.Context, time.Time) error{r.RecordVerifySuccess, r.RecordSnapshotSuccess} {
		if err := rec(ctx, t1); err != nil {
			t.Fatal(err)
		}
		if err := rec(ctx, t1.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	st := r.Stats()
	if !st.LastVerifySuccess.Equal(t1) || !st.LastSnapshotSuccess.Equal(t1) {
		t.Fatalf("last successes %v %v, want %v", st.LastVerifySuccess, st.LastSnapshotSuccess, t1)
	}
}

// A crash, or a failed manifest write, between writing a segment object
// and the manifest is repaired by sending the same ops again: no gap, no
// duplicate.
func TestAppendSegmentRetryAfterCrash(t *testing.T) {
	ctx := context.Background()
	ops := genOps(1, 1, 40, 9)

	check := func(t *testing.T, b Backend, wantSegs []string, wantOrphans int) {
		t.Helper()
		r, err := Open(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range r.Manifest().Segments {
			names = append(names, s.Name)
		}
		if !reflect.DeepEqual(names, wantSegs) {
			t.Fatalf("manifest lists %v, want %v", names, wantSegs)
		}
		rep, err := r.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || len(rep.Orphans) != wantOrphans {
			t.Fatalf("verify: problems %v, orphans %v", rep.Problems, rep.Orphans)
		}
	}

	t.Run("retry in the same process", func(t *testing.T) {
		r, dir := newRepo(t)
		fb := &faultBackend{Backend: dir}
		r.backend = fb
		backUp(t, r, ops[:10], 10)
		fb.putFault = failOnce(ManifestKey, false)
		if err := r.AppendSegment(ctx, ops[10:20]); !errors.Is(err, errInjected) {
			t.Fatalf("first try: %v", err)
		}
		if err := r.AppendSegment(ctx, ops[10:20]); err != nil {
			t.Fatalf("retry: %v", err)
		}
		backUp(t, r, ops[20:], 20)
		check(t, dir, []string{SegmentKey(1, 10), SegmentKey(11, 20), SegmentKey(21, 40)}, 0)
	})

	t.Run("process restarts and resends", func(t *testing.T) {
		r, dir := newRepo(t)
		fb := &faultBackend{Backend: dir}
		r.backend = fb
		backUp(t, r, ops[:10], 10)
		fb.putFault = failOnce(ManifestKey, false)
		if err := r.AppendSegment(ctx, ops[10:20]); !errors.Is(err, errInjected) {
			t.Fatalf("first try: %v", err)
		}
		// The process dies here; a new one opens the repository and
		// resumes from its checkpoint.
		r2, err := Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		if cp := r2.Checkpoint(); cp.Op != 10 {
			t.Fatalf("checkpoint after the crash: %+v", cp)
		}
		backUp(t, r2, ops[10:], 10)
		check(t, dir, []string{SegmentKey(1, 10), SegmentKey(11, 20), SegmentKey(21, 30), SegmentKey(31, 40)}, 0)
	})

	t.Run("restart resends a different batch", func(t *testing.T) {
		r, dir := newRepo(t)
		fb := &faultBackend{Backend: dir}
		r.backend = fb
		backUp(t, r, ops[:10], 10)
		fb.putFault = failOnce(ManifestKey, false)
		if err := r.AppendSegment(ctx, ops[10:20]); !errors.Is(err, errInjected) {
			t.Fatalf("first try: %v", err)
		}
		r2, _ := Open(ctx, dir)
		backUp(t, r2, ops[10:], 30)
		// The first try's object is an orphan, not a problem.
		check(t, dir, []string{SegmentKey(1, 10), SegmentKey(11, 40)}, 1)
	})

	t.Run("manifest write landed but reported failure", func(t *testing.T) {
		r, dir := newRepo(t)
		fb := &faultBackend{Backend: dir}
		r.backend = fb
		backUp(t, r, ops[:10], 10)
		fb.putFault = failOnce(ManifestKey, true)
		if err := r.AppendSegment(ctx, ops[10:20]); !errors.Is(err, errInjected) {
			t.Fatalf("first try: %v", err)
		}
		// The retry finds the write landed: the ops are already there.
		if err := r.AppendSegment(ctx, ops[10:20]); !errors.Is(err, ErrOverlap) {
			t.Fatalf("retry: %v", err)
		}
		if cp := r.Checkpoint(); cp.Op != 20 {
			t.Fatalf("checkpoint %+v", cp)
		}
		backUp(t, r, ops[20:], 20)
		check(t, dir, []string{SegmentKey(1, 10), SegmentKey(11, 20), SegmentKey(21, 40)}, 0)
	})
}

// A second writer is caught instead of overwriting the first one's
// progress.
func TestConcurrentWriterDetected(t *testing.T) {
	ctx := context.Background()
	a, b := newRepo(t)
	ops := genOps(1, 1, 30, 2)
	backUp(t, a, ops[:10], 10)
	stale, err := Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	backUp(t, a, ops[10:20], 10)
	if err := stale.AdvanceCheckpointTime(ctx, time.Unix(0, ops[29].Timestamp)); !errors.Is(err, ErrConcurrentWriter) {
		t.Fatalf("stale writer: %v", err)
	}
	// It rereads the manifest and sees the other's progress.
	if err := stale.AppendSegment(ctx, ops[10:20]); !errors.Is(err, ErrOverlap) {
		t.Fatalf("stale writer after reload: %v", err)
	}
	if err := stale.AppendSegment(ctx, ops[20:]); err != nil {
		t.Fatal(err)
	}
	if cp := a.Checkpoint(); cp.Op != 20 {
		t.Fatalf("checkpoint %+v", cp)
	}
	if err := a.Reload(ctx); err != nil || a.Checkpoint().Op != 30 {
		t.Fatalf("reload: %v %+v", err, a.Checkpoint())
	}
}
