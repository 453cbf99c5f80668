package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// BenchmarkAppend measures durable single-node append throughput: every
// append is fsynced before it returns, concurrent writers share fsyncs.
// One op is one request of `batch` entries with 100-byte values.
//
//	go test ./store/node -run '^$' -bench Append -benchtime 3s -count 5
func BenchmarkAppend(b *testing.B) {
	value := []byte(`"` + strings.Repeat("v", 98) + `"`) // 100 bytes of JSON
	for _, writers := range []int{1, 16, 64} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("writers=%d/batch=%d", writers, batch), func(b *testing.B) {
				benchAppend(b, writers, batch, value)
			})
		}
	}
}

func benchAppend(b *testing.B, writers, batch int, value []byte) {
	n := startNode(b, b.TempDir(), metric.NewRegistry(), nil)
	runAppendBench(b, n, writers, batch, value)
}

// runAppendBench spreads b.N appends of batch entries over writers
// goroutines and reports throughput and latency percentiles.
func runAppendBench(b *testing.B, n *Node, writers, batch int, value []byte) {
	entries := make([]kmblog.Entry, batch)
	for i := range entries {
		entries[i] = kmblog.Entry{Key: fmt.Sprintf("key-%d", i), Value: value}
	}
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		wg        sync.WaitGroup
		next      = make(chan struct{}, b.N)
	)
	for i := 0; i < b.N; i++ {
		next <- struct{}{}
	}
	close(next)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, b.N/writers+1)
			for range next {
				t0 := time.Now()
				if _, err := n.Append(context.Background(), "bench", entries, 0, 0); err != nil {
					b.Error(err)
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
