package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// indexedLog writes n ops into tiny segments, closes the log and returns
// the ops and the segment names.
func indexedLog(t *testing.T, dir string, n int) ([]*Op, []string) {
	t.Helper()
	ops := genOps(1, 1, n, 7)
	l, _ := openTest(t, dir, 1500)
	mustAppendSync(t, l, ops...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	if len(segs) < 4 {
		t.Fatalf("only %d segments", len(segs))
	}
	return ops, segs
}

// Sealed segments are indexed when they are sealed, and the next Open
// trusts them without reading them: only the last segment is read.
func TestIndexTrustedAtOpen(t *testing.T) {
	dir := t.TempDir()
	ops, segs := indexedLog(t, dir, 60)
	for _, s := range segs[:len(segs)-1] {
		if _, err := os.Stat(filepath.Join(dir, indexName(s))); err != nil {
			t.Fatalf("sealed segment %s has no index: %v", s, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, indexName(segs[len(segs)-1]))); err == nil {
		t.Fatal("the active segment has an index")
	}
	l, rep := openTest(t, dir, 1500)
	if rep.Indexed != len(segs)-1 || rep.Reindexed != 0 {
		t.Fatalf("report %+v: want %d sealed segments trusted", rep, len(segs)-1)
	}
	assertReadAll(t, l, ops)
	if l.LastPosition() != ops[len(ops)-1].LastPosition() || l.prev != ops[len(ops)-1].Chain {
		t.Fatal("the log does not end where it did")
	}
	// It appends on from there, and a reopened log reads everything.
	more := genOps(61, ops[len(ops)-1].LastPosition()+1, 30, 8)
	mustAppendSync(t, l, more...)
	l.Close()
	l2, _ := openTest(t, dir, 1500)
	assertReadAll(t, l2, append(ops, more...))
	// FirstOpAt still knows every segment's first commit time.
	for _, op := range []*Op{ops[0], ops[17], more[5]} {
		if got := l2.FirstOpAt(op.Timestamp); got > op.Op {
			t.Fatalf("FirstOpAt(time of op %d) = %d, past it", op.Op, got)
		}
	}
}

// A torn, missing or mismatched index costs a read of its segment, which
// writes the index again; the log is the same.
func TestIndexInvalid(t *testing.T) {
	for _, tt := range []struct {
		name  string
		spoil func(t *testing.T, dir, seg string)
	}{
		{"missing", func(t *testing.T, dir, seg string) {
			os.Remove(filepath.Join(dir, indexName(seg)))
		}},
		{"torn", func(t *testing.T, dir, seg string) {
			rot(t, filepath.Join(dir, indexName(seg)), func(b []byte) []byte { return b[:len(b)/2] })
		}},
		{"bit flip", func(t *testing.T, dir, seg string) {
			rot(t, filepath.Join(dir, indexName(seg)), func(b []byte) []byte { b[70] ^= 1; return b })
		}},
		{"of another size", func(t *testing.T, dir, seg string) {
			rot(t, filepath.Join(dir, indexName(seg)), func(b []byte) []byte {
				x, err := decodeIndex(b)
				if err != nil {
					t.Fatal(err)
				}
				x.size += 10 // the last frame 10 bytes longer: valid, but not this segment
				return appendIndex(nil, x)
			})
		}},
		{"of another segment", func(t *testing.T, dir, seg string) {
			other := filepath.Join(dir, indexName(segmentFiles(t, dir)[0]))
			b, err := os.ReadFile(other)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, indexName(seg)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ops, segs := indexedLog(t, dir, 60)
			tt.spoil(t, dir, segs[2])
			l, rep := openTest(t, dir, 1500)
			if rep.Reindexed != 1 || rep.Indexed != len(segs)-2 {
				t.Fatalf("report %+v: want segment %s read and reindexed, the others trusted", rep, segs[2])
			}
			assertReadAll(t, l, ops)
			l.Close()
			_, rep = openTest(t, dir, 1500)
			if rep.Indexed != len(segs)-1 {
				t.Fatalf("after reindexing, report %+v", rep)
			}
		})
	}
}

// decodeIndex refuses what appendIndex did not write.
func TestDecodeIndexRejects(t *testing.T) {
	x := &segmentIndex{segmentHeader: segmentHeader{firstOp: 5, firstPos: 9}, size: segmentHeaderSize + 2*100,
		nextPos: 20, firstTS: 1, lastTS: 2, offsets: []int64{segmentHeaderSize, segmentHeaderSize + 100}}
	good := appendIndex(nil, x)
	if got, err := decodeIndex(good); err != nil || got.size != x.size || len(got.offsets) != 2 || got.offsets[1] != x.offsets[1] {
		t.Fatalf("decode = %+v, %v", got, err)
	}
	recrc := func(b []byte) []byte { return appendIndexCRC(b[:len(b)-4]) }
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short":          good[:40],
		"bad checksum":   append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1),
		"bad magic":      recrc(append([]byte("XMBIDX"), good[6:]...)),
		"lengths short":  recrc(append(bytes.Clone(good[:len(good)-5]), 99, 0, 0, 0, 0)),
		"trailing bytes": recrc(append(bytes.Clone(good[:len(good)-4]), 1, 0, 0, 0, 0)),
	} {
		if _, err := decodeIndex(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// appendIndexCRC appends the CRC32C an index ends with to b.
func appendIndexCRC(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Damage inside a sealed, indexed segment is not read at Open: a read of
// the op finds it (its checksum fails), Check and VerifyAll find it, and
// the log never answers with wrong data.
func TestCorruptSealedSegmentFoundOnRead(t *testing.T) {
	dir := t.TempDir()
	ops, segs := indexedLog(t, dir, 60)
	// The second op of the third segment.
	first, _ := parseSegmentName(segs[2])
	victim := first + 1
	off := int64(segmentHeaderSize) + frameSize(ops[first-1]) + frameHeaderSize + 3
	rot(t, filepath.Join(dir, segs[2]), func(b []byte) []byte { b[off] ^= 0x40; return b })

	l, rep := openTest(t, dir, 1500)
	if rep.Indexed != len(segs)-1 || len(rep.Corrupt) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := l.Read(victim); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of the damaged op = %v, want ErrCorrupt", err)
	}
	if err := l.Scan(0, func(*Op) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("scan = %v, want ErrCorrupt", err)
	}
	assertReadAll(t, l, ops[:victim-1])
	assertReadAll(t, l, ops[victim:])
	l.Close()

	damage, _, err := Check(Config{Dir: dir})
	if err != nil || len(damage) != 1 || damage[0].FirstOp != victim || damage[0].LastOp != victim {
		t.Fatalf("Check = %v, %v: want op %d damaged", damage, err, victim)
	}
	var ce *CorruptionError
	if _, _, err := open(Config{Dir: dir, SegmentSizeBytes: 1500, VerifyAll: true}, nil, nil); !errors.As(err, &ce) {
		t.Fatalf("open with VerifyAll = %v, want a CorruptionError", err)
	}
}

// A cut into a sealed segment (a view change dropping a long uncommitted
// suffix) removes its index first, so that a segment written anew to the
// same size is never described by its old index.
func TestTruncateIntoSealedSegmentDropsIndex(t *testing.T) {
	dir := t.TempDir()
	ops, segs := indexedLog(t, dir, 60)
	l, _ := openTest(t, dir, 1500)
	first, _ := parseSegmentName(segs[1])
	if err := l.TruncateAfter(first + 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, indexName(segs[1]))); err == nil {
		t.Fatal("the index of the segment cut is still there")
	}
	// Different ops of exactly the same sizes: the segment grows back to
	// its old size with other content.
	again := make([]*Op, 0)
	for _, op := range ops[first+1:] {
		o := *op
		o.Entries = append([]Entry(nil), op.Entries...)
		o.Entries[0].Value = bytes.Replace(bytes.Clone(o.Entries[0].Value), []byte(`"seed":7`), []byte(`"seed":8`), 1)
		again = append(again, &o)
	}
	mustAppendSync(t, l, again...)
	l.Close()
	l2, _ := openTest(t, dir, 1500)
	want := append(append([]*Op(nil), ops[:first+1]...), again...)
	assertReadAll(t, l2, want)
}

// RemoveBefore deletes whole segments below an op, durably; the log
// starts at the first segment kept, and says so after a restart.
func TestRemoveBefore(t *testing.T) {
	dir := t.TempDir()
	ops, segs := indexedLog(t, dir, 60)
	l, _ := openTest(t, dir, 1500)
	third, _ := parseSegmentName(segs[3])
	n, bytes, err := l.RemoveBefore(third + 1)
	if err != nil || n != 3 || bytes <= 0 {
		t.Fatalf("RemoveBefore = %d, %d, %v", n, bytes, err)
	}
	want := Start{Op: third, Position: ops[third-1].FirstPosition, Prev: ops[third-2].Chain}
	if got := l.Start(); got != want || l.FirstOp() != third {
		t.Fatalf("start %+v, first op %d; want %+v", got, l.FirstOp(), want)
	}
	if _, err := l.Read(third - 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read below the start = %v", err)
	}
	if c, err := l.ChainAt(third - 1); err != nil || c != ops[third-2].Chain {
		t.Fatalf("ChainAt(start-1) = %x, %v", c[:4], err)
	}
	var scanned []uint64
	l.Scan(0, func(op *Op) error { scanned = append(scanned, op.Op); return nil })
	if scanned[0] != third || len(scanned) != len(ops)-int(third)+1 {
		t.Fatalf("scan from the start read ops %d.. (%d)", scanned[0], len(scanned))
	}
	for _, s := range segs[:3] {
		for _, f := range []string{s, indexName(s)} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				t.Fatalf("%s is still there", f)
			}
		}
	}
	// Nothing below a segment boundary goes, nor the active segment.
	if n, _, _ := l.RemoveBefore(third + 1); n != 0 {
		t.Fatal("removed more")
	}
	if n, _, _ := l.RemoveBefore(1 << 40); n != len(segs)-4 || len(segmentFiles(t, dir)) != 1 {
		t.Fatal("did not keep exactly the active segment")
	}
	last := l.Start().Op
	l.Close()

	l2, rep := openTest(t, dir, 1500)
	if rep.FirstOp != last || l2.Start().Op != last {
		t.Fatalf("reopened: %+v, start %+v", rep, l2.Start())
	}
	assertReadAll(t, l2, ops[last-1:])
	more := genOps(61, ops[59].LastPosition()+1, 5, 9)
	mustAppendSync(t, l2, more...)
}

