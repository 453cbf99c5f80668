package log

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestTruncateAfter(t *testing.T) {
	const segSize = 1000
	ops := genOps(1, 1, 40, 1)
	// Find segment boundaries as the log will lay them out.
	var firsts []uint64 // first op of each segment after the first
	size := int64(segmentHeaderSize)
	for i, op := range ops {
		if size >= segSize && i > 0 {
			firsts = append(firsts, op.Op)
			size = segmentHeaderSize
		}
		size += frameSize(op)
	}
	if len(firsts) < 4 {
		t.Fatalf("want at least 5 segments, got boundaries %v", firsts)
	}
	b := firsts[1] // first op of the third segment

	tests := []struct {
		name     string
		after    uint64
		unsynced int // ops of the 40 left unsynced before truncating
	}{
		{"everything", 0, 0},
		{"all but the first op", 1, 0},
		{"at the end of a segment", b - 1, 0},
		{"at the start of a segment", b, 0},
		{"inside a segment", b + 1, 0},
		{"inside the last segment", 38, 0},
		{"the last op", 39, 0},
		{"nothing (last op)", 40, 0},
		{"nothing (past the end)", 100, 0},
		{"into unsynced ops", 36, 8},
		{"all unsynced ops", 32, 8},
		{"across synced and unsynced ops", b, 8},
		{"nothing, syncing the rest", 40, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := openTest(t, dir, segSize)
			synced := len(ops) - tt.unsynced
			mustAppendSync(t, l, ops[:synced]...)
			if err := l.Append(ops[synced:]...); err != nil {
				t.Fatal(err)
			}

			if err := l.TruncateAfter(tt.after); err != nil {
				t.Fatal(err)
			}
			kept := ops[:min(int(tt.after), len(ops))]
			wantLast, wantPos := uint64(len(kept)), uint64(0)
			if len(kept) > 0 {
				wantPos = kept[len(kept)-1].LastPosition()
			}
			if l.LastOp() != wantLast || l.DurableOp() != wantLast || l.LastPosition() != wantPos {
				t.Fatalf("after truncation: last %d durable %d position %d, want %d %[4]d %d",
					l.LastOp(), l.DurableOp(), l.LastPosition(), wantLast, wantPos)
			}
			if wantFirst := min(wantLast, 1); l.FirstOp() != wantFirst {
				t.Fatalf("FirstOp = %d, want %d", l.FirstOp(), wantFirst)
			}
			assertReadAll(t, l, kept)
			if _, err := l.Read(wantLast + 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Read(%d) after truncation = %v, want ErrNotFound", wantLast+1, err)
			}
			if l.SizeBytes() != dirSize(t, dir) {
				t.Fatalf("SizeBytes = %d, files hold %d", l.SizeBytes(), dirSize(t, dir))
			}
			if len(kept) > 0 {
				checkSegmentLayout(t, dir, kept, segSize)
			} else if segs := segmentFiles(t, dir); len(segs) != 1 || fileSize(t, dirJoin(dir, segs[0])) != segmentHeaderSize {
				t.Fatalf("an empty log has segments %v", segs)
			}

			// A different suffix replaces the dropped one, rolling as
			// usual, and everything survives a restart.
			more := genOps(wantLast+1, wantPos+1, 15, 2)
			mustAppendSync(t, l, more...)
			all := append(append([]*Op(nil), kept...), more...)
			assertReadAll(t, l, all)
			l.Close()

			l, rep := openTest(t, dir, segSize)
			if rep.TruncatedBytes != 0 || rep.LastOp != all[len(all)-1].Op || rep.FirstOp != 1 {
				t.Fatalf("report after reopening = %+v", rep)
			}
			assertReadAll(t, l, all)
			checkSegmentLayout(t, dir, all, segSize)
		})
	}
}

func dirJoin(dir, name string) string { return dir + "/" + name }

// TestTruncateWithConcurrentReaders truncates and rewrites suffixes while
// readers read. Every successful read must return the op asked for, and
// the only error allowed is ErrNotFound; run it with -race.
func TestTruncateWithConcurrentReaders(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), 1000)
	mustAppendSync(t, l, genOps(1, 1, 60, 1)...)
	done := make(chan struct{})
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for reads := 0; ; reads++ {
				select {
				case <-done:
					if reads > 0 {
						return
					}
				default:
				}
				n := 1 + rng.Uint64N(70)
				op, err := l.Read(n)
				switch {
				case errors.Is(err, ErrNotFound):
				case err != nil:
					errc <- err
					return
				case op.Op != n:
					errc <- errors.New("read returned the wrong op")
					return
				}
				if r == 0 {
					err := l.Scan(n, func(op *Op) error {
						if op.Op != n {
							return errors.New("scan out of order")
						}
						n++
						return nil
					})
					if err != nil && !errors.Is(err, ErrNotFound) {
						errc <- err
						return
					}
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range 40 {
		after := rng.Uint64N(l.LastOp() + 1)
		if err := l.TruncateAfter(after); err != nil {
			t.Fatal(err)
		}
		mustAppendSync(t, l, genOps(after+1, l.LastPosition()+1, 1+rng.IntN(20), uint64(i))...)
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
