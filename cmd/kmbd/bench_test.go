package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

// A short run against an in-process cluster of 1 and of 3 nodes: the JSON
// line reports throughput without errors, every tenant holds what was
// written, and the data directory is removed afterwards.
func TestBenchInProcess(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) {
			stored := map[string]int{}
			var firstValue string
			benchLoaded = func(ns []*benchNode) {
				leader := ns[0]
				for _, n := range ns {
					if n.app.node.Status().IsLeader {
						leader = n
					}
				}
				for i := range 10 {
					tenant := benchTenant(i)
					entries, value := readTenant(t, leader.apiURL, tenant)
					stored[tenant] = entries
					if i == 0 {
						firstValue = value
					}
				}
			}
			t.Cleanup(func() { benchLoaded = nil })

			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			args := []string{"--nodes", strconv.Itoa(nodes), "--duration", "1s", "--warmup", "0",
				"--clients", "4", "--batch", "10", "--json", "--dir", dir}
			if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			res := lastJSON(t, stdout.String())
			t.Logf("%d nodes: %.0f entries/s, p99 %.2f ms", nodes, res["entries_per_sec"], res["p99_ms"])
			if res["entries_per_sec"].(float64) <= 0 || res["errors"].(float64) != 0 {
				t.Errorf("entries_per_sec %v, errors %v", res["entries_per_sec"], res["errors"])
			}
			for k, want := range map[string]any{"nodes": float64(nodes), "clients": 4.0, "batch": 10.0,
				"value_size": 100.0, "tenants": 10.0, "telemetry": "off", "target": "in-process"} {
				if res[k] != want {
					t.Errorf("%s = %v, want %v", k, res[k], want)
				}
			}
			for _, k := range []string{"requests_per_sec", "mb_per_sec", "p50_ms", "p99_ms", "p999_ms", "max_ms", "entries", "duration_s"} {
				if v, ok := res[k].(float64); !ok || v <= 0 {
					t.Errorf("%s = %v, want > 0", k, res[k])
				}
			}
			if p50, p99, mx := res["p50_ms"].(float64), res["p99_ms"].(float64), res["max_ms"].(float64); p50 > p99 || p99 > mx {
				t.Errorf("p50 %v, p99 %v, max %v out of order", p50, p99, mx)
			}

			total := 0
			for i := range 10 {
				n := stored[benchTenant(i)]
				if n == 0 || n%10 != 0 {
					t.Errorf("tenant %s holds %d entries; want a positive multiple of the batch", benchTenant(i), n)
				}
				total += n
			}
			if measured := int(res["entries"].(float64)); total < measured {
				t.Errorf("tenants hold %d entries, fewer than the %d measured", total, measured)
			}
			if len(firstValue) != 100 || !regexp.MustCompile(`^"[a-z]{98}"$`).MatchString(firstValue) {
				t.Errorf("stored value %q: want a 100-byte JSON string", firstValue)
			}

			for _, row := range []string{"Duration", "Requests", "Entries", "Bytes", "Entries/s", "MB/s", "Latency p50", "Latency p99", "Latency p99.9", "Latency max", "Errors"} {
				if !strings.Contains(stdout.String(), "  "+row+" ") {
					t.Errorf("summary has no %s row:\n%s", row, stdout.String())
				}
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("data left behind in %s: %v", dir, left)
			}
		})
	}
}

