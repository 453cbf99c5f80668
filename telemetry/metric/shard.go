package metric

import (
	"runtime"
	"unsafe"
)

// blockBytes is the unit of isolation for data written on hot paths. Cache
// lines are 64 bytes, but Intel's adjacent-line prefetcher pulls lines in
// 128-byte aligned pairs, so writers on two cores touching neighbouring lines
// of one pair still slow each other down.
const blockBytes = 128

// blockWords is blockBytes in 8-byte words, the element size of every
// isolated slice.
const blockWords = blockBytes / 8

// maxShards caps the memory of a sharded metric on large machines. Beyond it
// several Ps share a shard, which costs some contention but stays correct
// because shard updates are atomic.
const maxShards = 64

// procPin and procUnpin are provided by the runtime for exactly this use
// (sync.Pool uses them; the runtime keeps them linkname-able because widely
// used packages depend on them). procPin disables preemption and returns the
// id of the current P; procUnpin re-enables preemption.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// shard returns the shard that the calling goroutine should write, given a
// metric's shard mask (shard count - 1).
//
// The shard is the id of the P the caller is running on. The caller can be
// moved to another P as soon as shard returns, so the result is only a hint:
// it keeps writers on different CPUs apart in the common case, and because
// shard updates are atomic a stale hint costs a little contention, never a
// lost update. Unpinning straight away keeps the non-preemptible window to a
// few instructions. A single shard, as under GOMAXPROCS=1, needs no hint.
//
// shard is deliberately not inlinable (its two runtime calls exceed the
// budget anyway) so that Counter.Add, which calls it, stays inlinable.
func shard(mask int) int {
	if mask == 0 {
		return 0
	}
	id := procPin()
	procUnpin()
	return id & mask
}

// shardCount returns GOMAXPROCS rounded up to a power of two, so a P id can
// be reduced to a shard with a mask, capped at maxShards.
func shardCount() int {
	procs := runtime.GOMAXPROCS(0)
	n := 1
	for n < procs && n < maxShards {
		n <<= 1
	}
	return n
}

// isolatedSlice returns n zeroed 8-byte elements whose memory starts on a
// blockBytes boundary. n must be a multiple of blockWords, so the slice also
// ends on a boundary and no other allocation shares its blocks. Go heap
// allocations are 8-byte aligned, so an aligned start always exists within
// blockWords-1 elements of the allocation's start.
func isolatedSlice[T any](n int) []T {
	if unsafe.Sizeof(*new(T)) != 8 || n%blockWords != 0 {
		panic("metric: internal error: isolatedSlice needs 8-byte elements and a whole number of blocks")
	}
	s := make([]T, n+blockWords-1)
	misalign := int(uintptr(unsafe.Pointer(unsafe.SliceData(s))) % blockBytes)
	skip := 0
	if misalign != 0 {
		skip = (blockBytes - misalign) / 8
	}
	return s[skip : skip+n : skip+n]
}

// isolated wraps a value with a full block of padding on each side, so that
// whatever the allocator puts next to it, no other object shares a cache-line
// pair with v.
type isolated[T any] struct {
	_ [blockBytes]byte
	v T
	_ [blockBytes]byte
}

// newIsolated allocates a zero T that shares no cache-line pair with any
// other allocation.
func newIsolated[T any]() *T {
	return &new(isolated[T]).v
}

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int) int {
	return (n + m - 1) / m * m
}