// A removal that a crash interrupted after recording the start is
// finished by Open; a first segment that went missing without one is
// still refused.
func TestRemoveBeforeInterrupted(t *testing.T) {
	dir := t.TempDir()
	ops, segs := indexedLog(t, dir, 60)
	second, _ := parseSegmentName(segs[2])
	l := &Log{dir: dir, fs: OS}
	d, err := OS.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.dirFile = d
	if err := l.writeStart(Start{Op: second, Position: ops[second-1].FirstPosition, Prev: ops[second-2].Chain}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	l2, rep := openTest(t, dir, 1500)
	if rep.FirstOp != second || len(segmentFiles(t, dir)) != len(segs)-2 {
		t.Fatalf("report %+v, segments %v", rep, segmentFiles(t, dir))
	}
	assertReadAll(t, l2, ops[second-1:])
	l2.Close()

	// Without START, a log whose first segment is gone is corrupt.
	if err := os.Remove(filepath.Join(dir, startFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := open(Config{Dir: dir, SegmentSizeBytes: 1500}, nil, nil); err == nil || !strings.Contains(err.Error(), "segment missing or misplaced") {
		t.Fatalf("open = %v", err)
	}
}

// Reset empties a log to start at any op; it appends and reopens from
// there.
func TestReset(t *testing.T) {
	dir := t.TempDir()
	ops, _ := indexedLog(t, dir, 40)
	l, _ := openTest(t, dir, 1500)
	at := Start{Op: 1001, Position: 5001, Prev: ops[39].Chain}
	if err := l.Reset(at); err != nil {
		t.Fatal(err)
	}
	if l.LastOp() != 1000 || l.FirstOp() != 0 || l.Start() != at || l.LastPosition() != 5000 {
		t.Fatalf("after reset: last op %d, first op %d, start %+v", l.LastOp(), l.FirstOp(), l.Start())
	}
	if err := l.Scan(0, func(*Op) error { t.Fatal("scanned an op"); return nil }); err != nil {
		t.Fatal(err)
	}
	if files := segmentFiles(t, dir); len(files) != 1 || files[0] != segmentName(1001) {
		t.Fatalf("segments %v", files)
	}
	l.Close()
	l2, _ := openTest(t, dir, 1500)
	if l2.Start() != at || l2.LastOp() != 1000 {
		t.Fatalf("reopened: start %+v, last op %d", l2.Start(), l2.LastOp())
	}
	more := genOps(1001, 5001, 30, 3)
	rechain(at.Prev, more)
	mustAppendSync(t, l2, more...)
	l2.Close()
	l3, _ := openTest(t, dir, 1500)
	assertReadAll(t, l3, more)
	if c, err := l3.ChainAt(1000); err != nil || c != at.Prev {
		t.Fatalf("ChainAt(1000) = %v", err)
	}
	if err := l3.TruncateAfter(999); err == nil {
		t.Fatal("truncated below the start")
	}
}

func FuzzDecodeIndex(f *testing.F) {
	x := &segmentIndex{segmentHeader: segmentHeader{firstOp: 5, firstPos: 9}, size: segmentHeaderSize + 2*100,
		nextPos: 20, offsets: []int64{segmentHeaderSize, segmentHeaderSize + 100}}
	f.Add(appendIndex(nil, x))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := decodeIndex(b)
		if err != nil {
			return
		}
		if !bytes.Equal(appendIndex(nil, x), b) {
			t.Fatal("an accepted index does not re-encode to itself")
		}
	})
}

func FuzzDecodeStart(f *testing.F) {
	f.Add(appendStart(nil, Start{Op: 7, Position: 30}))
	f.Add([]byte("KMBSTA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeStart(b)
		if err != nil {
			return
		}
		if !bytes.Equal(appendStart(nil, s), b) {
			t.Fatal("an accepted start does not re-encode to itself")
		}
	})
}

// FirstOpWithin finds the cut that leaves at most a number of bytes of
// segments, never the active one; RemovalStart where RemoveBefore of an
// op would start the log.
func TestFirstOpWithinAndRemovalStart(t *testing.T) {
	dir := t.TempDir()
	_, segs := indexedLog(t, dir, 60)
	l, _ := openTest(t, dir, 1500)
	first := make([]uint64, len(segs))
	size := make([]int64, len(segs))
	for i, s := range segs {
		first[i], _ = parseSegmentName(s)
		fi, err := os.Stat(filepath.Join(dir, s))
		if err != nil {
			t.Fatal(err)
		}
		size[i] = fi.Size()
	}
	last := len(segs) - 1
	total := int64(0)
	for _, b := range size {
		total += b
	}
	for _, tc := range []struct {
		name  string
		bytes int64
		want  uint64
	}{
		{"nothing fits: the active segment stays", 0, first[last]},
		{"exactly the active segment", size[last], first[last]},
		{"the active one and the one before", size[last] + size[last-1], first[last-1]},
		{"one byte short of two", size[last] + size[last-1] - 1, first[last]},
		{"the whole log", total, first[0]},
		{"more than the log", total * 2, first[0]},
	} {
		if got := l.FirstOpWithin(tc.bytes); got != tc.want {
			t.Errorf("%s: FirstOpWithin(%d) = %d, want %d", tc.name, tc.bytes, got, tc.want)
		}
	}
	for _, tc := range []struct{ op, want uint64 }{
		{0, first[0]},
		{1, first[0]},
		{first[1] - 1, first[0]},
		{first[1], first[1]},
		{first[2] + 1, first[2]},
		{1 << 40, first[last]},
	} {
		if got := l.RemovalStart(tc.op); got != tc.want {
			t.Errorf("RemovalStart(%d) = %d, want %d", tc.op, got, tc.want)
		}
	}
	// RemoveBefore agrees with both.
	cut := l.FirstOpWithin(size[last] + size[last-1])
	want := l.RemovalStart(cut)
	if _, _, err := l.RemoveBefore(cut); err != nil || l.Start().Op != want || l.SizeBytes() != size[last]+size[last-1] {
		t.Fatalf("RemoveBefore(%d): start %d, want %d; size %d, want %d; %v", cut, l.Start().Op, want, l.SizeBytes(), size[last]+size[last-1], err)
	}
}
