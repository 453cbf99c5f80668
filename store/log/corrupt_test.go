package log

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestCorruptionIsNotTornTail damages records that whole records follow:
// no torn write explains that, so Open must refuse and change nothing;
// with TolerateCorruption it keeps the log's length, holds the damaged ops
// for repair without ever serving them, and Repair with the original ops
// makes the log whole again.
func TestCorruptionIsNotTornTail(t *testing.T) {
	const n = 30
	ops := genOps(1, 1, n, 1)
	// offsets[i] is where op i+1's record starts in a single segment.
	offsets := make([]int64, n)
	at := int64(segmentHeaderSize)
	for i, op := range ops {
		offsets[i] = at
		at += frameSize(op)
	}
	recordOf := func(op uint64) (int64, int64) { return offsets[op-1], frameSize(ops[op-1]) }

	tests := []struct {
		name    string
		segSize int64
		damage  func(t *testing.T, dir string)
		want    []Damage // Segment, FirstOp, LastOp and Reason checked
	}{
		{"payload bit flip in the middle", 1 << 20, func(t *testing.T, dir string) {
			off, _ := recordOf(12)
			flip(t, dir, segmentName(1), off+frameHeaderSize+20)
		}, []Damage{{FirstOp: 12, LastOp: 12, Reason: reasonChecksum}}},
		{"length field of a record destroyed", 1 << 20, func(t *testing.T, dir string) {
			off, _ := recordOf(7)
			mutateFile(t, filepath.Join(dir, segmentName(1)), func(b []byte) []byte {
				binary.LittleEndian.PutUint32(b[off:], 0xdeadbeef)
				return b
			})
		}, []Damage{{FirstOp: 7, LastOp: 7, Reason: reasonBadLength}}},
		{"three records zeroed", 1 << 20, func(t *testing.T, dir string) {
			off, _ := recordOf(20)
			end, size := recordOf(22)
			mutateFile(t, filepath.Join(dir, segmentName(1)), func(b []byte) []byte { clear(b[off : end+size]); return b })
		}, []Damage{{FirstOp: 20, LastOp: 22, Reason: reasonBadLength}}},
		{"misdirected write: a copy of an older record", 1 << 20, func(t *testing.T, dir string) {
			// Op 3's record written where op 15's was, both of one size.
			src, size := recordOf(3)
			dst, dsize := recordOf(15)
			if size > dsize {
				t.Skip("records of these ops differ in size")
			}
			mutateFile(t, filepath.Join(dir, segmentName(1)), func(b []byte) []byte {
				copy(b[dst:], b[src:src+size])
				return b
			})
		}, []Damage{{FirstOp: 15, LastOp: 15, Reason: reasonOpGap}}},
		{"two damaged runs", 1 << 20, func(t *testing.T, dir string) {
			a, _ := recordOf(5)
			b, _ := recordOf(25)
			flip(t, dir, segmentName(1), a+frameHeaderSize+3)
			flip(t, dir, segmentName(1), b+frameHeaderSize+3)
		}, []Damage{{FirstOp: 5, LastOp: 5, Reason: reasonChecksum}, {FirstOp: 25, LastOp: 25, Reason: reasonChecksum}}},
		{"end of a sealed segment cut", 1500, func(t *testing.T, dir string) {
			segs := segmentFiles(t, dir)
			mutateFile(t, filepath.Join(dir, segs[0]), func(b []byte) []byte { return b[:len(b)-10] })
		}, []Damage{{Reason: reasonShortRecord}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := openTest(t, dir, tt.segSize)
			mustAppendSync(t, l, ops...)
			l.Close()
			tt.damage(t, dir)
			before := snapshotDir(t, dir)

			// A single node: refuse, naming the place, changing nothing.
			_, _, err := open(Config{Dir: dir, SegmentSizeBytes: tt.segSize}, nil, nil)
			var ce *CorruptionError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open = %v, want a CorruptionError", err)
			}
			if len(ce.Damage) != len(tt.want) {
				t.Fatalf("damage %+v, want %d runs", ce.Damage, len(tt.want))
			}
			for i, w := range tt.want {
				d := ce.Damage[i]
				if w.FirstOp == 0 { // the cut end of a sealed segment: its last op
					segs := segmentFiles(t, dir)
					next, _ := parseSegmentName(segs[1])
					w.FirstOp, w.LastOp = next-1, next-1
				}
				if d.FirstOp != w.FirstOp || d.LastOp != w.LastOp || d.Reason != w.Reason || d.Tail {
					t.Fatalf("damage %d = %+v, want ops %d..%d, %s", i, d, w.FirstOp, w.LastOp, w.Reason)
				}
				tt.want[i] = w
			}
			msg := err.Error()
			for _, s := range []string{ce.Damage[0].Segment, "offset", "not a torn write"} {
				if !strings.Contains(msg, s) {
					t.Fatalf("error %q does not mention %q", msg, s)
				}
			}
			if after := snapshotDir(t, dir); !mapsEqual(before, after) {
				t.Fatal("a refused Open changed files")
			}

			// Check reports the same, and changes nothing either.
			found, _, err := Check(Config{Dir: dir})
			if err != nil || !reflect.DeepEqual(found, ce.Damage) {
				t.Fatalf("Check = %+v, %v; Open refused with %+v", found, err, ce.Damage)
			}

			// A replica: keep everything, hold the damaged ops.
			l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: tt.segSize, TolerateCorruption: true}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if rep.LastOp != n || rep.TruncatedBytes != 0 || !reflect.DeepEqual(rep.Corrupt, ce.Damage) {
				t.Fatalf("report %+v", rep)
			}
			faulty := map[uint64]bool{}
			for _, w := range tt.want {
				for op := w.FirstOp; op <= w.LastOp; op++ {
					faulty[op] = true
				}
			}
			if l.FaultyOps() != uint64(len(faulty)) {
				t.Fatalf("FaultyOps = %d, want %d", l.FaultyOps(), len(faulty))
			}
			for _, op := range ops {
				got, err := l.Read(op.Op)
				if faulty[op.Op] {
					if !errors.Is(err, ErrFaulty) {
						t.Fatalf("Read of faulty op %d = %v, want ErrFaulty", op.Op, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Read of intact op %d: %v", op.Op, err)
				}
				assertOpEqual(t, got, op)
			}
			var scanned []uint64
			err = l.Scan(0, func(op *Op) error { scanned = append(scanned, op.Op); return nil })
			first := tt.want[0].FirstOp
			if !errors.Is(err, ErrFaulty) || len(scanned) != int(first-1) {
				t.Fatalf("Scan read %d ops and returned %v; want the %d before op %d, then ErrFaulty", len(scanned), err, first-1, first)
			}

			// Repair: the wrong ops are refused, the right ones accepted.
			for _, d := range l.Faulty() {
				wrong := genOps(d.FirstOp, ops[d.FirstOp-1].FirstPosition, int(d.Ops()), 99)
				rechain(prevChain(ops, d.FirstOp), wrong)
				if err := l.Repair(wrong); !errors.Is(err, ErrRepairMismatch) {
					t.Fatalf("Repair with other ops = %v, want ErrRepairMismatch", err)
				}
				if err := l.Repair(ops[d.FirstOp-1 : d.LastOp]); err != nil {
					t.Fatalf("Repair: %v", err)
				}
			}
			if l.FaultyOps() != 0 {
				t.Fatalf("FaultyOps after repair = %d", l.FaultyOps())
			}
			assertReadAll(t, l, ops)
			more := genOps(n+1, ops[n-1].LastPosition()+1, 2, 3)
			mustAppendSync(t, l, more...)
			l.Close()

			l2, rep := openTest(t, dir, tt.segSize)
			if len(rep.Corrupt) != 0 || rep.TruncatedBytes != 0 || rep.LastOp != n+2 {
				t.Fatalf("open after repair: %+v", rep)
			}
			assertReadAll(t, l2, append(append([]*Op(nil), ops...), more...))
		})
	}
}

