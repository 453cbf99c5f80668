package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmb-db/kmb/client"
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
			for _, k := range []string{"requests_per_sec", "mb_per_sec", "p50_ms", "p99_ms", "p999_ms", "max_ms", "entries", "duration_s",
				"cpu_s", "cpu_cores", "cpu_us_per_entry", "allocs_per_entry"} {
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

			// CPU per entry is the process's CPU over the measured time per
			// entry measured.
			if cpu, perEntry, entries := res["cpu_s"].(float64), res["cpu_us_per_entry"].(float64), res["entries"].(float64); math.Abs(cpu*1e6/entries-perEntry) > perEntry*0.01+0.01 {
				t.Errorf("cpu_s %v over %v entries is not %v µs per entry", cpu, entries, perEntry)
			}
			for _, row := range []string{"Duration", "Requests", "Entries", "Bytes", "Entries/s", "MB/s", "Latency p50", "Latency p99", "Latency p99.9", "Latency max", "Errors", "CPU", "Allocations"} {
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

// readTenant counts a tenant's entries, reading its whole log with the
// client, and returns the first entry's value.
func readTenant(t *testing.T, apiURL, tenant string) (int, string) {
	t.Helper()
	c, err := client.New([]string{apiURL}, client.Options{ReadPageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	count, first := 0, ""
	for e, err := range c.Read(t.Context(), tenant, 1) {
		if err != nil {
			t.Fatalf("read %s: %v", tenant, err)
		}
		if count == 0 {
			first = string(e.Value)
		}
		count++
	}
	return count, first
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
		{[]string{"--compare", "off,backup", "--backup"}, "--backup"},
		{[]string{"--compare", "off", "--telemetry", "full"}, "--telemetry"},
		{[]string{"--compare", "off", "--addrs", "127.0.0.1:7001"}, "--addrs"},
		{[]string{"--token", "x"}, "--token applies to --addrs only"},
		{[]string{"--addrs", "127.0.0.1:7001", "--cacert", "/nonexistent/ca.pem"}, "--cacert"},
		{[]string{"--addrs", "127.0.0.1:7001", "--cert", "c.pem"}, "--cert and --key"},
		{[]string{"--compare", "off", "--cpuprofile", "cpu.out"}, "--cpuprofile"},
		{[]string{"--compare", "off,bogus"}, `"bogus"`},
		{[]string{"--compare", "off,,full"}, "--compare"},
		{[]string{"--compare", ""}, "--compare"},
		{[]string{"--compare", "metrics+full"}, "two telemetry modes"},
		{[]string{"--compare", "backup+backup"}, "--compare"},
		{[]string{"--compare", "off,backup,off+backup"}, "same variant"},
		{[]string{"--compare", "off", "--rounds", "0"}, "--rounds"},
		{[]string{"--compare", "off", "--rounds", "1001"}, "--rounds"},
		{[]string{"--rounds", "3"}, "--rounds"},
		{[]string{"extra"}, `"extra"`},
		{[]string{"--entries", "0"}, "--entries"},
		{[]string{"--rate", "-1"}, "--rate"},
		{[]string{"--rate", "1000000001"}, "--rate"},
		{[]string{"--compare", "off,ack+backup"}, "ack stands alone"},
		{[]string{"--compare", "ack,metrics+ack"}, "ack stands alone"},
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

// --compare alternates fresh in-process clusters of each variant, rotating
// which runs first, and reports each variant's medians and its ratio to the
// first variant's.
func TestBenchCompare(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"--compare", "off,backup", "--rounds", "2", "--duration", "300ms", "--warmup", "0",
		"--clients", "2", "--batch", "5", "--nodes", "1", "--json", "--dir", dir}
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var res struct {
		Compare []struct {
			Variant             string    `json:"variant"`
			Telemetry           string    `json:"telemetry"`
			Backup              bool      `json:"backup"`
			Runs                []float64 `json:"runs"`
			MedianEntriesPerSec float64   `json:"median_entries_per_sec"`
			MedianP50Ms         float64   `json:"median_p50_ms"`
			MedianP99Ms         float64   `json:"median_p99_ms"`
			RatioToBaseline     *float64  `json:"ratio_to_baseline"`
		} `json:"compare"`
		Rounds    int     `json:"rounds"`
		Nodes     int     `json:"nodes"`
		Clients   int     `json:"clients"`
		Batch     int     `json:"batch"`
		DurationS float64 `json:"duration_s"`
	}
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, stdout.String())
	}
	if res.Rounds != 2 || res.Nodes != 1 || res.Clients != 2 || res.Batch != 5 || res.DurationS != 0.3 || len(res.Compare) != 2 {
		t.Fatalf("result %+v", res)
	}
	for i, want := range []struct {
		variant string
		backup  bool
	}{{"off", false}, {"backup", true}} {
		v := res.Compare[i]
		if v.Variant != want.variant || v.Telemetry != "off" || v.Backup != want.backup {
			t.Errorf("variant %d: %+v, want %s", i, v, want.variant)
		}
		if len(v.Runs) != 2 || v.Runs[0] <= 0 || v.Runs[1] <= 0 {
			t.Errorf("%s: runs %v, want 2 positive", v.Variant, v.Runs)
		}
		if lo, hi := min(v.Runs[0], v.Runs[1]), max(v.Runs[0], v.Runs[1]); v.MedianEntriesPerSec < lo || v.MedianEntriesPerSec > hi {
			t.Errorf("%s: median %v outside its runs %v", v.Variant, v.MedianEntriesPerSec, v.Runs)
		}
		if v.MedianP50Ms <= 0 || v.MedianP99Ms < v.MedianP50Ms {
			t.Errorf("%s: median p50 %v, p99 %v", v.Variant, v.MedianP50Ms, v.MedianP99Ms)
		}
		if v.RatioToBaseline == nil || *v.RatioToBaseline <= 0 || (i == 0 && *v.RatioToBaseline != 1) {
			t.Errorf("%s: ratio_to_baseline %v", v.Variant, v.RatioToBaseline)
		}
	}
	t.Logf("off %.0f, backup %.0f entries/s (ratio %v)", res.Compare[0].MedianEntriesPerSec, res.Compare[1].MedianEntriesPerSec, *res.Compare[1].RatioToBaseline)

	// One line per run, the starting variant rotated each round.
	var order []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(line, "round ") {
			if !regexp.MustCompile(`^round \d/2 \w+: [\d,]+ entries/s, p99 \d+\.\d ms, \d+\.\d\d µs CPU and \d+\.\d allocations per entry$`).MatchString(line) {
				t.Errorf("progress line %q", line)
			}
			label, _, _ := strings.Cut(line, ":")
			order = append(order, label)
		}
	}
	if want := []string{"round 1/2 off", "round 1/2 backup", "round 2/2 backup", "round 2/2 off"}; !slices.Equal(order, want) {
		t.Errorf("runs %q, want %q\n%s", order, want, stderr.String())
	}
	for _, row := range []string{"  off ", "  backup ", "baseline", "vs off"} {
		if !strings.Contains(stdout.String(), row) {
			t.Errorf("summary has no %q:\n%s", row, stdout.String())
		}
	}
	if !regexp.MustCompile(`(?m)^  backup +2/2 .* [+-]\d+\.\d%$`).MatchString(stdout.String()) {
		t.Errorf("summary has no change for backup:\n%s", stdout.String())
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("data left behind in %s: %v", dir, left)
	}
}

// A series whose runs fail still prints its summary, and exits 1.
func TestBenchCompareFailedRuns(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	var stdout, stderr bytes.Buffer
	args := []string{"--compare", "off,metrics", "--rounds", "1", "--duration", "100ms", "--warmup", "0",
		"--nodes", "1", "--json", "--dir", missing}
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if n := strings.Count(stderr.String(), ": failed: "); n != 2 || !strings.Contains(stderr.String(), "2 of 2 runs failed") {
		t.Errorf("stderr %q: want 2 failed runs reported", stderr.String())
	}
	res := lastJSON(t, stdout.String())
	variants := res["compare"].([]any)
	if len(variants) != 2 || res["failed_runs"] != 2.0 {
		t.Fatalf("result %v", res)
	}
	for _, v := range variants {
		v := v.(map[string]any)
		if runs := v["runs"].([]any); len(runs) != 0 || v["failed_runs"] != 1.0 || v["ratio_to_baseline"] != nil {
			t.Errorf("variant %v", v)
		}
	}
}

// The variants of --compare.
func TestBenchCompareVariants(t *testing.T) {
	o, err := parseBenchFlags([]string{"--compare", " off, metrics + backup,full,backup"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []benchVariant{{name: "off", telemetry: "off"}, {name: "metrics+backup", telemetry: "metrics", backup: true},
		{name: "full", telemetry: "full"}, {name: "backup", telemetry: "off", backup: true}}
	if !slices.Equal(o.compare, want) || o.rounds != 5 {
		t.Fatalf("variants %+v, rounds %d; want %+v, 5", o.compare, o.rounds, want)
	}
	if o, err := parseBenchFlags(nil, noEnv, io.Discard); err != nil || o.comparing() {
		t.Fatalf("no --compare: %+v, %v", o, err)
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3, 1, 2 = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of 4, 1, 3, 2 = %v", m)
	}
}

// --entries ends the measured time once that many entries were
// acknowledged, and a run that cannot reach them within --duration fails.
func TestBenchEntries(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"--nodes", "1", "--entries", "300", "--warmup", "0", "--clients", "2", "--batch", "10", "--json", "--dir", t.TempDir()}
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	res := lastJSON(t, stdout.String())
	if n := res["entries"].(float64); n < 300 || n > 300+100*10 {
		t.Errorf("%v entries measured, want 300 and what was in flight when they were reached", n)
	}
	if res["duration_s"].(float64) <= 0 || res["duration_s"].(float64) > 60 || res["cpu_us_per_entry"].(float64) <= 0 {
		t.Errorf("result %v", res)
	}

	stdout.Reset()
	stderr.Reset()
	args = []string{"--nodes", "1", "--entries", "1000000000", "--duration", "200ms", "--warmup", "0", "--clients", "2", "--batch", "1", "--json", "--dir", t.TempDir()}
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "--duration 200ms passed after") {
		t.Fatalf("entries out of reach: exit %d, stderr %q", code, stderr.String())
	}
	if res := lastJSON(t, stdout.String()); res["entries"].(float64) <= 0 {
		t.Errorf("the summary of the bounded run: %v", res)
	}
}

// --rate paces the clients: over a measured second they send about the
// offered load, far less than they would unpaced, and the result and the
// summary say what was offered.
func TestBenchRate(t *testing.T) {
	const rate, batch, clients = 2000, 10, 4
	var stdout, stderr bytes.Buffer
	args := []string{"--nodes", "1", "--rate", strconv.Itoa(rate), "--duration", "1s", "--warmup", "200ms",
		"--clients", strconv.Itoa(clients), "--batch", strconv.Itoa(batch), "--json", "--dir", t.TempDir()}
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	res := lastJSON(t, stdout.String())
	// Requests due before the measured time may complete in it: at most
	// one per client.
	secs, n := res["duration_s"].(float64), res["entries"].(float64)
	if most := rate*secs*1.05 + clients*batch; n > most || n < rate*secs/2 {
		t.Errorf("%v entries in %v s at --rate %d: want about %v, at most %v", n, secs, rate, rate*secs, most)
	}
	if res["rate"] != float64(rate) || res["errors"].(float64) != 0 {
		t.Errorf("rate %v, errors %v", res["rate"], res["errors"])
	}
	if !strings.Contains(stdout.String(), "offered at 2,000 entries/s") {
		t.Errorf("the summary does not say what was offered:\n%s", stdout.String())
	}
}

// The ack variant measures the load generator alone, in the same series:
// it acknowledges at once, so it costs less CPU per entry than a node that
// commits.
func TestBenchCompareAck(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"--compare", "off,ack", "--rounds", "2", "--entries", "2000", "--warmup", "0",
		"--clients", "2", "--batch", "10", "--nodes", "1", "--json", "--dir", t.TempDir()}
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var res struct {
		Entries int64 `json:"entries"`
		Compare []struct {
			Variant   string    `json:"variant"`
			Telemetry string    `json:"telemetry"`
			CPURuns   []float64 `json:"cpu_us_per_entry_runs"`
			Allocs    []float64 `json:"allocs_per_entry_runs"`
			MedianCPU float64   `json:"median_cpu_us_per_entry"`
			MinCPU    float64   `json:"min_cpu_us_per_entry"`
			MaxCPU    float64   `json:"max_cpu_us_per_entry"`
			CPURatio  *float64  `json:"cpu_ratio_to_baseline"`
			RoundRat  *float64  `json:"cpu_round_ratio"`
		} `json:"compare"`
	}
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, stdout.String())
	}
	if res.Entries != 2000 || len(res.Compare) != 2 {
		t.Fatalf("result %+v", res)
	}
	off, ack := res.Compare[0], res.Compare[1]
	if ack.Variant != "ack" || ack.Telemetry != "none" || off.Telemetry != "off" {
		t.Fatalf("variants %+v, %+v", off, ack)
	}
	for _, v := range res.Compare {
		if len(v.CPURuns) != 2 || len(v.Allocs) != 2 || v.MinCPU <= 0 || v.MedianCPU < v.MinCPU || v.MedianCPU > v.MaxCPU ||
			v.CPURatio == nil || v.RoundRat == nil {
			t.Errorf("%s: %+v", v.Variant, v)
		}
	}
	if ack.MedianCPU >= off.MedianCPU || *ack.CPURatio >= 1 {
		t.Errorf("acknowledging at once cost %v µs CPU per entry, a node committing %v", ack.MedianCPU, off.MedianCPU)
	}
	t.Logf("off %.2f µs, ack %.2f µs CPU per entry", off.MedianCPU, ack.MedianCPU)
	for _, row := range []string{"cpu µs/entry", "allocs/entry", "per round"} {
		if !strings.Contains(stdout.String(), row) {
			t.Errorf("summary has no %q:\n%s", row, stdout.String())
		}
	}
}

