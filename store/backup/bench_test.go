package backup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
)

const (
	benchEntries      = 100_000
	benchEntriesPerOp = 10   // a group commit's worth of one tenant's writes
	benchOpsPerSeg    = 1000 // 10,000 entries, about 1.2 MB raw, per segment
)

// benchOps returns 100k entries of 100-byte JSON values in ops of ten:
// keys and values vary the way a tenant's records do, so compression
// has something realistic to work on.
func benchOps() []*kmblog.Op {
	rng := rand.New(rand.NewPCG(1, 2))
	ops := make([]*kmblog.Op, benchEntries/benchEntriesPerOp)
	pos := uint64(1)
	for i := range ops {
		op := &kmblog.Op{
			Op: uint64(i + 1), View: 1, Timestamp: baseTS + int64(i)*200_000,
			Tenant: fmt.Sprintf("tenant-%02d", rng.IntN(20)), FirstPosition: pos,
			ClientID: rng.Uint64N(1 << 20), RequestID: uint64(i),
			Entries: make([]kmblog.Entry, benchEntriesPerOp),
		}
		for j := range op.Entries {
			v := fmt.Appendf(nil, `{"user":"u%06d","amount":%d,"currency":"EUR","ref":"%016x","ok":true`, rng.IntN(1e6), rng.IntN(1e7), rng.Uint64())
			for len(v) < 99 {
				v = append(v, ' ')
			}
			op.Entries[j] = kmblog.Entry{Key: fmt.Sprintf("order-%d", rng.IntN(1e5)), Value: append(v, '}')}
		}
		pos += benchEntriesPerOp
		ops[i] = op
	}
	return ops
}

func rawSize(ops []*kmblog.Op) int64 {
	var n int64
	for _, op := range ops {
		n += recordHeaderSize + int64(kmblog.EncodedSize(op))
	}
	return n
}

// BenchmarkAppendSegment backs up 100k entries, in segments of 10k, to a
// directory repository: compression, SHA-256, the object's and the
// manifest's atomic writes with their fsyncs.
func BenchmarkAppendSegment(b *testing.B) {
	ctx := context.Background()
	ops := benchOps()
	b.SetBytes(rawSize(ops))
	b.ReportAllocs()
	var stored uint64
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		r, _ := newRepo(b)
		b.StartTimer()
		start := time.Now()
		for i := 0; i < len(ops); i += benchOpsPerSeg {
			if err := r.AppendSegment(ctx, ops[i:min(i+benchOpsPerSeg, len(ops))]); err != nil {
				b.Fatal(err)
			}
		}
		elapsed += time.Since(start)
		stored = r.Stats().StoredBytes
	}
	b.ReportMetric(float64(benchEntries)*float64(b.N)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(float64(rawSize(ops))/float64(stored), "compression_ratio")
}

// BenchmarkRestore restores 100k entries from a directory repository into
// a new data dir: reading and checking objects, decompression, record
// verification and decoding, and the log's writes and fsyncs.
func BenchmarkRestore(b *testing.B) {
	ctx := context.Background()
	ops := benchOps()
	r, _ := newRepo(b)
	for i := 0; i < len(ops); i += benchOpsPerSeg {
		if err := r.AppendSegment(ctx, ops[i:min(i+benchOpsPerSeg, len(ops))]); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(rawSize(ops))
	b.ReportAllocs()
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "d")
		b.StartTimer()
		start := time.Now()
		sum, err := Restore(ctx, r, Latest(), dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		if sum.Entries != benchEntries {
			b.Fatalf("restored %d entries", sum.Entries)
		}
	}
	b.ReportMetric(float64(benchEntries)*float64(b.N)/elapsed.Seconds(), "entries/s")
}