// TestTornTailStillCut: damage at the very end, with nothing valid after
// it, is what a torn final write leaves, and is cut in every mode.
func TestTornTailStillCut(t *testing.T) {
	ops := genOps(1, 1, 10, 1)
	for _, tolerate := range []bool{false, true} {
		dir := t.TempDir()
		l, _ := openTest(t, dir, 1<<20)
		mustAppendSync(t, l, ops...)
		l.Close()
		mutateFile(t, filepath.Join(dir, segmentName(1)), func(b []byte) []byte { b[len(b)-40] ^= 1; return b })
		damage, _, err := Check(Config{Dir: dir})
		if err != nil || len(damage) != 1 || !damage[0].Tail || damage[0].FirstOp != 10 {
			t.Fatalf("Check = %+v, %v", damage, err)
		}
		l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: 1 << 20, TolerateCorruption: tolerate}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.LastOp != 9 || rep.TruncatedBytes != frameSize(ops[9]) || len(rep.Corrupt) != 0 {
			t.Fatalf("tolerate=%v: report %+v", tolerate, rep)
		}
		l.Close()
	}
}

// prevChain is the chain hash of the op before op n.
func prevChain(ops []*Op, n uint64) Chain {
	if n == 1 {
		return Chain{}
	}
	return ops[n-2].Chain
}

func flip(t *testing.T, dir, name string, at int64) {
	t.Helper()
	mutateFile(t, filepath.Join(dir, name), func(b []byte) []byte { b[at] ^= 0x10; return b })
}
