package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/store/node"
	"github.com/kmb-db/kmb/store/projection"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// nopBackend answers every append at once, so the benchmarks measure the
// handler alone: decoding, validation, metrics and the response.
type nopBackend struct{}

func (nopBackend) Append(_ context.Context, w node.Write) (node.AppendResult, error) {
	return node.AppendResult{FirstPosition: 1, LastPosition: uint64(len(w.Entries)), CommitNumber: 1}, nil
}
func (nopBackend) Get(string, string) (projection.Value, error) { return projection.Value{}, nil }
func (nopBackend) Entries(string, uint64, int) ([]node.Entry, uint64, error) {
	return nil, 0, nil
}

// discardWriter is a ResponseWriter that keeps nothing but the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// benchBody is an append request as kmbd bench sends it: batch entries with
// keys from a small set and 100-byte JSON string values.
func benchBody(batch int) []byte {
	var b strings.Builder
	b.WriteString(`{"entries":[`)
	for i := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"key":"key-%d","value":"%s"}`, i%1024, strings.Repeat("v", 98))
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkAppendHandler measures the write path of the API in front of a
// backend that answers at once: one op is one POST of batch entries.
//
//	go test ./store/api -run '^$' -bench AppendHandler -benchmem -count 5
func BenchmarkAppendHandler(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			a, err := New(DefaultConfig(), nopBackend{}, metric.NewRegistry(), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			body := benchBody(batch)
			rd := bytes.NewReader(body)
			req, err := http.NewRequest(http.MethodPost, "/v1/tenants/bench-1/entries", rd)
			if err != nil {
				b.Fatal(err)
			}
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(body)
				req.Body = readCloser{rd}
				clear(w.h)
				w.status = 0
				a.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
