package audit

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// benchOps is a log of ops days long, opsPerDay ops a day, each a batch of
// 20 entries of about 100 bytes, spread evenly over each day.
func benchOps(days, opsPerDay int) []*kmblog.Op {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 24 * time.Hour / time.Duration(opsPerDay)
	var ops []*kmblog.Op
	var prev kmblog.Chain
	var c kmblog.Chainer
	pos := uint64(1)
	value := []byte(`{"customer":"c-0042","amount":1999,"currency":"EUR","note":"` + strings.Repeat("x", 40) + `"}`)
	for i := range days * opsPerDay {
		op := &kmblog.Op{Op: uint64(i + 1), View: 1, Timestamp: start.Add(time.Duration(i) * step).UnixNano(),
			Tenant: fmt.Sprintf("tenant-%d", i%10), FirstPosition: pos, Principal: "writer", ClientID: 7, RequestID: uint64(i + 1)}
		for j := range 20 {
			op.Entries = append(op.Entries, kmblog.Entry{Key: fmt.Sprintf("order-%d-%d", i, j), Value: value})
		}
		op.Chain = c.Op(prev, op)
		prev, pos = op.Chain, op.LastPosition()+1
		ops = append(ops, op)
	}
	return ops
}

// BenchmarkExport exports 2,000 ops of 20 entries each from memory: the
// cost of the encoding alone. entries/s and MB/s are of the records
// written.
func BenchmarkExport(b *testing.B) {
	ops := benchOps(1, 2000)
	r := Range{Start: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}
	for _, f := range formats {
		b.Run("format="+string(f), func(b *testing.B) {
			var sum Summary
			for b.Loop() {
				var err error
				if sum, err = Export(context.Background(), io.Discard, sliceSource(ops), r, f, Meta{NodeID: 1}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(sum.Bytes)
			b.ReportMetric(float64(sum.Records)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// logSource reads a log on disk, as kmbd audit export --data-dir does.
type logSource struct{ l *kmblog.Log }

func (s logSource) FirstOpAt(t int64) uint64 { return s.l.FirstOpAt(t) }
func (s logSource) Scan(from uint64, fn func(*kmblog.Op) error) error {
	return s.l.Scan(from, fn)
}
func (s logSource) Chain(n uint64) (kmblog.Chain, error) {
	if n == 0 {
		return kmblog.Chain{}, nil
	}
	op, err := s.l.Read(n)
	return op.Chain, err
}

// BenchmarkExportRange exports from a log on disk of 64 days (128,000
// ops in 4 MiB segments): one day of it, and the whole log. A day's
// export reads only the segments that overlap the day, so it costs about
// a 64th of the whole.
func BenchmarkExportRange(b *testing.B) {
	const days = 64
	ops := benchOps(days, 2000)
	dir := b.TempDir()
	l, _, err := kmblog.Open(kmblog.Config{Dir: dir, SegmentSizeBytes: 4 << 20}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(ops); i += 500 {
		if err := l.Append(ops[i:min(i+500, len(ops))]...); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		r    Range
	}{
		{"one-day", Range{Start: start.AddDate(0, 0, days/2), End: start.AddDate(0, 0, days/2+1)}},
		{"all-64-days", Range{Start: start, End: start.AddDate(0, 0, days)}},
	} {
		b.Run("range="+tc.name, func(b *testing.B) {
			var sum Summary
			for b.Loop() {
				if sum, err = Export(context.Background(), io.Discard, logSource{l}, tc.r, NDJSON, Meta{NodeID: 1}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(sum.Bytes)
			b.ReportMetric(float64(sum.Records)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkVerify checks an export of 2,000 ops of 20 entries each.
func BenchmarkVerify(b *testing.B) {
	ops := benchOps(1, 2000)
	r := Range{Start: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}
	for _, f := range formats {
		b.Run("format="+string(f), func(b *testing.B) {
			var buf strings.Builder
			if _, err := Export(context.Background(), &buf, sliceSource(ops), r, f, Meta{NodeID: 1}, nil); err != nil {
				b.Fatal(err)
			}
			file := buf.String()
			var rep Report
			for b.Loop() {
				var err error
				if rep, err = Verify(strings.NewReader(file)); err != nil || !rep.OK() {
					b.Fatal(err, rep.Problem)
				}
			}
			b.SetBytes(int64(len(file)))
			b.ReportMetric(float64(rep.Records)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
