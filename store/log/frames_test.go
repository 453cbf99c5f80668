package log

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

// ReadFrames returns the log's bytes for a run of ops: exactly the frames
// AppendFrame makes, bounded by maxBytes and the segment, verified.
func TestReadFrames(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, 1<<20) // several segments
	ops := genOps(1, 1, 400, 9)
	mustAppendSync(t, l, ops...)
	var want []byte
	for _, op := range ops {
		var err error
		if want, err = AppendFrame(want, op); err != nil {
			t.Fatal(err)
		}
	}

	// Read everything in pieces of about 4 KiB, as a backup would.
	var got []byte
	var buf []byte
	for next := uint64(1); next <= 400; {
		f, err := l.ReadFrames(next, 400, 4<<10, buf)
		if err != nil {
			t.Fatal(err)
		}
		if f.Ops == 0 || f.First.Op != next || f.Last.Op != next+uint64(f.Ops)-1 {
			t.Fatalf("from %d: %d ops, %d..%d", next, f.Ops, f.First.Op, f.Last.Op)
		}
		if f.Ops > 1 && len(f.Data) > 4<<10 {
			t.Fatalf("from %d: %d bytes past the 4 KiB bound", next, len(f.Data))
		}
		assertOpEqual(t, f.Last, ops[f.Last.Op-1])
		got = append(got, f.Data...)
		next += uint64(f.Ops)
		buf = f.Data
	}
	if !bytes.Equal(got, want) {
		t.Fatal("frames differ from AppendFrame's")
	}

	// The last op bounds the run; a byte flipped on disk is caught.
	if f, err := l.ReadFrames(10, 12, 1<<20, nil); err != nil || f.Ops != 3 {
		t.Fatalf("ops 10..12: %d ops, %v", f.Ops, err)
	}
	if _, err := l.ReadFrames(401, 500, 1<<20, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("past the end: %v", err)
	}
	// A byte flipped on disk after recovery is caught when read.
	path := filepath.Join(dir, segmentFiles(t, dir)[0])
	mutateFile(t, path, func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b })
	if _, err := l.ReadFrames(1, 400, 1<<30, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged segment: %v", err)
	}
}
