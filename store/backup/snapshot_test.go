package backup

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSnapshotAndRetention(t *testing.T) {
	ctx := context.Background()
	r, b := newRepo(t)
	if _, err := r.CreateSnapshot(ctx, time.Now(), 0, nil); !errors.Is(err, ErrEmptyRepository) {
		t.Fatalf("snapshot of an empty repository: %v", err)
	}
	ops := sourceLog(t, genOps(1, 1, 320, 3))
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, end := range []int{100, 200, 300} {
		backUp(t, r, ops[i*100:end], 40)
		res, err := r.CreateSnapshot(ctx, day.Add(time.Duration(i)*24*time.Hour), 2<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Created || res.Snapshot.Op != uint64(end) || res.Ops != uint64(end) || len(res.Snapshot.Parts) < 2 {
			t.Fatalf("snapshot %d: %+v", i, res)
		}
		for _, p := range res.Snapshot.Parts {
			if p.RawBytes > 2<<10+16<<10 {
				t.Fatalf("part %s holds %d raw bytes", p.Name, p.RawBytes)
			}
		}
	}
	// Nothing new since the last one: only the success time moves.
	again, err := r.CreateSnapshot(ctx, day.Add(72*time.Hour), 2<<10, nil)
	if err != nil || again.Created || again.Snapshot.Op != 300 {
		t.Fatalf("repeated snapshot: %+v, %v", again, err)
	}
	if got := r.Stats().LastSnapshotSuccess; !got.Equal(day.Add(72 * time.Hour)) {
		t.Fatalf("last snapshot success %v", got)
	}

	// Keep within 36 hours of day 2: snapshots of days 1 and 2 (and the
	// newest, always).
	res, err := r.ApplyRetention(ctx, RetentionPolicy{KeepWithin: 36 * time.Hour}, day.Add(48*time.Hour))
	if err != nil || res.Snapshots != 1 || res.Segments != 6 {
		t.Fatalf("retention: %+v, %v", res, err)
	}
	m := r.Manifest()
	if len(m.Snapshots) != 2 || m.Snapshots[0].Op != 200 || m.Segments[0].FirstOp != 201 {
		t.Fatalf("after retention: snapshots %d (oldest op %d), segments from op %d", len(m.Snapshots), m.Snapshots[0].Op, m.Segments[0].FirstOp)
	}
	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK() || len(rep.Orphans) != 0 {
		t.Fatalf("verify after retention: %+v, %v", rep.Problems, err)
	}
	keys, _ := b.List(ctx, snapshotsPrefix+"00000000000000000100")
	if len(keys) != 0 {
		t.Fatalf("parts of the dropped snapshot are still stored: %v", keys)
	}
	// Keep none beyond the newest.
	if res, err := r.ApplyRetention(ctx, RetentionPolicy{KeepLast: 1}, day.Add(96*time.Hour)); err != nil || res.Snapshots != 1 {
		t.Fatalf("keep last 1: %+v, %v", res, err)
	}
	if m := r.Manifest(); len(m.Snapshots) != 1 || len(m.Segments) != 0 || m.Checkpoint.Op != 300 {
		t.Fatalf("after keep-last-1: %+v", m)
	}
	// The repository goes on from there.
	backUp(t, r, ops[300:], 7)
	if rep, err := r.Verify(ctx); err != nil || !rep.OK() {
		t.Fatalf("verify: %+v, %v", rep.Problems, err)
	}
	// A policy of zeros keeps everything.
	if res, err := r.ApplyRetention(ctx, RetentionPolicy{}, day.Add(1000*time.Hour)); err != nil || res != (RetentionResult{}) {
		t.Fatalf("empty policy: %+v, %v", res, err)
	}
}

func TestSetPausedSurvivesAnotherWriter(t *testing.T) {
	ctx := context.Background()
	r, b, _ := backedUpRepo(t, 30, 10)
	other, err := Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	if err := other.SetPaused(ctx, true, now); err != nil {
		t.Fatal(err)
	}
	// r's next write meets the changed generation: the write fails, and
	// the one after rereads the manifest and sees the pause.
	if err := r.AdvanceCheckpointTime(ctx, now); !errors.Is(err, ErrConcurrentWriter) {
		t.Fatalf("stale writer: %v", err)
	}
	if err := r.AdvanceCheckpointTime(ctx, now); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().Paused; !got.Equal(now) {
		t.Fatalf("paused %v", got)
	}
	// update retries past a concurrent change by itself.
	if err := other.SetPaused(ctx, false, now); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(ctx); err != nil || !r.Stats().Paused.IsZero() {
		t.Fatalf("resumed: %v %v", r.Stats().Paused, err)
	}
}
