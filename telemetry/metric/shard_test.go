package metric

import (
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"
)

func TestIsolatedSliceAlignment(t *testing.T) {
	for range 100 {
		s := isolatedSlice[atomic.Uint64](2 * blockWords)
		if addr := uintptr(unsafe.Pointer(&s[0])); addr%blockBytes != 0 {
			t.Fatalf("isolated slice starts at %#x, not on a %d-byte boundary", addr, blockBytes)
		}
		if len(s) != 2*blockWords || cap(s) != 2*blockWords {
			t.Fatalf("len %d cap %d, want %d", len(s), cap(s), 2*blockWords)
		}
	}
}

func TestIsolatedPadding(t *testing.T) {
	g := newIsolated[Gauge]()
	if got := unsafe.Sizeof(isolated[Gauge]{}); got < 2*blockBytes+unsafe.Sizeof(Gauge{}) {
		t.Errorf("isolated[Gauge] is %d bytes, want a full block of padding each side", got)
	}
	g.Inc() // usable
	if g.Value() != 1 {
		t.Error("isolated gauge does not count")
	}
}

func TestShardCount(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for procs, want := range map[int]int{1: 1, 2: 2, 3: 4, 8: 8, 9: 16, 64: 64, 100: maxShards} {
		runtime.GOMAXPROCS(procs)
		if got := shardCount(); got != want {
			t.Errorf("GOMAXPROCS %d: shardCount() = %d, want %d", procs, got, want)
		}
	}
}

func TestShardInRange(t *testing.T) {
	for _, mask := range []int{0, 1, 3, maxShards - 1} {
		inParallel(4, func(int) {
			for range 100 {
				if s := shard(mask); s < 0 || s > mask {
					t.Errorf("shard(%d) = %d, want [0, %d]", mask, s, mask)
					return
				}
			}
		})
	}
}

// TestCounterIncLandsInCallersShard checks that Inc writes the shard of
// the P it runs on. The goroutine can be moved between shard and Inc, so
// the test retries until it observes one undisturbed attempt.
func TestCounterIncLandsInCallersShard(t *testing.T) {
	c := NewRegistry().NewCounter("c", "")
	for range 1000 {
		s := shard(c.mask)
		before := c.cells[s*blockWords].Load()
		c.Inc()
		if c.cells[s*blockWords].Load() == before+1 {
			return
		}
	}
	t.Error("Inc never landed in the calling P's shard")
}
