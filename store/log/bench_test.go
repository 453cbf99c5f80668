package log

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchOp is an op of n entries with 100-byte values, the shape the
// benchmarks use.
func benchOp(n int) *Op {
	op := &Op{Op: 1, View: 3, Timestamp: 1_700_000_000_000_000_000, Tenant: "tenant-0042",
		FirstPosition: 1, ClientID: 12345, RequestID: 678910}
	for i := range n {
		op.Entries = append(op.Entries, Entry{Key: fmt.Sprintf("user:%08d", i), Value: bytes.Repeat([]byte("x"), 100)})
	}
	return op
}

// BenchmarkAppendSync appends batches of ops (one 100-byte entry each)
// and syncs after each batch, as the event loop does for group commit.
func BenchmarkAppendSync(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			benchmarkAppend(b, batch, true)
		})
	}
}

// BenchmarkAppend is BenchmarkAppendSync without the fsync: the cost of
// encoding and writing alone.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			benchmarkAppend(b, batch, false)
		})
	}
}

func benchmarkAppend(b *testing.B, batch int, sync bool) {
	l, _, err := Open(Config{Dir: b.TempDir()}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ops := make([]*Op, batch)
	for i := range ops {
		ops[i] = benchOp(1)
	}
	next := uint64(1)
	iterations := 0
	b.SetBytes(int64(batch) * frameSize(ops[0]))
	b.ReportAllocs()
	for b.Loop() {
		for _, op := range ops {
			op.Op, op.FirstPosition = next, next
			next++
		}
		if err := l.Append(ops...); err != nil {
			b.Fatal(err)
		}
		if sync {
			if err := l.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		iterations++
	}
	b.ReportMetric(float64(iterations*batch)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkEncodeOp(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			op := benchOp(n)
			buf := make([]byte, 0, EncodedSize(op))
			b.SetBytes(int64(EncodedSize(op)))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendOp(buf[:0], op)
			}
		})
	}
}

func BenchmarkDecodeOp(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			enc := AppendOp(nil, benchOp(n))
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeOp(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchLog returns a synced log of n ops of one 100-byte entry each.
func benchLog(b *testing.B, n int) *Log {
	l, _, err := Open(Config{Dir: b.TempDir()}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	ops := make([]*Op, n)
	for i := range ops {
		ops[i] = benchOp(1)
		ops[i].Op, ops[i].FirstPosition = uint64(i+1), uint64(i+1)
	}
	if err := l.Append(ops...); err != nil {
		b.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkRead reads random durable ops (from the page cache).
func BenchmarkRead(b *testing.B) {
	const n = 10_000
	l := benchLog(b, n)
	b.Run("serial", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Read(1 + rng.Uint64N(n)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
			for pb.Next() {
				if _, err := l.Read(1 + rng.Uint64N(n)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkScan scans a whole log, as a node does to rebuild its
// projection at start-up.
func BenchmarkScan(b *testing.B) {
	const n = 10_000
	l := benchLog(b, n)
	b.SetBytes(l.SizeBytes())
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Scan(1, func(*Op) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
