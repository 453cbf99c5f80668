package log

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestReadOnly opens a log for reading only: it reads what recovery
// verified, cuts nothing (a torn tail stays on disk, unread), and refuses
// every write.
func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	ops := genOps(1, 1, 30, 1)
	l, _ := openTest(t, dir, 1500)
	mustAppendSync(t, l, ops...)
	l.Close()
	segs := segmentFiles(t, dir)
	last := filepath.Join(dir, segs[len(segs)-1])
	mutateFile(t, last, func(b []byte) []byte { return b[:len(b)-5] })
	before := snapshotDir(t, dir)

	r, rep, err := open(Config{Dir: dir, SegmentSizeBytes: 1500, ReadOnly: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastOp != 29 || rep.TruncatedBytes != 0 {
		t.Fatalf("report %+v", rep)
	}
	assertReadAll(t, r, ops[:29])
	if err := r.Append(ops[29]); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Append = %v", err)
	}
	if err := r.TruncateAfter(3); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("TruncateAfter = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !mapsEqual(before, snapshotDir(t, dir)) {
		t.Fatal("a read-only open changed files")
	}
	if _, _, err := open(Config{Dir: t.TempDir(), ReadOnly: true}, nil, nil); err == nil {
		t.Fatal("read-only open of an empty dir succeeded")
	}
}

// TestFirstOpAt maps commit times to the segment to start reading from.
func TestFirstOpAt(t *testing.T) {
	dir := t.TempDir()
	ops := genOps(1, 1, 40, 1) // op n committed at 1_700_000_000_000_000_000 + n*1_000_003
	l, _ := openTest(t, dir, 1500)
	mustAppendSync(t, l, ops...)
	check := func(l *Log) {
		t.Helper()
		l.mu.RLock()
		segs := append([]*segment(nil), l.segs...)
		l.mu.RUnlock()
		if len(segs) < 3 {
			t.Fatalf("want several segments, got %d", len(segs))
		}
		for _, op := range ops {
			from := l.FirstOpAt(op.Timestamp)
			if from > op.Op {
				t.Fatalf("FirstOpAt(time of op %d) = %d, past it", op.Op, from)
			}
			// Only ops of the segment holding op (or later) are read.
			s := segs[l.segmentOf(op.Op)]
			if from < s.firstOp {
				t.Fatalf("FirstOpAt(time of op %d) = %d, before its segment (first op %d)", op.Op, from, s.firstOp)
			}
		}
		if got := l.FirstOpAt(0); got != 1 {
			t.Fatalf("FirstOpAt(0) = %d", got)
		}
	}
	check(l)
	l.Close()
	r, _, err := open(Config{Dir: dir, SegmentSizeBytes: 1500, ReadOnly: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check(r)
}
