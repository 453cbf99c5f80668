package backup

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

func testSwap(t *testing.T, b Backend) {
	ctx := context.Background()
	if err := b.Put(ctx, "k", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := b.Swap(ctx, "k", []byte("stale"), []byte("two")); !errors.Is(err, errSwapConflict) {
		t.Fatalf("swap from stale bytes: %v", err)
	}
	if err := b.Swap(ctx, "k", []byte("one"), []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(ctx, "k"); string(got) != "two" {
		t.Fatalf("after swap: %q", got)
	}
	if err := b.Swap(ctx, "missing", nil, []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("swap of a missing object: %v", err)
	}
}

func TestDirSwap(t *testing.T) {
	b, _ := NewDirBackend(t.TempDir())
	testSwap(t, b)
}

func TestS3Swap(t *testing.T) {
	m := kmbdtest.StartMinIO(t)
	m.MakeBucket(t, "swap")
	b, err := NewS3Backend(S3Config{Endpoint: m.Endpoint, Bucket: "swap", Prefix: "r", PathStyle: true, AccessKey: m.User, SecretKey: m.Password})
	if err != nil {
		t.Fatal(err)
	}
	testSwap(t, b)
}

// Two writers racing on one repository (the backup task shipping
// segments, a command pausing and resuming it) never lose each other's
// updates: each write either lands on the manifest it read or fails.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	ctx := context.Background()
	r, b := newRepo(t)
	ops := sourceLog(t, genOps(1, 1, 300, 21))
	other, err := Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var lastPaused bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 60; i++ {
			paused := i%2 == 0
			if err := other.SetPaused(ctx, paused, testTime(i)); err == nil {
				lastPaused = paused
			} else if !errors.Is(err, ErrConcurrentWriter) {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < len(ops); {
		n := min(10, len(ops)-i)
		err := r.AppendSegment(ctx, ops[i:i+n])
		switch {
		case err == nil:
			i += n
		case errors.Is(err, ErrConcurrentWriter), errors.Is(err, ErrOverlap):
			if err := r.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			i = int(r.Checkpoint().Op)
		default:
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Checkpoint.Op != 300 || st.Segments != 30 {
		t.Fatalf("checkpoint op %d in %d segments, want 300 in 30", st.Checkpoint.Op, st.Segments)
	}
	if got := !st.Paused.IsZero(); got != lastPaused {
		t.Fatalf("paused %v, but the last pause write that succeeded set %v", got, lastPaused)
	}
	if rep, err := r.Verify(ctx); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", rep.Problems, err)
	}
}

func testTime(i int) time.Time { return time.Unix(1_800_000_000+int64(i), 0) }
