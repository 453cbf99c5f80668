package log

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
	"github.com/kmb-db/kmb/telemetry/metric"
)

func TestEmptyLog(t *testing.T) {
	dir := t.TempDir()
	l, rep := openTest(t, dir, 1<<20)
	want := RecoveryReport{Segments: 1}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("report = %+v, want %+v", rep, want)
	}
	if l.FirstOp() != 0 || l.LastOp() != 0 || l.DurableOp() != 0 || l.LastPosition() != 0 {
		t.Fatalf("empty log reports ops %d..%d durable %d position %d", l.FirstOp(), l.LastOp(), l.DurableOp(), l.LastPosition())
	}
	if got := segmentFiles(t, dir); len(got) != 1 || got[0] != segmentName(1) {
		t.Fatalf("segments = %v, want [%s]", got, segmentName(1))
	}
	if l.SizeBytes() != segmentHeaderSize {
		t.Fatalf("SizeBytes = %d, want %d", l.SizeBytes(), segmentHeaderSize)
	}
	for _, op := range []uint64{0, 1, 2} {
		if _, err := l.Read(op); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Read(%d) = %v, want ErrNotFound", op, err)
		}
	}
	if err := l.Scan(0, func(*Op) error { t.Fatal("Scan called fn on an empty log"); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTripAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	const segSize = 2048
	ops := genOps(1, 1, 300, 1)

	l, _ := openTest(t, dir, segSize)
	// Batches of varying size, so that rolls happen at batch boundaries and
	// inside batches.
	rng := rand.New(rand.NewPCG(1, 2))
	for rest := ops; len(rest) > 0; {
		n := min(1+rng.IntN(12), len(rest))
		mustAppendSync(t, l, rest[:n]...)
		rest = rest[n:]
	}
	assertReadAll(t, l, ops)
	last := ops[len(ops)-1]
	if l.FirstOp() != 1 || l.LastOp() != last.Op || l.DurableOp() != last.Op || l.LastPosition() != last.LastPosition() {
		t.Fatalf("ops %d..%d durable %d position %d, want 1..%d durable %[4]d position %d",
			l.FirstOp(), l.LastOp(), l.DurableOp(), l.LastPosition(), last.Op, last.LastPosition())
	}
	names := segmentFiles(t, dir)
	if len(names) < 10 {
		t.Fatalf("only %d segments for %d bytes with a %d byte roll size", len(names), dirSize(t, dir), segSize)
	}
	if got := dirSize(t, dir); l.SizeBytes() != got {
		t.Fatalf("SizeBytes = %d, files hold %d", l.SizeBytes(), got)
	}
	checkSegmentLayout(t, dir, ops, segSize)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2, rep := openTest(t, dir, segSize)
	// Every sealed segment was indexed when it was sealed, and trusted.
	want := RecoveryReport{Segments: len(names), FirstOp: 1, LastOp: last.Op, Indexed: len(names) - 1}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("report = %+v, want %+v", rep, want)
	}
	assertReadAll(t, l2, ops)
	if l2.LastPosition() != last.LastPosition() {
		t.Fatalf("LastPosition after reopen = %d, want %d", l2.LastPosition(), last.LastPosition())
	}
	var scanned []*Op
	if err := l2.Scan(0, func(op *Op) error { scanned = append(scanned, op); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(scanned) != len(ops) {
		t.Fatalf("Scan saw %d ops, want %d", len(scanned), len(ops))
	}
	for i, op := range scanned {
		assertOpEqual(t, *op, ops[i])
	}
}

// checkSegmentLayout checks that each segment is named after its first op,
// holds contiguous ops, and was rolled at the first record starting at or
// past segSize. Only the last segment may be empty.
func checkSegmentLayout(t *testing.T, dir string, ops []*Op, segSize int64) {
	t.Helper()
	names := segmentFiles(t, dir)
	i := 0
	for k, name := range names {
		if i == len(ops) && k == len(names)-1 {
			nextOp, _ := next(ops)
			if name != segmentName(nextOp) || fileSize(t, filepath.Join(dir, name)) != segmentHeaderSize {
				t.Fatalf("last segment %s, want an empty %s", name, segmentName(nextOp))
			}
			return
		}
		if i == len(ops) {
			t.Fatalf("segment %s after the last op", name)
		}
		if name != segmentName(ops[i].Op) {
			t.Fatalf("segment %d is %s, want %s", k, name, segmentName(ops[i].Op))
		}
		size := int64(segmentHeaderSize)
		for ; i < len(ops) && (size < segSize || size == segmentHeaderSize); i++ {
			size += frameSize(ops[i])
		}
		if got := fileSize(t, filepath.Join(dir, name)); got != size {
			t.Fatalf("segment %s has %d bytes, want %d", name, got, size)
		}
	}
	if i != len(ops) {
		t.Fatalf("segments hold %d ops, want %d", i, len(ops))
	}
}

func TestSegmentGolden(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, 1<<20)
	second := *goldenOp()
	second.Op, second.FirstPosition, second.Entries = 2, 3, second.Entries[:1]
	first := *goldenOp()
	first.Op, first.FirstPosition = 1, 1
	mustAppendSync(t, l, &first, &second)
	b, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	fuzzseed.Golden(t, *update, "segment_v2.golden", b)
}

func TestReadRequiresSync(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), 1<<20)
	ops := genOps(1, 1, 10, 1)
	mustAppendSync(t, l, ops[:5]...)
	if err := l.Append(ops[5:]...); err != nil {
		t.Fatal(err)
	}
	if l.LastOp() != 10 || l.DurableOp() != 5 {
		t.Fatalf("LastOp %d DurableOp %d, want 10 and 5", l.LastOp(), l.DurableOp())
	}
	for _, op := range ops[5:] {
		if _, err := l.Read(op.Op); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Read(%d) before Sync = %v, want ErrNotFound", op.Op, err)
		}
	}
	n := 0
	if err := l.Scan(1, func(*Op) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("Scan before Sync saw %d ops (%v), want 5", n, err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	assertReadAll(t, l, ops)
}

func TestAppendRejects(t *testing.T) {
	ops := genOps(1, 1, 4, 1)
	tests := []struct {
		name  string
		first []*Op // appended and synced first
		bad   []*Op
		want  error
	}{
		{"empty log must start at op 1", nil, []*Op{withOp(ops[0], 2, 1)}, ErrNotContiguous},
		{"empty log must start at position 1", nil, []*Op{withOp(ops[0], 1, 2)}, ErrNotContiguous},
		{"gap in ops", ops[:2], []*Op{withOp(ops[2], 4, ops[2].FirstPosition)}, ErrNotContiguous},
		{"repeated op", ops[:2], []*Op{ops[1]}, ErrNotContiguous},
		{"gap in positions", ops[:2], []*Op{withOp(ops[2], 3, ops[2].FirstPosition+1)}, ErrNotContiguous},
		{"overlapping positions", ops[:2], []*Op{withOp(ops[2], 3, ops[2].FirstPosition-1)}, ErrNotContiguous},
		{"bad op after good ones", ops[:1], []*Op{ops[1], ops[2], ops[2]}, ErrNotContiguous},
		{"nil op", ops[:1], []*Op{ops[1], nil}, ErrNotContiguous},
		{"too large", ops[:1], []*Op{ops[1], {Op: 3, FirstPosition: ops[1].LastPosition() + 1,
			Entries: []Entry{{Key: "k", Value: make([]byte, MaxRecordSize)}}}}, ErrRecordTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := openTest(t, dir, 1<<20)
			if len(tt.first) > 0 {
				mustAppendSync(t, l, tt.first...)
			}
			lastOp, lastPos, size := l.LastOp(), l.LastPosition(), dirSize(t, dir)
			if err := l.Append(tt.bad...); !errors.Is(err, tt.want) {
				t.Fatalf("Append = %v, want %v", err, tt.want)
			}
			if l.LastOp() != lastOp || l.LastPosition() != lastPos || dirSize(t, dir) != size || l.SizeBytes() != size {
				t.Fatalf("a rejected Append changed the log")
			}
			// The log is still usable.
			good := genOps(lastOp+1, lastPos+1, 2, 9)
			mustAppendSync(t, l, good...)
			assertReadAll(t, l, append(append([]*Op(nil), tt.first...), good...))
		})
	}
}

