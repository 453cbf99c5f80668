package log_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/log/faultfs"
)

// chained returns n ops continuing after op prev (nil for an empty log),
// with chain hashes.
func chained(prev *kmblog.Op, n int, tag string) []*kmblog.Op {
	next, pos, chain := uint64(1), uint64(1), kmblog.Chain{}
	if prev != nil {
		next, pos, chain = prev.Op+1, prev.LastPosition()+1, prev.Chain
	}
	ops := make([]*kmblog.Op, n)
	for i := range ops {
		op := &kmblog.Op{Op: next, View: 1, Timestamp: int64(next), Tenant: "t", FirstPosition: pos,
			Entries: []kmblog.Entry{{Key: fmt.Sprintf("%s-%d", tag, next), Value: []byte(`"` + strings.Repeat("v", 200) + `"`)}}}
		op.Chain = kmblog.ChainHash(chain, op)
		chain, next, pos = op.Chain, next+1, pos+1
		ops[i] = op
	}
	return ops
}

func openFS(t *testing.T, dir string, fsys kmblog.FS) (*kmblog.Log, kmblog.RecoveryReport) {
	t.Helper()
	l, rep, err := kmblog.Open(kmblog.Config{Dir: dir, SegmentSizeBytes: kmblog.MinSegmentSizeBytes, FS: fsys}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, rep
}

func readAll(t *testing.T, l *kmblog.Log, ops []*kmblog.Op) {
	t.Helper()
	for _, want := range ops {
		got, err := l.Read(want.Op)
		if err != nil || got.Chain != want.Chain {
			t.Fatalf("read op %d: chain %x, %v", want.Op, got.Chain[:4], err)
		}
	}
}

// TestDiskFull fills the disk: the append that does not fit fails with
// ErrDiskFull and leaves nothing behind, reads go on, and appends succeed
// again once there is space. A restart finds exactly what was appended.
func TestDiskFull(t *testing.T) {
	for _, across := range []bool{false, true} {
		t.Run(fmt.Sprintf("across a roll=%v", across), func(t *testing.T) {
			dir := t.TempDir()
			fsys := faultfs.New(nil)
			l, _ := openFS(t, dir, fsys)
			ops := chained(nil, 20, "a")
			if err := l.Append(ops...); err != nil {
				t.Fatal(err)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			size := l.SizeBytes()
			if across {
				// Fill the first segment to just below the roll, then let
				// the next batch cross it with no room for a new segment.
				for l.SizeBytes() < kmblog.MinSegmentSizeBytes-4096 {
					more := chained(ops[len(ops)-1], 10, "fill")
					if err := l.Append(more...); err != nil {
						t.Fatal(err)
					}
					ops = append(ops, more...)
				}
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				size = l.SizeBytes()
			}
			if across {
				// Room for the records, not for the next segment.
				fsys.Add(faultfs.Rule{Op: faultfs.Create, Path: ".seg", Err: faultfs.ENOSPC})
			} else {
				fsys.SetSpace(1000)
			}
			batch := chained(ops[len(ops)-1], 30, "full")
			err := l.Append(batch...)
			if !errors.Is(err, kmblog.ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Append on a full disk = %v, want ErrDiskFull", err)
			}
			if l.LastOp() != uint64(len(ops)) || l.SizeBytes() != size {
				t.Fatalf("after the failed append: last op %d, size %d; want %d, %d", l.LastOp(), l.SizeBytes(), len(ops), size)
			}
			readAll(t, l, ops)
			if err := l.Append(batch...); !errors.Is(err, kmblog.ErrDiskFull) {
				t.Fatalf("second Append on a full disk = %v", err)
			}
			if err := l.Sync(); err != nil {
				t.Fatalf("Sync after a full disk: %v", err)
			}

			fsys.SetSpace(-1)
			fsys.Clear()
			if err := l.Append(batch...); err != nil {
				t.Fatalf("Append once space is back: %v", err)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			readAll(t, l, append(ops, batch...))
			l.Close()
			l2, rep := openFS(t, dir, nil)
			if rep.TruncatedBytes != 0 || rep.LastOp != uint64(len(ops)+len(batch)) {
				t.Fatalf("reopen: %+v", rep)
			}
			readAll(t, l2, append(ops, batch...))
		})
	}
}

// TestFailStop: an I/O error on a write, or any failed sync, leaves the
// page cache untrustworthy: the log refuses every later write.
func TestFailStop(t *testing.T) {
	for _, r := range []faultfs.Rule{
		{Op: faultfs.Write, Path: ".seg", Err: faultfs.EIO},
		{Op: faultfs.Sync, Path: ".seg", Err: faultfs.EIO},
		{Op: faultfs.Sync, Path: ".seg", Err: faultfs.ENOSPC},
	} {
		t.Run(r.String(), func(t *testing.T) {
			fsys := faultfs.New(nil)
			l, _ := openFS(t, t.TempDir(), fsys)
			ops := chained(nil, 2, "a")
			fsys.Add(r)
			err := l.Append(ops...)
			if err == nil {
				err = l.Sync()
			}
			if err == nil || errors.Is(err, kmblog.ErrDiskFull) {
				t.Fatalf("write with %v = %v, want a fatal error", r, err)
			}
			fsys.Clear()
			if err := l.Append(ops...); err == nil || !strings.Contains(err.Error(), "unusable") {
				t.Fatalf("Append after the failure = %v, want the log unusable", err)
			}
		})
	}
}

// TestReadErrors: a failed read or a record damaged on disk after it was
// written gives an error, never a wrong op, and writes go on.
func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	fsys := faultfs.New(nil)
	l, _ := openFS(t, dir, fsys)
	ops := chained(nil, 10, "a")
	// Op 4's record is written with a bit flipped: silent corruption.
	fsys.Add(faultfs.Rule{Op: faultfs.Write, Path: ".seg", After: 1, Times: 1, Flip: 8 * 200})
	for _, op := range ops {
		if err := l.Append(op); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(2); !errors.Is(err, kmblog.ErrCorrupt) {
		t.Fatalf("Read of the flipped record = %v, want ErrCorrupt", err)
	}
	fsys.Add(faultfs.Rule{Op: faultfs.Read, Path: ".seg", Times: 1, Err: faultfs.EIO})
	if _, err := l.Read(5); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Read with EIO = %v", err)
	}
	readAll(t, l, ops[4:])
	more := chained(ops[9], 2, "b")
	if err := l.Append(more...); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	l.Close()

	// Recovery finds the flipped record in the middle: corruption.
	_, _, err := kmblog.Open(kmblog.Config{Dir: dir}, nil, nil)
	var ce *kmblog.CorruptionError
	if !errors.As(err, &ce) || ce.Damage[0].FirstOp != 2 {
		t.Fatalf("reopen = %v, want corruption of op 2", err)
	}
}

// TestMisdirectedWrite: a record written at the wrong offset is found by
// recovery, which refuses a single node's log and keeps a replica's whole.
func TestMisdirectedWrite(t *testing.T) {
	dir := t.TempDir()
	fsys := faultfs.New(nil)
	l, _ := openFS(t, dir, fsys)
	ops := chained(nil, 8, "a")
	for _, op := range ops[:4] {
		if err := l.Append(op); err != nil {
			t.Fatal(err)
		}
	}
	// Op 5 lands over op 3's record.
	fsys.Add(faultfs.Rule{Op: faultfs.Write, Path: ".seg", Times: 1, Shift: -2 * int64(8+kmblog.EncodedSize(ops[4]))})
	for _, op := range ops[4:] {
		if err := l.Append(op); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, _, err := kmblog.Open(kmblog.Config{Dir: dir}, nil, nil)
	var ce *kmblog.CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("reopen = %v, want a CorruptionError", err)
	}
	l, rep, err := kmblog.Open(kmblog.Config{Dir: dir, TolerateCorruption: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.LastOp() != 8 || l.FaultyOps() == 0 || len(rep.Corrupt) == 0 {
		t.Fatalf("tolerated: last op %d, faulty %d, %+v", l.LastOp(), l.FaultyOps(), rep)
	}
	for _, d := range l.Faulty() {
		if err := l.Repair(ops[d.FirstOp-1 : d.LastOp]); err != nil {
			t.Fatalf("repair %v: %v", d, err)
		}
	}
	readAll(t, l, ops)
}
