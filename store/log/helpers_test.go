package log

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files and fuzz seed corpora in testdata")

// genOps returns n deterministic ops continuing a log whose next op is
// first and next position is pos. seed varies the content, so that tests
// can tell a rewritten suffix from the original.
func genOps(first, pos uint64, n int, seed uint64) []*Op {
	rng := rand.New(rand.NewPCG(seed, first))
	ops := make([]*Op, n)
	for i := range ops {
		op := &Op{
			Op:            first + uint64(i),
			View:          1 + uint64(i)/7,
			Timestamp:     1_700_000_000_000_000_000 + int64(first+uint64(i))*1_000_003,
			Tenant:        fmt.Sprintf("tenant-%d", rng.IntN(3)),
			FirstPosition: pos,
			ClientID:      rng.Uint64N(1000),
			RequestID:     rng.Uint64(),
		}
		op.Entries = make([]Entry, 1+rng.IntN(4))
		for j := range op.Entries {
			op.Entries[j] = Entry{
				Key:   fmt.Sprintf("key-%d", rng.IntN(100)),
				Value: fmt.Appendf(nil, `{"seed":%d,"n":%d,"pad":"%s"}`, seed, rng.IntN(1e6), strings.Repeat("x", rng.IntN(60))),
			}
		}
		pos += uint64(len(op.Entries))
		ops[i] = op
	}
	rechain(Chain{}, ops)
	return ops
}

// rechain sets the chain hashes of ops, which continue an op whose chain
// hash is prev. Ops from genOps chain from the zero hash; tests appending
// them after other ops rechain them from the log's last op first.
func rechain(prev Chain, ops []*Op) {
	for _, op := range ops {
		op.Chain = ChainHash(prev, op)
		prev = op.Chain
	}
}

// header is a segment header for a log starting at op 1, or the header of
// a segment continuing ops.
func header(firstOp uint64, ops []*Op) []byte {
	h := segmentHeader{firstOp: firstOp, firstPos: 1}
	if len(ops) > 0 {
		last := ops[len(ops)-1]
		h.firstPos, h.prevChain = last.LastPosition()+1, last.Chain
	}
	return appendSegmentHeader(nil, h)
}

// next returns the op number and position that follow ops.
func next(ops []*Op) (uint64, uint64) {
	last := ops[len(ops)-1]
	return last.Op + 1, last.LastPosition() + 1
}

// normalized returns a copy of op in the shape DecodeOp produces: nil
// rather than empty values and entries.
func normalized(op *Op) Op {
	o := *op
	if len(o.Entries) == 0 {
		o.Entries = nil
		return o
	}
	o.Entries = append([]Entry(nil), o.Entries...)
	for i := range o.Entries {
		if len(o.Entries[i].Value) == 0 {
			o.Entries[i].Value = nil
		}
	}
	return o
}

func assertOpEqual(t testing.TB, got Op, want *Op) {
	t.Helper()
	if w := normalized(want); !reflect.DeepEqual(got, w) {
		t.Fatalf("op %d differs:\n got %+v\nwant %+v", want.Op, got, w)
	}
}

// openTest opens a log in dir, bypassing Validate so that segments can be
// tiny, and closes it at the end of the test.
func openTest(t testing.TB, dir string, segSize int64) (*Log, RecoveryReport) {
	t.Helper()
	l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: segSize}, nil, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return l, rep
}

func mustAppendSync(t testing.TB, l *Log, ops ...*Op) {
	t.Helper()
	rechain(l.prev, ops)
	if err := l.Append(ops...); err != nil {
		t.Fatalf("append: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// assertReadAll checks that ops read back exactly.
func assertReadAll(t testing.TB, l *Log, ops []*Op) {
	t.Helper()
	for _, want := range ops {
		got, err := l.Read(want.Op)
		if err != nil {
			t.Fatalf("read op %d: %v", want.Op, err)
		}
		assertOpEqual(t, got, want)
	}
}

// segmentFiles lists the segment files in dir.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := listSegments(OS, dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// dirSize sums the sizes of the segment files in dir.
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, name := range segmentFiles(t, dir) {
		n += fileSize(t, filepath.Join(dir, name))
	}
	return n
}

// frameSize is the on-disk size of op's record.
func frameSize(op *Op) int64 { return int64(frameHeaderSize + EncodedSize(op)) }

// mutateFile applies f to the contents of path. A segment's index goes
// with it: the tests that damage segments this way are about what Open
// finds when it reads a segment (every segment without a valid index, and
// every segment for Check and VerifyAll); rot damages a segment behind its
// index's back.
func mutateFile(t testing.TB, path string, f func([]byte) []byte) {
	t.Helper()
	if strings.HasSuffix(path, segmentExt) {
		if err := os.Remove(strings.TrimSuffix(path, segmentExt) + indexExt); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	rot(t, path, f)
}

// rot applies f to the contents of path and nothing else.
func rot(t testing.TB, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

// withoutIndexCounts is rep with the counts of indexed segments cleared,
// for tests about what recovery cut rather than how it read.
func withoutIndexCounts(rep RecoveryReport) RecoveryReport {
	rep.Indexed, rep.Reindexed = 0, 0
	return rep
}