// readTenant counts a tenant's entries, paging through its log, and
// returns the first entry's value.
func readTenant(t *testing.T, apiURL, tenant string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	count, first := 0, ""
	for from := uint64(1); ; {
		resp, err := client.Get(fmt.Sprintf("%s/v1/tenants/%s/entries?from=%d&limit=1000", apiURL, tenant, from))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound && count == 0 {
			return 0, ""
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("read %s: %d %s", tenant, resp.StatusCode, b)
		}
		var page struct {
			Entries []struct {
				Key   string          `json:"key"`
				Value json.RawMessage `json:"value"`
			} `json:"entries"`
			Next uint64 `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatalf("read %s: %v", tenant, err)
		}
		if len(page.Entries) == 0 {
			return count, first
		}
		if count == 0 {
			first = string(page.Entries[0].Value)
		}
		count += len(page.Entries)
		if page.Next <= from {
			t.Fatalf("read %s: next %d does not advance past %d", tenant, page.Next, from)
		}
		from = page.Next
	}
}

// lastJSON parses the last line of out as a JSON object.
func lastJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out)
	}
	return m
}

// Bad flags exit 2 with one message naming the flag, before anything starts.
func TestBenchFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "2"}, "--nodes"},
		{[]string{"--clients", "0"}, "--clients"},
		{[]string{"--batch", "100001"}, "--batch"},
		{[]string{"--value-size", "1"}, "--value-size"},
		{[]string{"--tenants", "0"}, "--tenants"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--duration", "soon"}, "-duration"},
		{[]string{"--warmup", "-1s"}, "--warmup"},
		{[]string{"--telemetry", "verbose"}, "--telemetry"},
		{[]string{"--addrs", "127.0.0.1"}, "--addrs"},
		{[]string{"--addrs", "127.0.0.1:7001", "--telemetry", "full"}, "--telemetry"},
		{[]string{"--addrs", "127.0.0.1:7001", "--nodes", "3"}, "--nodes"},
		{[]string{"--batch", "100000", "--value-size", "1000"}, "--batch"},
		{[]string{"--no-such-flag"}, "-no-such-flag"},
		{[]string{"extra"}, `"extra"`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runBench(t.Context(), tt.args, noEnv, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr.String())
			}
			if first, _, _ := strings.Cut(stderr.String(), "\n"); !strings.Contains(first, tt.want) {
				t.Fatalf("stderr %q: first line does not name %s", stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout %q, want nothing", stdout.String())
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := runBench(t.Context(), []string{"-h"}, noEnv, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "usage: kmbd bench") {
		t.Fatalf("-h: exit %d, %q", code, stderr.String())
	}
}

// The latency histogram's quantiles are within its bucket error of the
// exact ones, and never above the maximum.
func TestBenchHistogram(t *testing.T) {
	var h histogram
	var exact []time.Duration
	for i := 1; i <= 10000; i++ {
		d := time.Duration(i) * 37 * time.Microsecond
		h.record(d)
		exact = append(exact, d)
	}
	counts, maxNs := h.snapshot(), h.max.Load()
	for _, q := range []float64{0.5, 0.99, 0.999, 1} {
		want := float64(exact[int(q*float64(len(exact)))-1])
		got := float64(percentile(counts, q, maxNs))
		if got < want*0.99 || got > want*1.01 {
			t.Errorf("q%v = %v, want %v ± 1%%", q, time.Duration(got), time.Duration(want))
		}
	}
	if time.Duration(maxNs) != exact[len(exact)-1] {
		t.Errorf("max %v", time.Duration(maxNs))
	}
	for _, v := range []uint64{0, 1, 255, 256, 257, 1000, 1 << 20, 1<<40 + 12345, 1<<63 + 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d out of range", v, i)
		}
		if mid := histValue(i); float64(mid) < float64(v)*0.99 || float64(mid) > float64(v)*1.01+1 {
			t.Errorf("value %d lands in a bucket whose middle is %d", v, mid)
		}
	}
	if percentile(make([]uint64, histBuckets), 0.99, 0) != 0 {
		t.Error("empty histogram: want 0")
	}
}

// Against --addrs: a follower's 307 moves every client to the leader, a 503
// is retried with the same idempotency ids, and a 4xx stops the run.
func TestBenchAddrsRetries(t *testing.T) {
	type ids struct{ client, request string }
	var (
		mu       sync.Mutex
		attempts = map[ids]int{}
		reject   atomic.Bool
	)
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if reject.Load() {
			http.Error(w, `{"error":"entries[0].key is required","code":"malformed"}`, http.StatusBadRequest)
			return
		}
		k := ids{r.Header.Get("Kmb-Client-Id"), r.Header.Get("Kmb-Request-Id")}
		mu.Lock()
		attempts[k]++
		n := attempts[k]
		mu.Unlock()
		if n == 1 { // every request's first attempt
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"no leader","code":"no_leader"}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"first_position":1,"last_position":10,"commit_number":1}`))
	}))
	defer leader.Close()
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Redirect(w, r, leader.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer follower.Close()

	addrs := strings.TrimPrefix(follower.URL, "http://") + "," + strings.TrimPrefix(leader.URL, "http://")
	args := []string{"--addrs", addrs, "--duration", "300ms", "--warmup", "0", "--clients", "4", "--batch", "10", "--json"}
	var stdout, stderr bytes.Buffer
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	res := lastJSON(t, stdout.String())
	if res["errors"] != 0.0 || res["requests"].(float64) < 1 || res["retries"].(float64) < res["requests"].(float64) ||
		res["target"] != "addrs" || res["telemetry"] != "external" || res["nodes"] != 2.0 {
		t.Fatalf("result %v", res)
	}
	mu.Lock()
	for k, n := range attempts {
		if k.client == "" || k.request == "" || n > 2 {
			t.Errorf("ids %v tried %d times", k, n)
		}
	}
	mu.Unlock()

	reject.Store(true)
	stdout.Reset()
	stderr.Reset()
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "400") {
		t.Fatalf("rejected writes: exit %d, stderr %q", code, stderr.String())
	}
}
