package log_test

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kmb-db/kmb/store/log/faultfs"
)

// A sync started by StartSync makes durable what was appended before it,
// and only that: appends go on meanwhile and stay unreadable until the
// next sync; other writes wait for FinishSync. It crosses segment rolls.
func TestPendingSync(t *testing.T) {
	dir := t.TempDir()
	l, _ := openFS(t, dir, faultfs.New(nil))
	ops := chained(nil, 5, "a")
	if err := l.Append(ops...); err != nil {
		t.Fatal(err)
	}
	p, err := l.StartSync()
	if err != nil {
		t.Fatal(err)
	}
	if p.Last() != 5 {
		t.Fatalf("pending sync covers up to op %d, want 5", p.Last())
	}
	// Enough while it is pending to roll a segment or two.
	more := chained(ops[4], 9000, "b")
	if err := l.Append(more...); err != nil {
		t.Fatalf("append while a sync is pending: %v", err)
	}
	if segs := countSegments(t, dir); segs < 3 {
		t.Fatalf("%d segments; the test wants appends that roll while the sync is pending", segs)
	}
	if _, err := l.StartSync(); err == nil {
		t.Fatal("a second StartSync while one is pending succeeded")
	}
	for name, write := range map[string]func() error{
		"Sync":          l.Sync,
		"TruncateAfter": func() error { return l.TruncateAfter(3) },
	} {
		if err := write(); err == nil {
			t.Fatalf("%s while a sync is pending succeeded", name)
		}
	}
	if got := l.DurableOp(); got != 0 {
		t.Fatalf("DurableOp %d before the pending sync finished, want 0", got)
	}
	p.Do()
	if err := l.FinishSync(p); err != nil {
		t.Fatal(err)
	}
	if got := l.DurableOp(); got != 5 {
		t.Fatalf("DurableOp %d after the sync of ops 1-5, want 5", got)
	}
	readAll(t, l, ops)
	if _, err := l.Read(6); err == nil {
		t.Fatal("op 6, appended after the sync started, is readable")
	}
	if err := l.FinishSync(p); err == nil {
		t.Fatal("FinishSync of a finished sync succeeded")
	}
	// The next one covers the rest, across the segments they rolled.
	p, err = l.StartSync()
	if err != nil {
		t.Fatal(err)
	}
	p.Do()
	if err := l.FinishSync(p); err != nil {
		t.Fatal(err)
	}
	if got, want := l.DurableOp(), more[len(more)-1].Op; got != want {
		t.Fatalf("DurableOp %d, want %d", got, want)
	}
	readAll(t, l, more)
	if err := l.TruncateAfter(3); err != nil {
		t.Fatalf("truncate once no sync is pending: %v", err)
	}
	// With nothing new, a pending sync does nothing and finishes at once.
	p, err = l.StartSync()
	if err != nil {
		t.Fatal(err)
	}
	p.Do()
	if err := l.FinishSync(p); err != nil || l.DurableOp() != 3 {
		t.Fatalf("empty sync: %v, DurableOp %d, want 3", err, l.DurableOp())
	}
}

// A pending sync whose fsync fails makes the log unusable at FinishSync,
// as a failed Sync does; nothing it covered becomes readable.
func TestPendingSyncFails(t *testing.T) {
	fsys := faultfs.New(nil)
	l, _ := openFS(t, t.TempDir(), fsys)
	ops := chained(nil, 3, "a")
	if err := l.Append(ops...); err != nil {
		t.Fatal(err)
	}
	fsys.Add(faultfs.Rule{Op: faultfs.Sync, Path: ".seg", Err: syscall.EIO})
	p, err := l.StartSync()
	if err != nil {
		t.Fatal(err)
	}
	p.Do()
	if err := l.FinishSync(p); !errors.Is(err, syscall.EIO) {
		t.Fatalf("FinishSync after a failed fsync = %v, want EIO", err)
	}
	if l.DurableOp() != 0 {
		t.Fatalf("DurableOp %d after a failed fsync, want 0", l.DurableOp())
	}
	if err := l.Append(chained(ops[2], 1, "b")...); err == nil {
		t.Fatal("append after a failed fsync succeeded")
	}
}

func countSegments(t *testing.T, dir string) int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}