func withOp(op *Op, n, pos uint64) *Op {
	o := *op
	o.Op, o.FirstPosition = n, pos
	return &o
}

func TestAppendNothing(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), 1<<20)
	if err := l.Append(); err != nil {
		t.Fatal(err)
	}
	if l.LastOp() != 0 {
		t.Fatalf("LastOp = %d", l.LastOp())
	}
}

func TestOpsWithoutEntries(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, 1<<20)
	ops := []*Op{
		{Op: 1, FirstPosition: 1},
		{Op: 2, FirstPosition: 1, Entries: []Entry{{Key: "a"}}},
		{Op: 3, FirstPosition: 2},
		{Op: 4, FirstPosition: 2, Entries: []Entry{{Key: "b"}}},
	}
	mustAppendSync(t, l, ops...)
	if l.LastPosition() != 2 {
		t.Fatalf("LastPosition = %d, want 2", l.LastPosition())
	}
	l.Close()
	l, _ = openTest(t, dir, 1<<20)
	assertReadAll(t, l, ops)
	if l.LastPosition() != 2 {
		t.Fatalf("LastPosition after reopen = %d, want 2", l.LastPosition())
	}
}

func TestScan(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), 4096)
	ops := genOps(1, 1, 50, 1)
	mustAppendSync(t, l, ops...)
	stop := errors.New("stop")
	tests := []struct {
		name    string
		from    uint64
		stopAt  uint64 // fn returns stop at this op; 0 never
		want    []uint64
		wantErr error
	}{
		{"all from 0", 0, 0, seq(1, 50), nil},
		{"all from 1", 1, 0, seq(1, 50), nil},
		{"from the middle", 23, 0, seq(23, 50), nil},
		{"from the last", 50, 0, seq(50, 50), nil},
		{"past the end", 51, 0, nil, nil},
		{"stopped by fn", 10, 12, seq(10, 12), stop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			err := l.Scan(tt.from, func(op *Op) error {
				assertOpEqual(t, *op, ops[op.Op-1])
				got = append(got, op.Op)
				if op.Op == tt.stopAt {
					return stop
				}
				return nil
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Scan = %v, want %v", err, tt.wantErr)
			}
			if !slicesEqual(got, tt.want) {
				t.Fatalf("Scan saw ops %v, want %v", got, tt.want)
			}
		})
	}
}

