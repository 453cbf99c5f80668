package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/auth"
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
//
// The _tokens variants authenticate every request with a bearer token and
// check its tenant and right.
func BenchmarkAppendHandler(b *testing.B) {
	for _, bc := range []struct {
		batch  int
		tokens bool
	}{{1, false}, {100, false}, {1, true}, {100, true}} {
		name := fmt.Sprintf("batch=%d", bc.batch)
		if bc.tokens {
			name += "_tokens"
		}
		b.Run(name, func(b *testing.B) {
			var opts []Option
			if bc.tokens {
				opts = append(opts, WithTokens(benchTokens(b)))
			}
			a, err := New(DefaultConfig(), nopBackend{}, metric.NewRegistry(), nil, nil, opts...)
			if err != nil {
				b.Fatal(err)
			}
			body := benchBody(bc.batch)
			rd := bytes.NewReader(body)
			req, err := http.NewRequest(http.MethodPost, "/v1/tenants/bench-1/entries", rd)
			if err != nil {
				b.Fatal(err)
			}
			if bc.tokens {
				req.Header.Set("Authorization", "Bearer "+benchSecret)
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

// benchSecret is the bearer secret of benchTokens' writer, as long as the
// secrets kmbd token new makes.
const benchSecret = "kmb_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"

// benchTokens is a tokens file of 100 principals, the writer among them.
func benchTokens(b *testing.B) *auth.Store {
	var file strings.Builder
	for i := range 99 {
		file.WriteString(auth.Block(fmt.Sprintf("p%d", i), hashOf(fmt.Sprintf("s%d", i)), []string{fmt.Sprintf("t%d", i)}, []string{"read"}))
	}
	file.WriteString(auth.Block("writer", hashOf(benchSecret), []string{"bench-0", "bench-1", "bench-2"}, []string{"read", "write"}))
	path := filepath.Join(b.TempDir(), "tokens.toml")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := auth.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