// A replication port taken before the node bound it does not fail the run:
// the cluster is started again on other ports.
func TestBenchPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	benchReplicationAddrs = func(n int) ([]string, error) {
		calls++
		addrs, err := benchFreeAddrs(n)
		if calls == 1 && err == nil {
			addrs[1] = taken.Addr().String()
		}
		return addrs, err
	}
	t.Cleanup(func() { benchReplicationAddrs = benchFreeAddrs })
	var stdout, stderr bytes.Buffer
	args := []string{"--nodes", "3", "--entries", "100", "--warmup", "0", "--clients", "2", "--batch", "10", "--json", "--dir", t.TempDir()}
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	// The first choice holds the taken port and must be retried. A free
	// port chosen later may be taken too, by another process between the
	// choice and the bind, which costs one more attempt.
	if calls < 2 || calls > benchStartAttempts {
		t.Fatalf("replication addresses chosen %d times, want 2..%d", calls, benchStartAttempts)
	}
}

// --baseline runs another binary's bench as the first variant, with the
// same load, and compares the other variants with what its --json says.
func TestBenchCompareBaseline(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	// A stand-in for an older kmbd: it records its arguments and reports
	// its result.
	script := filepath.Join(dir, "kmbd-old")
	body := "#!/bin/sh\necho \"$@\" >> " + argsFile + "\necho 'a summary line'\n" +
		`echo '{"entries_per_sec":100,"p50_ms":5,"p99_ms":1000,"cpu_us_per_entry":4,"allocs_per_entry":2}'` + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	// This build, as the variants run it: twice the throughput at half
	// the p99.
	self := filepath.Join(dir, "kmbd-new")
	body = "#!/bin/sh\necho \"$@\" >> " + argsFile + "\n" +
		`echo '{"entries_per_sec":200,"p50_ms":5,"p99_ms":500,"cpu_us_per_entry":3,"allocs_per_entry":1}'` + "\n"
	if err := os.WriteFile(self, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	defer func(prev func() (string, error)) { benchSelf = prev }(benchSelf)
	benchSelf = func() (string, error) { return self, nil }
	var stdout, stderr bytes.Buffer
	args := []string{"--compare", "off", "--baseline", script, "--rounds", "2", "--duration", "200ms", "--warmup", "0",
		"--nodes", "1", "--clients", "2", "--batch", "5", "--json", "--dir", dir}
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	got, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	common := "bench --nodes 1 --clients 2 --batch 5 --value-size 100 --tenants 10 --seed 1 --warmup 0s --duration 200ms --json --dir " + dir
	base, off := common+"\n", common+" --telemetry off\n"
	// Round 1 runs the baseline first, round 2 this build's variant.
	if want := base + off + off + base; string(got) != want {
		t.Fatalf("the runs were\n%s\nwant\n%s", got, want)
	}
	res := lastJSON(t, stdout.String())
	variants := res["compare"].([]any)
	baseRes, offRes := variants[0].(map[string]any), variants[1].(map[string]any)
	if baseRes["variant"] != "baseline" || baseRes["median_entries_per_sec"] != 100.0 || baseRes["median_p99_ms"] != 1000.0 || baseRes["median_cpu_us_per_entry"] != 4.0 {
		t.Fatalf("baseline %v", baseRes)
	}
	if offRes["variant"] != "off" || offRes["ratio_to_baseline"] != 2.0 || offRes["p99_ratio_to_baseline"] != 0.5 || offRes["cpu_round_ratio"] != 0.75 {
		t.Fatalf("off against the baseline: %v", offRes)
	}
	if !strings.Contains(stdout.String(), "p99 vs baseline") {
		t.Errorf("summary without the p99 change:\n%s", stdout.String())
	}

	// A baseline that fails is a failed run; one that does not exist is a
	// flag error.
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho broken >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := runBench(t.Context(), args, noEnv, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "broken") {
		t.Fatalf("failing baseline: exit %d, stderr %q", code, stderr.String())
	}
	if _, err := parseBenchFlags([]string{"--compare", "off", "--baseline", filepath.Join(dir, "none")}, noEnv, io.Discard); err == nil {
		t.Fatal("a missing --baseline binary was accepted")
	}
	if _, err := parseBenchFlags([]string{"--baseline", script}, noEnv, io.Discard); err == nil {
		t.Fatal("--baseline without --compare was accepted")
	}
}
