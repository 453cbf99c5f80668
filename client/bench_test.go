package client_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmb-db/kmb/client"
)

// The client's own cost per request:
//
//	go test ./client -bench . -run '^$' -benchmem -count 10
//
// "loopback" appends to an httptest server on 127.0.0.1 that reads each
// request and answers at once, so a request costs what the client, net/http
// on both sides and the loopback socket cost; "in-memory" answers from a
// RoundTripper without any connection, leaving the client's own code
// (building the request, its headers, reading and decoding the answer).
// Batches are kmbd bench's: entries of 100-byte JSON string values, encoded
// once (NewBatch). Both report cpu-ns/op, the process's CPU time (user and
// system, from getrusage) per request, which on loopback includes the
// server's side.
func BenchmarkAppend(b *testing.B) {
	const answer = `{"first_position":1,"last_position":100,"commit_number":1}` + "\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		io.WriteString(w, answer)
	}))
	defer srv.Close()
	for _, batch := range []int{1, 100} {
		entries := make([]client.Entry, batch)
		for i := range entries {
			entries[i] = client.Entry{Key: fmt.Sprintf("k%04d", i), Value: json.RawMessage(`"` + strings.Repeat("a", 98) + `"`)}
		}
		bt, err := client.NewBatch(entries)
		if err != nil {
			b.Fatal(err)
		}
		for _, tr := range []struct {
			name  string
			addr  string
			trans http.RoundTripper
		}{
			{"loopback", srv.Listener.Addr().String(), nil},
			{"in-memory", "127.0.0.1:1", answerAtOnce(answer)},
		} {
			b.Run(fmt.Sprintf("%s/batch=%d", tr.name, batch), func(b *testing.B) {
				c, err := client.New([]string{tr.addr}, client.Options{Transport: tr.trans})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				ctx := b.Context()
				if _, err := c.AppendBatch(ctx, "acme", bt); err != nil { // the connection, outside the measure
					b.Fatal(err)
				}
				b.ReportAllocs()
				cpu0 := processCPU()
				for b.Loop() {
					if _, err := c.AppendBatch(ctx, "acme", bt); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// answerAtOnce is a RoundTripper that reads the request's body and answers
// 200 with body.
type answerAtOnce string

func (a answerAtOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader([]byte(a))),
		ContentLength: int64(len(a)), Request: r,
	}, nil
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
