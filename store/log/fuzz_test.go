package log

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
)

// Recovery fuzz modes: what the fuzzer's bytes become.
const (
	fuzzRawFile       = iota // the whole of the only segment file
	fuzzAfterHeader          // the only segment, after a valid header
	fuzzSecondSegment        // a second segment, after a valid header, behind a valid first one
	fuzzModes
)

// fuzzFirstSegment are the ops of the valid first segment in
// fuzzSecondSegment mode.
var fuzzFirstSegment = genOps(1, 1, 3, 11)

// FuzzRecover writes arbitrary bytes as a segment and opens the log. Open
// must never panic; whenever the damage is confined to the last segment it
// must succeed; and what it keeps must be a log of whole, checksummed,
// contiguous records that a second Open accepts without cutting anything.
func FuzzRecover(f *testing.F) {
	for _, s := range recoverSeeds() {
		f.Add(s.mode, s.data)
	}
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		mode %= fuzzModes
		dir := fuzzTempDir(t)
		var kept []*Op
		switch mode {
		case fuzzRawFile:
			writeFile(t, dir, segmentName(1), data)
		case fuzzAfterHeader:
			writeFile(t, dir, segmentName(1), append(header(1, nil), data...))
		case fuzzSecondSegment:
			kept = fuzzFirstSegment
			first := header(1, nil)
			for _, op := range kept {
				first = append(first, encodedFrame(op)...)
			}
			writeFile(t, dir, segmentName(1), first)
			writeFile(t, dir, segmentName(4), append(header(4, kept), data...))
		}

		l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: 1 << 20}, nil, nil)
		var corrupt *CorruptionError
		if errors.As(err, &corrupt) {
			// Damage followed by valid records: never cut. A replica
			// keeps the log whole, with the damaged ops held for repair.
			checkTolerated(t, dir, corrupt)
			return
		}
		if err != nil {
			if mode != fuzzRawFile {
				t.Fatalf("open failed although only the last segment was damaged: %v", err)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open failed with an error that does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		defer l.Close()

		// Every op the log reports is readable, checksummed and in order.
		var size int64
		n := uint64(0)
		err = l.Scan(0, func(op *Op) error {
			n++
			if op.Op != n {
				return fmt.Errorf("scan gave op %d, want %d", op.Op, n)
			}
			size += frameSize(op)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != l.LastOp() || n != rep.LastOp || n < uint64(len(kept)) {
			t.Fatalf("scanned %d ops, LastOp %d, report %+v", n, l.LastOp(), rep)
		}
		assertReadAll(t, l, kept)
		segs := segmentFiles(t, dir)
		if want := size + int64(len(segs))*segmentHeaderSize; dirSize(t, dir) != want || l.SizeBytes() != want {
			t.Fatalf("files hold %d bytes, SizeBytes %d, records and headers %d", dirSize(t, dir), l.SizeBytes(), want)
		}

		// Recovery is idempotent, and the log takes appends.
		more := genOps(n+1, l.LastPosition()+1, 2, 1)
		mustAppendSync(t, l, more...)
		l.Close()
		l2, rep2, err := open(Config{Dir: dir, SegmentSizeBytes: 1 << 20}, nil, nil)
		if err != nil {
			t.Fatalf("second open: %v", err)
		}
		defer l2.Close()
		if rep2.TruncatedBytes != 0 || rep2.LastOp != n+2 {
			t.Fatalf("second open report %+v", rep2)
		}
		assertReadAll(t, l2, more)
	})
}

// checkTolerated opens a log that Open refused as corrupt with
// TolerateCorruption: it must open, report the same damage, and refuse to
// read (never misread) the ops the damage held.
func checkTolerated(t *testing.T, dir string, corrupt *CorruptionError) {
	t.Helper()
	l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: 1 << 20, TolerateCorruption: true}, nil, nil)
	if err != nil {
		t.Fatalf("open refused with %v, but tolerating corruption it fails: %v", corrupt, err)
	}
	defer l.Close()
	if !reflect.DeepEqual(rep.Corrupt, corrupt.Damage) {
		t.Fatalf("tolerated damage %+v, refused damage %+v", rep.Corrupt, corrupt.Damage)
	}
	for _, d := range l.Faulty() {
		for op := d.FirstOp; op <= d.LastOp; op++ {
			if _, err := l.Read(op); !errors.Is(err, ErrFaulty) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read of faulty op %d = %v, want ErrFaulty", op, err)
			}
		}
		if err := l.Scan(0, func(*Op) error { return nil }); !errors.Is(err, ErrFaulty) {
			t.Fatalf("Scan across faulty ops = %v, want ErrFaulty", err)
		}
	}
}

// fuzzTempDir is t.TempDir, on tmpfs where there is one: fsync is then
// free, and the fuzzer runs many times more inputs.
func fuzzTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "kmb-log-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func writeFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

type recoverSeed struct {
	mode byte
	data []byte
}

// recoverSeeds are FuzzRecover's seed corpus: valid segments and the
// damage that TestTornTail applies to them.
func recoverSeeds() []recoverSeed {
	ops := genOps(1, 1, 3, 1)
	var records []byte
	for _, op := range ops {
		records = append(records, encodedFrame(op)...)
	}
	cont := genOps(4, fuzzFirstSegment[2].LastPosition()+1, 2, 1)
	rechain(fuzzFirstSegment[2].Chain, cont)
	var contRecords []byte
	for _, op := range cont {
		contRecords = append(contRecords, encodedFrame(op)...)
	}
	flipped := bytes.Clone(records)
	flipped[len(flipped)-5] ^= 1
	return []recoverSeed{
		{fuzzRawFile, nil},
		{fuzzRawFile, append(header(1, nil), records...)},
		{fuzzRawFile, append(make([]byte, segmentHeaderSize), records...)},
		{fuzzRawFile, header(1, nil)[:9]},
		{fuzzAfterHeader, nil},
		{fuzzAfterHeader, records},
		{fuzzAfterHeader, records[:len(records)-7]},
		{fuzzAfterHeader, flipped},
		{fuzzAfterHeader, append(bytes.Clone(records), make([]byte, 64)...)},
		{fuzzAfterHeader, append(bytes.Clone(records), rawFrame([]byte{2, 0, 0})...)},
		{fuzzSecondSegment, contRecords},
		{fuzzSecondSegment, contRecords[:len(contRecords)-1]},
		{fuzzSecondSegment, records},
	}
}

// TestFuzzSeedCorpora keeps testdata/fuzz in step with the seeds above:
// -update rewrites it. The committed corpus also holds any crashers found
// by fuzzing, which this test leaves alone.
func TestFuzzSeedCorpora(t *testing.T) {
	var ops [][]byte
	for _, op := range fuzzSeedOps() {
		ops = append(ops, AppendOp(nil, op))
	}
	headers := [][]byte{header(1, nil), header(1<<40, nil), make([]byte, segmentHeaderSize)}
	var recoveries [][]any
	for _, s := range recoverSeeds() {
		recoveries = append(recoveries, []any{s.mode, s.data})
	}
	fuzzseed.Check(t, *update, "FuzzDecodeOp", fuzzseed.Numbered(ops))
	fuzzseed.Check(t, *update, "FuzzSegmentHeader", fuzzseed.Numbered(headers))
	fuzzseed.Check(t, *update, "FuzzRecover", fuzzseed.Numbered(recoveries))
}