// TestScanLargeRecords exercises Scan's chunking: records larger than a
// chunk, and chunks holding several records.
func TestScanLargeRecords(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), 8<<20)
	sizes := []int{100, scanChunkSize + 1000, 300 << 10, 300 << 10, 300 << 10, 300 << 10, 10, scanChunkSize * 2, 5}
	var ops []*Op
	pos := uint64(1)
	for i, n := range sizes {
		op := &Op{Op: uint64(i + 1), FirstPosition: pos, Tenant: "t",
			Entries: []Entry{{Key: "k", Value: bytes.Repeat([]byte{byte('a' + i)}, n)}}}
		pos++
		ops = append(ops, op)
	}
	mustAppendSync(t, l, ops...)
	i := 0
	if err := l.Scan(0, func(op *Op) error { assertOpEqual(t, *op, ops[i]); i++; return nil }); err != nil {
		t.Fatal(err)
	}
	if i != len(ops) {
		t.Fatalf("Scan saw %d ops, want %d", i, len(ops))
	}
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReadDetectsCorruption(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, 1<<20)
	ops := genOps(1, 1, 5, 1)
	mustAppendSync(t, l, ops...)
	// Damage op 3 behind the log's back.
	at := int64(segmentHeaderSize) + frameSize(ops[0]) + frameSize(ops[1]) + frameHeaderSize + 3
	mutateFile(t, filepath.Join(dir, segmentName(1)), func(b []byte) []byte { b[at] ^= 0x40; return b })

	if _, err := l.Read(3); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), reasonChecksum) {
		t.Fatalf("Read of a damaged record = %v, want a checksum error", err)
	}
	assertReadAll(t, l, ops[:2])
	assertReadAll(t, l, ops[3:])
	n := 0
	err := l.Scan(1, func(*Op) error { n++; return nil })
	if !errors.Is(err, ErrCorrupt) || n != 2 {
		t.Fatalf("Scan over a damaged record = %v after %d ops, want ErrCorrupt after 2", err, n)
	}
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, 1<<20)
	ops := genOps(1, 1, 3, 1)
	if err := l.Append(ops...); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Close syncs what was appended.
	l2, rep := openTest(t, dir, 1<<20)
	if rep.LastOp != 3 || rep.TruncatedBytes != 0 {
		t.Fatalf("report after Close = %+v", rep)
	}
	assertReadAll(t, l2, ops)

	for name, call := range map[string]func() error{
		"Append":        func() error { return l.Append(genOps(4, ops[2].LastPosition()+1, 1, 1)...) },
		"Sync":          l.Sync,
		"TruncateAfter": func() error { return l.TruncateAfter(1) },
		"Close":         l.Close,
		"Read":          func() error { _, err := l.Read(1); return err },
		"Scan":          func() error { return l.Scan(1, func(*Op) error { return nil }) },
	} {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	reg := metric.NewRegistry()
	m := NewMetrics(reg)
	l, _, err := open(Config{Dir: dir, SegmentSizeBytes: 1024}, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fsyncsAtOpen := m.FsyncDuration.Snapshot().Count
	ops := genOps(1, 1, 40, 1)
	mustAppendSync(t, l, ops...)

	var entries, bytes uint64
	for _, op := range ops {
		entries += uint64(len(op.Entries))
		bytes += uint64(frameSize(op))
	}
	segs := uint64(len(segmentFiles(t, dir)))
	if got := m.Entries.Value(); got != entries {
		t.Errorf("entries = %d, want %d", got, entries)
	}
	if got := m.Bytes.Value(); got != bytes {
		t.Errorf("bytes = %d, want %d", got, bytes)
	}
	if got := m.SegmentsRolled.Value(); got != segs-1 {
		t.Errorf("segments rolled = %d, want %d", got, segs-1)
	}
	// One fsync per sealed segment, then the active one and the directory.
	if got := m.FsyncDuration.Snapshot().Count - fsyncsAtOpen; got != segs-1+2 {
		t.Errorf("fsyncs = %d, want %d", got, segs+1)
	}
	if int64(bytes)+int64(segs)*segmentHeaderSize != l.SizeBytes() {
		t.Errorf("SizeBytes = %d, want %d", l.SizeBytes(), int64(bytes)+int64(segs)*segmentHeaderSize)
	}
	// Syncing with nothing new costs no fsync.
	before := m.FsyncDuration.Snapshot().Count
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := m.FsyncDuration.Snapshot().Count; got != before {
		t.Errorf("an idle Sync fsynced %d times", got-before)
	}
	names := map[string]bool{}
	for _, f := range reg.Gather() {
		names[f.Name] = true
	}
	for _, n := range []string{"kmb_log_entries_total", "kmb_log_bytes_total", "kmb_log_fsync_duration_seconds", "kmb_log_segments_rolled_total"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
}

func TestNilMetricFields(t *testing.T) {
	l, _, err := open(Config{Dir: t.TempDir(), SegmentSizeBytes: 512}, nil, &Metrics{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mustAppendSync(t, l, genOps(1, 1, 20, 1)...)
}

// TestConcurrentReaders runs readers and scanners against a writer that
// appends and syncs; run it with -race. Readers check that exactly the
// durable ops are readable, and read back exactly as written.
func TestConcurrentReaders(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), 4096)
	ops := genOps(1, 1, 600, 3)
	done := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 0))
			for reads := 0; ; reads++ {
				select {
				case <-done:
					if reads > 0 {
						return
					}
				default:
				}
				// Any op up to the last appended one: durable ones must
				// read back as written, the others must not be found.
				before := l.DurableOp()
				n := 1 + rng.Uint64N(l.LastOp()+1)
				got, err := l.Read(n)
				after := l.DurableOp()
				switch {
				case errors.Is(err, ErrNotFound):
					if n <= before {
						errc <- fmt.Errorf("durable op %d not found", n)
						return
					}
				case err != nil:
					errc <- err
					return
				case n > after:
					errc <- fmt.Errorf("read op %d beyond DurableOp %d", n, after)
					return
				default:
					if w := normalized(ops[n-1]); !reflect.DeepEqual(got, w) {
						errc <- fmt.Errorf("op %d read back differently", n)
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			want := uint64(1)
			if err := l.Scan(1, func(op *Op) error {
				if op.Op != want {
					return errors.New("scan out of order")
				}
				want++
				return nil
			}); err != nil {
				errc <- err
				return
			}
		}
	}()
	for rest := ops; len(rest) > 0; {
		n := min(7, len(rest))
		mustAppendSync(t, l, rest[:n]...)
		rest = rest[n:]
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// TestFailedWriteIsSticky checks that after a failed write the log refuses
// to go on: the state on disk is unknown until recovery reads it.
func TestFailedWriteIsSticky(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, 1<<20)
	ops := genOps(1, 1, 6, 1)
	mustAppendSync(t, l, ops[:3]...)
	l.active.f.Close() // make the next write fail
	if err := l.Append(ops[3:]...); err == nil {
		t.Fatal("Append to a closed file succeeded")
	}
	for name, call := range map[string]func() error{
		"Append":        func() error { return l.Append(ops[3:]...) },
		"Sync":          l.Sync,
		"TruncateAfter": func() error { return l.TruncateAfter(1) },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "unusable") {
			t.Errorf("%s after a failed write = %v, want an unusable error", name, err)
		}
	}
	l.Close()

	l, rep := openTest(t, dir, 1<<20)
	if rep.LastOp != 3 {
		t.Fatalf("report after the failure = %+v", rep)
	}
	mustAppendSync(t, l, ops[3:]...)
	assertReadAll(t, l, ops)
}

// AppendEncoded writes the encodings it is given (a backup's, as its
// primary encoded them): the log is byte for byte what Append writes, and
// an encoding that cannot be the op's, or a count that does not match, is
// refused and changes nothing.
func TestAppendEncoded(t *testing.T) {
	ops := genOps(1, 1, 6, 3)
	a, b := t.TempDir(), t.TempDir()
	la, _ := openTest(t, a, 1<<20)
	lb, _ := openTest(t, b, 1<<20)
	mustAppendSync(t, la, ops...)
	enc := make([][]byte, len(ops))
	for i, op := range ops {
		if i%2 == 0 { // some with, some without an encoding
			enc[i] = AppendOp(nil, op)
		}
	}
	if err := lb.AppendEncoded(ops, enc); err != nil {
		t.Fatal(err)
	}
	if err := lb.Sync(); err != nil {
		t.Fatal(err)
	}
	assertReadAll(t, lb, ops)
	ea, _ := os.ReadFile(filepath.Join(a, segmentName(1)))
	eb, _ := os.ReadFile(filepath.Join(b, segmentName(1)))
	if !bytes.Equal(ea, eb) {
		t.Fatal("AppendEncoded wrote other bytes than Append")
	}

	next := genOps(7, ops[5].LastPosition()+1, 2, 3)
	size := dirSize(t, b)
	short := AppendOp(nil, next[0])
	for _, bad := range [][][]byte{{short[:len(short)-1], nil}, {nil}} {
		if err := lb.AppendEncoded(next, bad); err == nil {
			t.Fatalf("AppendEncoded(%d encodings) succeeded", len(bad))
		}
		if lb.LastOp() != 6 || dirSize(t, b) != size {
			t.Fatal("a refused AppendEncoded changed the log")
		}
	}
}
