package main

// kmbd bench: a load generator for the client API. It writes batches of
// entries from concurrent clients, either to a cluster it assembles in this
// process exactly as kmbd assembles a node (newApp, the same listeners and
// shutdown order as serve), or to running nodes named by --addrs, and
// reports throughput and latency.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kmb-db/kmb/client"
	"github.com/kmb-db/kmb/telemetry"
)

// Telemetry modes of an in-process cluster.
const (
	// benchTelOff: no tracing, logs at error level to io.Discard; the
	// metrics registry exists (the store always records its metrics) but is
	// never scraped.
	benchTelOff = "off"
	// benchTelMetrics: off, plus a /metrics scrape of every node every
	// second by the bench, so rendering the exposition is paid for.
	benchTelMetrics = "metrics"
	// benchTelFull: metrics, plus JSON logs at info level to io.Discard and
	// tracing at 1% sampling exported over OTLP/HTTP to a server of the
	// bench on 127.0.0.1 that discards what it receives.
	benchTelFull = "full"
	// benchTelNone: the ack variant, which runs no node.
	benchTelNone = "none"
)

const (
	// benchFullSampleRatio is the tracing sample ratio of --telemetry full.
	benchFullSampleRatio = 0.01
	// benchMaxBodyBytes is the API body limit of an in-process cluster: the
	// largest api.max_body_bytes accepted, so any valid flags fit.
	benchMaxBodyBytes = 64 << 20
	// benchMaxBatch is the largest --batch: api.max_batch_entries' maximum.
	benchMaxBatch = 100000
	// benchMaxValueSize is the largest --value-size: api.max_value_bytes' default.
	benchMaxValueSize = 1 << 20
	// benchKeys bounds the distinct keys per tenant, so the projection's
	// memory does not grow with the run's length.
	benchKeys = 1024
	// benchRequestTimeout bounds one logical request, retries included.
	benchRequestTimeout = 30 * time.Second
	// benchStartAttempts bounds the starts of an in-process cluster whose
	// replication port was taken before a node bound it.
	benchStartAttempts = 3
	// benchLeaderTimeout bounds the wait for an in-process cluster's leader.
	benchLeaderTimeout = 30 * time.Second
	// benchBodyPool bounds the distinct request bodies prepared up front
	// (clients cycle through them), and benchBodyPoolBytes their total size.
	benchBodyPool      = 16
	benchBodyPoolBytes = 64 << 20
)

// benchOptions are the parsed flags.
type benchOptions struct {
	nodes    int
	addrs    []string // base URLs; empty for an in-process cluster
	duration time.Duration
	entries  int64 // end the measured time after this many acknowledged entries; 0: after duration
	warmup   time.Duration
	clients  int
	batch    int
	// rate is the offered load in entries per second, 0 for none: the
	// clients then send as fast as they are answered.
	rate       int64
	valueSize  int
	tenants    int
	telemetry  string
	json       bool
	cpuProfile string
	memProfile string
	seed       uint64
	keep       bool
	dir        string
	backup     bool
	// ack: load a server of this process that acknowledges every request
	// at once instead of a cluster (the --compare variant ack).
	ack bool
	// With --compare: the variants, run --rounds times each, alternately.
	compare []benchVariant
	rounds  int
	// With --compare: another kmbd binary whose bench runs as the first
	// variant, baseline, in a process of its own.
	baseline string
	// With --addrs: the API's bearer token ("" for none) and TLS (nil for
	// the defaults).
	token string
	tls   *tls.Config
}

func (o benchOptions) inProcess() bool { return len(o.addrs) == 0 }

// comparing: the run is one of a --compare series.
func (o benchOptions) comparing() bool { return len(o.compare) > 0 }

// benchVariant is one configuration of a --compare series: a telemetry mode
// and whether the cluster backs up continuously, or ack.
type benchVariant struct {
	name      string // as listed, e.g. "metrics+backup"
	telemetry string
	backup    bool
	ack       bool
	binary    string // the variant baseline: this binary's bench, run as a child process
}

// benchVariantAck is the variant that loads a server acknowledging every
// request at once: the load generator's own cost.
const benchVariantAck = "ack"

// benchVariantBaseline is the variant --baseline adds.
const benchVariantBaseline = "baseline"

// benchRunBinary runs one kmbd bench of another binary with o's cluster
// and load, and reads its --json result.
func benchRunBinary(ctx context.Context, o benchOptions, binary string, extra ...string) (*benchResult, error) {
	args := []string{"bench", "--nodes", strconv.Itoa(o.nodes), "--clients", strconv.Itoa(o.clients),
		"--batch", strconv.Itoa(o.batch), "--value-size", strconv.Itoa(o.valueSize), "--tenants", strconv.Itoa(o.tenants),
		"--seed", strconv.FormatUint(o.seed, 10), "--warmup", o.warmup.String(), "--duration", o.duration.String(), "--json"}
	if o.entries > 0 {
		args = append(args, "--entries", strconv.FormatInt(o.entries, 10))
	}
	if o.rate > 0 {
		args = append(args, "--rate", strconv.FormatInt(o.rate, 10))
	}
	if o.dir != "" {
		args = append(args, "--dir", o.dir)
	}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, binary, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s bench: %w: %s", binary, err, lastLine(stderr.String()))
	}
	var res benchResult
	if err := json.Unmarshal([]byte(lastLine(stdout.String())), &res); err != nil {
		return nil, fmt.Errorf("%s bench: its last line is not a JSON result: %w", binary, err)
	}
	return &res, nil
}

// benchSelf is this binary's path (a variable for the tests, whose binary
// is not kmbd).
var benchSelf = os.Executable

// benchVariantArgs are the kmbd bench flags that make a run variant v.
func benchVariantArgs(v benchVariant) []string {
	args := []string{"--telemetry", v.telemetry}
	if v.backup {
		args = append(args, "--backup")
	}
	return args
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// benchEntriesBound is the --duration bound of a run with --entries when
// --duration is not given.
const benchEntriesBound = 10 * time.Minute

// benchMaxRounds bounds --rounds.
const benchMaxRounds = 1000

// benchMaxRate bounds --rate (entries/s).
const benchMaxRate int64 = 1e9

// benchLoaded, when set, is called after the load and before an in-process
// cluster is torn down. Tests use it to read back what was written.
var benchLoaded func(nodes []*benchNode)

// runBench is `kmbd bench`: 0 when the run completed, 1 when it failed or
// was interrupted, 2 on bad flags.
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parseBenchFlags(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		if !errors.Is(err, errBenchFlagReported) {
			fmt.Fprintf(stderr, "kmbd bench: %v\n", err)
		}
		return 2
	}
	if err := benchMain(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "kmbd bench: %v\n", err)
		return 1
	}
	return 0
}

// errBenchFlagReported: the flag package already printed the problem.
var errBenchFlagReported = errors.New("flag error reported")

const benchUsage = `usage: kmbd bench [flags]

Writes batches of entries to kmb from concurrent clients and reports
throughput, latency and, per acknowledged entry, the CPU time and heap
allocations of the process. By default it starts a cluster of --nodes nodes
in this process on 127.0.0.1 (kernel-chosen ports, data in a temporary
directory removed afterwards unless --keep), assembled as kmbd assembles a
node; with --addrs it loads running nodes instead (client API addresses;
writes go to whichever answers and follow 307 redirects to the leader).

Each client sends one request at a time, through the Go client of package
client: --batch entries with keys drawn from 1024 per tenant and JSON string
values of --value-size bytes, to tenants bench-0..bench-N rotated per
request. A request answered 307 is redirected to the leader; one answered
503 or another 5xx (or failing to connect) is retried with the same
Kmb-Client-Id and Kmb-Request-Id, for up to 30s; a request that still fails
is an error, and a 4xx answer stops the run. Latency is per request,
retries included. Requests completing during --warmup are not measured.
With --rate R the requests are paced instead: they have send times
--batch/R seconds apart, and a free client takes the next one, sleeping
until it comes. Latency then counts from the send time, so a request sent
late because every client was busy counts the wait too. Below the
cluster's capacity, every variant then does the same work per second, and
CPU per entry no longer depends on how many requests one fsync took.
The measured time ends after --duration, or with --entries N once N entries
were acknowledged (--duration then bounds it: 10m unless given). MB are
10^6 bytes of values (entries x --value-size).

CPU is the process's user and system time (getrusage) over the measured
time, allocations the heap objects allocated (runtime.MemStats.Mallocs),
both divided by the entries acknowledged in it. With an in-process cluster
they cover the nodes and the load generator together (the variant ack of
--compare measures the load generator alone); with --addrs, the load
generator only.

--telemetry (in-process clusters only):
  off      no tracing; logs at error level to a discarding writer; the
           metrics registry exists but nothing scrapes it
  metrics  off, plus a /metrics scrape of every node each second by the bench
  full     metrics, plus JSON logs at info level to a discarding writer and
           tracing sampled at 1% exported over OTLP/HTTP to a discarding
           collector the bench runs on 127.0.0.1

A live progress line is written to stderr when it is a terminal; the
summary goes to stdout, and --json adds one JSON object as its last line.

--compare LIST runs a series instead, so that the overheads of telemetry
and backup are measured on one machine in one state. LIST is a comma-
separated list of variants: off, metrics or full (the telemetry modes,
backup off), backup (telemetry off, --backup on), a telemetry mode and
backup joined with + (metrics+backup), or ack (no cluster: a server in this
process that reads every request and acknowledges it at once, so that the
load generator's own CPU and allocations per entry, with the HTTP exchange,
are measured in the same series). Each of --rounds rounds runs every
variant once, in the listed order rotated by one per round so that no
variant always runs first; each run starts a fresh in-process cluster,
loads it for --warmup and --duration (or --entries) as a single run does,
and stops it. A line per run goes to stderr; the summary gives per variant
the median, minimum and maximum entries/s over its runs, the median p50 and
p99, the change of its median entries/s from the first variant's (the
baseline), and the same for CPU per entry, with the median over rounds of
its ratio to the baseline's run of the same round. --compare cannot be
combined with --addrs, --telemetry, --backup, --cpuprofile or --memprofile;
the exit status is 1 when any run failed, after the summary of those that
completed.

--baseline PATH adds a first variant to --compare, baseline: PATH's own
kmbd bench (another build of kmbd, an older commit's), run as a child
process with the same nodes, load, --warmup, --duration and --dir, and
--json, whose result is read from its last line. The other variants are
then compared with it: two write paths side by side on one machine. So that
both sides start every run in a fresh process, this build's variants (but
ack) then run as child processes of this binary too. Its CPU
and allocations are its process's, as its bench reports them (0 when that
bench predates them).

flags:
`

func parseBenchFlags(args []string, getenv func(string) string, stderr io.Writer) (benchOptions, error) {
	var o benchOptions
	fs := flag.NewFlagSet("kmbd bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	var addrs string
	var seed int64
	fs.IntVar(&o.nodes, "nodes", 3, "nodes of the in-process cluster: 1 or 3")
	fs.StringVar(&addrs, "addrs", "", "client API addresses of running nodes, host:port,...; replaces the in-process cluster")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time; with --entries, its bound (default 10m then)")
	fs.Int64Var(&o.entries, "entries", 0, "end the measured time after this many acknowledged entries instead of after --duration")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "load before the measured time, not measured")
	fs.IntVar(&o.clients, "clients", 64, "concurrent writers, each with one request in flight")
	fs.IntVar(&o.batch, "batch", 100, "entries per request, 1.."+strconv.Itoa(benchMaxBatch))
	fs.Int64Var(&o.rate, "rate", 0, "offered load in entries/s, shared by the clients; 0: each client sends as soon as it is answered")
	fs.IntVar(&o.valueSize, "value-size", 100, "bytes of each entry's JSON value, 2.."+strconv.Itoa(benchMaxValueSize))
	fs.IntVar(&o.tenants, "tenants", 10, "tenants written, rotated over requests")
	fs.StringVar(&o.telemetry, "telemetry", benchTelOff, "telemetry of an in-process cluster: off, metrics or full")
	fs.BoolVar(&o.json, "json", false, "print the result as one JSON object on the last line")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole process during the measured time to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile at the end of the measured time to this file")
	fs.Int64Var(&seed, "seed", 1, "seed of keys and values")
	fs.BoolVar(&o.keep, "keep", false, "keep the in-process cluster's data directory")
	fs.BoolVar(&o.backup, "backup", false, "run the in-process cluster with continuous backup to a directory repository (default [backup] settings)")
	fs.StringVar(&o.dir, "dir", "", "parent of the in-process cluster's data directory (default $TMPDIR or /tmp)")
	var compare string
	fs.StringVar(&compare, "compare", "", "run a series alternating these variants, comma-separated: off, metrics, full, backup, or a mode+backup")
	fs.IntVar(&o.rounds, "rounds", 5, "with --compare: runs of each variant, 1.."+strconv.Itoa(benchMaxRounds))
	fs.StringVar(&o.baseline, "baseline", "", "with --compare: a kmbd binary whose bench runs first in every round as the variant baseline")
	creds := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, errBenchFlagReported
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: kmbd bench takes only flags", fs.Arg(0))
	}
	o.seed = uint64(seed)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["entries"] {
		if o.entries < 1 || o.entries > 1e12 {
			return o, fmt.Errorf("--entries %d: accepted 1..1000000000000", o.entries)
		}
		if !set["duration"] {
			o.duration = benchEntriesBound
		}
	}

	if set["compare"] {
		for _, name := range []string{"addrs", "telemetry", "backup", "cpuprofile", "memprofile"} {
			if set[name] {
				return o, fmt.Errorf("--%s cannot be combined with --compare: the variants set telemetry and backup, and each run starts its own in-process cluster", name)
			}
		}
		vs, err := parseBenchVariants(compare)
		if err != nil {
			return o, err
		}
		if o.rounds < 1 || o.rounds > benchMaxRounds {
			return o, fmt.Errorf("--rounds %d: accepted 1..%d", o.rounds, benchMaxRounds)
		}
		if o.baseline != "" {
			if _, err := os.Stat(o.baseline); err != nil {
				return o, fmt.Errorf("--baseline: %w", err)
			}
			vs = append([]benchVariant{{name: benchVariantBaseline, telemetry: benchTelOff, binary: o.baseline}}, vs...)
		}
		o.compare = vs
	} else if set["rounds"] || set["baseline"] {
		return o, errors.New("--rounds and --baseline apply to --compare only")
	}
	if addrs != "" {
		var err error
		if o.token, o.tls, err = creds.load(getenv); err != nil {
			return o, err
		}
		for _, a := range strings.Split(addrs, ",") {
			a = strings.TrimSpace(a)
			if creds.tlsSet() && !strings.Contains(a, "://") {
				a = "https://" + a
			}
			base, err := benchBaseURL(a)
			if err != nil {
				return o, fmt.Errorf("--addrs %q: entry %q: %v", addrs, a, err)
			}
			o.addrs = append(o.addrs, base)
		}
		for _, name := range []string{"nodes", "telemetry", "keep", "dir", "backup"} {
			if set[name] {
				return o, fmt.Errorf("--%s applies to the in-process cluster only; it cannot be combined with --addrs", name)
			}
		}
		o.nodes = len(o.addrs)
	} else if set["addrs"] {
		return o, fmt.Errorf("--addrs %q: accepted host:port,... (omit the flag for an in-process cluster)", addrs)
	} else {
		for _, name := range []string{"token", "cacert", "cert", "key"} {
			if set[name] {
				return o, fmt.Errorf("--%s applies to --addrs only: the in-process cluster needs no credentials", name)
			}
		}
	}
	switch {
	case o.inProcess() && o.nodes != 1 && o.nodes != 3:
		return o, fmt.Errorf("--nodes %d: accepted 1 or 3", o.nodes)
	case o.duration <= 0:
		return o, fmt.Errorf("--duration %v: must be positive", o.duration)
	case o.warmup < 0:
		return o, fmt.Errorf("--warmup %v: must not be negative", o.warmup)
	case o.clients < 1 || o.clients > 100000:
		return o, fmt.Errorf("--clients %d: accepted 1..100000", o.clients)
	case o.batch < 1 || o.batch > benchMaxBatch:
		return o, fmt.Errorf("--batch %d: accepted 1..%d", o.batch, benchMaxBatch)
	case o.rate < 0 || o.rate > benchMaxRate:
		return o, fmt.Errorf("--rate %d: accepted 0..%d entries/s (0: no pacing)", o.rate, benchMaxRate)
	case o.valueSize < 2 || o.valueSize > benchMaxValueSize:
		return o, fmt.Errorf("--value-size %d: accepted 2..%d (a JSON string, quotes included)", o.valueSize, benchMaxValueSize)
	case o.tenants < 1 || o.tenants > 100000:
		return o, fmt.Errorf("--tenants %d: accepted 1..100000", o.tenants)
	}
	if o.inProcess() {
		switch o.telemetry {
		case benchTelOff, benchTelMetrics, benchTelFull:
		default:
			return o, fmt.Errorf("--telemetry %q: accepted off, metrics, full", o.telemetry)
		}
		if n := benchBodySize(o.batch, o.valueSize); n > benchMaxBodyBytes {
			return o, fmt.Errorf("--batch %d with --value-size %d makes %d-byte requests, over the %d-byte limit", o.batch, o.valueSize, n, benchMaxBodyBytes)
		}
		if o.dir == "" {
			o.dir = getenv("TMPDIR")
		}
	} else {
		o.telemetry = "external"
	}
	return o, nil
}

// parseBenchVariants parses the list of --compare.
func parseBenchVariants(list string) ([]benchVariant, error) {
	const accepted = "accepted a comma-separated list of off, metrics, full, backup and ack, or a telemetry mode and backup joined with + (metrics+backup)"
	var out []benchVariant
	seen := map[benchVariant]string{} // configuration -> the name listing it
	for _, item := range strings.Split(list, ",") {
		var v benchVariant
		var parts []string
		for _, part := range strings.Split(item, "+") {
			part = strings.TrimSpace(part)
			switch part {
			case benchTelOff, benchTelMetrics, benchTelFull:
				if v.telemetry != "" {
					return nil, fmt.Errorf("--compare %q: variant %q names two telemetry modes; %s", list, strings.TrimSpace(item), accepted)
				}
				v.telemetry = part
			case "backup":
				if v.backup {
					return nil, fmt.Errorf("--compare %q: variant %q names backup twice", list, strings.TrimSpace(item))
				}
				v.backup = true
			case benchVariantAck:
				if strings.TrimSpace(item) != benchVariantAck {
					return nil, fmt.Errorf("--compare %q: variant %q: ack stands alone (it loads no cluster)", list, strings.TrimSpace(item))
				}
				v.ack = true
			case "":
				return nil, fmt.Errorf("--compare %q: empty variant; %s", list, accepted)
			default:
				return nil, fmt.Errorf("--compare %q: unknown variant %q; %s", list, part, accepted)
			}
			parts = append(parts, part)
		}
		switch {
		case v.ack:
			v.telemetry = benchTelNone
		case v.telemetry == "":
			v.telemetry = benchTelOff
		}
		key := v
		v.name = strings.Join(parts, "+")
		if prev, ok := seen[key]; ok {
			return nil, fmt.Errorf("--compare %q: %q and %q are the same variant", list, prev, v.name)
		}
		seen[key] = v.name
		out = append(out, v)
	}
	return out, nil
}

// benchBaseURL turns host:port (or http://host:port) into a base URL.
func benchBaseURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", errors.New("accepted host:port")
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", errors.New("accepted host:port")
	}
	return u.Scheme + "://" + u.Host, nil
}

// benchBodySize is the size of one request body (see benchBody).
func benchBodySize(batch, valueSize int) int {
	const entry = len(`{"key":"k0000","value":}`)
	return len(`{"entries":[]}`) + batch*(entry+valueSize) + batch - 1
}

// benchBatch builds one batch of entries: keys drawn from benchKeys,
// values JSON strings of valueSize bytes.
func benchBatch(r *rand.Rand, batch, valueSize int) (*client.Batch, error) {
	entries := make([]client.Entry, batch)
	for i := range entries {
		key := fmt.Sprintf("k%04d", r.IntN(benchKeys))
		v := make([]byte, valueSize)
		v[0], v[valueSize-1] = '"', '"'
		for j := 1; j < valueSize-1; j++ {
			v[j] = byte('a' + r.IntN(26))
		}
		entries[i] = client.Entry{Key: key, Value: v}
	}
	return client.NewBatch(entries)
}

func benchMain(ctx context.Context, o benchOptions, stdout, stderr io.Writer) error {
	if o.comparing() {
		return benchCompare(ctx, o, stdout, stderr)
	}
	var cpuFile, memFile *os.File
	for _, p := range []struct {
		name string
		path string
		f    **os.File
	}{{"cpuprofile", o.cpuProfile, &cpuFile}, {"memprofile", o.memProfile, &memFile}} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			return fmt.Errorf("--%s: %w", p.name, err)
		}
		defer f.Close()
		*p.f = f
	}

	res, cluster, err := benchRunOnce(ctx, o, stderr, cpuFile, memFile)
	if res == nil {
		return err
	}
	writeBenchSummary(stdout, o, res, cluster)
	if o.json {
		line, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", line)
	}
	return err
}

// benchRunOnce loads the cluster once: one it starts in this process with
// o's telemetry and backup, and stops before returning (the stopped cluster
// is returned for the summary), or the running nodes of o.addrs (the
// cluster is nil). The result is nil when nothing was measured; a non-nil
// result with an error is a run that was interrupted or in which no
// request succeeded.
func benchRunOnce(ctx context.Context, o benchOptions, stderr io.Writer, cpuFile, memFile *os.File) (*benchResult, *benchCluster, error) {
	b := &bencher{o: o, stderr: stderr}
	if err := b.prepare(); err != nil {
		return nil, nil, err
	}
	var cluster *benchCluster
	stopCluster := func() {
		if cluster == nil {
			return
		}
		if err := cluster.stop(); err != nil {
			fmt.Fprintf(stderr, "kmbd bench: stopping the cluster: %v\n", err)
		}
		if o.keep {
			fmt.Fprintf(stderr, "kmbd bench: data kept in %s\n", cluster.dir)
		}
		cluster.stopped = true
	}
	switch {
	case o.ack:
		ack, err := startBenchAck()
		if err != nil {
			return nil, nil, err
		}
		defer ack.close()
		b.targets = []string{ack.url}
	case o.inProcess():
		var err error
		started := time.Now()
		// A series prints a line per run instead.
		if !o.comparing() {
			fmt.Fprintf(stderr, "kmbd bench: starting %d node(s) on 127.0.0.1, telemetry %s\n", o.nodes, o.telemetry)
		}
		// The replication ports are chosen free, then released for the
		// nodes to bind, and another listener may take one meanwhile: a
		// cluster that lost a port that way is started again on new ones.
		for attempt := 1; ; attempt++ {
			cluster, err = startBenchCluster(ctx, o)
			if err == nil || !errors.Is(err, syscall.EADDRINUSE) || attempt == benchStartAttempts {
				break
			}
		}
		if err != nil {
			return nil, nil, err
		}
		defer func() {
			if !cluster.stopped {
				stopCluster()
			}
		}()
		leader := cluster.leader()
		if !o.comparing() {
			fmt.Fprintf(stderr, "kmbd bench: node %d leads after %.2fs; data in %s\n", leader.id, time.Since(started).Seconds(), cluster.dir)
		}
		for _, n := range cluster.nodes {
			b.targets = append(b.targets, n.apiURL)
		}
		if o.telemetry != benchTelOff {
			for _, n := range cluster.nodes {
				b.scrapeURLs = append(b.scrapeURLs, n.telURL+"/metrics")
			}
		}
	default:
		b.targets = o.addrs
	}

	res, runErr := b.run(ctx, cpuFile, memFile)
	if res == nil {
		return nil, nil, runErr
	}
	if cluster != nil {
		if o.backup {
			res.Backup = true
			if t := cluster.leader().app.backup; t != nil {
				st := t.Status()
				res.BackupCheckpointOp, res.BackupLagEntries = st.CheckpointOp, st.LagEntries
			}
			res.BackupRepositoryBytes = dirSize(filepath.Join(cluster.dir, "backup"))
		}
		if benchLoaded != nil {
			benchLoaded(cluster.nodes)
		}
		stopCluster() // flushes the last spans
		res.SpanExports, res.SpanExportBytes = cluster.sink.load()
	}
	switch {
	case runErr != nil:
		return res, cluster, runErr
	case res.Interrupted:
		return res, cluster, errors.New("interrupted: the figures above cover the measured time before the interruption")
	case res.Requests == 0:
		if last := b.lastFail.Load(); last != nil {
			return res, cluster, fmt.Errorf("no request succeeded during the measured time; the last attempt failed: %s", *last)
		}
		return res, cluster, errors.New("no request succeeded during the measured time")
	}
	return res, cluster, nil
}

// bencher runs the clients and collects what they measure.
type bencher struct {
	o          benchOptions
	stderr     io.Writer
	targets    []string // API base URLs, in the order tried
	scrapeURLs []string
	tenants    []string
	batches    []*client.Batch

	client *client.Client // every writer's: it finds the leader once for all

	base time.Time // offsets below are from base
	// With --rate: interval is the time between two requests' sends, and
	// sends counts the requests given a send time (base + k*interval).
	interval time.Duration
	sends    atomic.Int64
	measureA atomic.Int64 // start of the measured time; MaxInt64 until then
	measureB atomic.Int64 // its end; MaxInt64 until then
	// reached is closed when --entries acknowledged entries were measured.
	reached     chan struct{}
	reachedOnce sync.Once

	// Measured (completions inside the measured time).
	lat                          histogram
	requests, entries, bodyBytes atomic.Int64
	errs, retries                atomic.Int64
	scrapes, scrapeNanos         atomic.Int64
	// Live, for the progress line: every completion.
	live                  histogram
	liveEntries, liveErrs atomic.Int64

	cancel    context.CancelFunc // ends the run
	fatalOnce sync.Once
	fatal     error
	lastFail  atomic.Pointer[string] // the latest failed request, for a run where none succeeds
}

func (b *bencher) prepare() error {
	o := b.o
	for i := range o.tenants {
		b.tenants = append(b.tenants, benchTenant(i))
	}
	size := benchBodySize(o.batch, o.valueSize)
	n := max(1, min(benchBodyPool, benchBodyPoolBytes/size))
	r := rand.New(rand.NewPCG(o.seed, 0x6b6d62))
	for range n {
		bt, err := benchBatch(r, o.batch, o.valueSize)
		if err != nil {
			return err
		}
		b.batches = append(b.batches, bt)
	}
	b.reached = make(chan struct{})
	return nil
}

// benchTenant names the i-th tenant.
func benchTenant(i int) string { return "bench-" + strconv.Itoa(i) }

type benchOutcome int

const (
	benchOK      benchOutcome = iota
	benchFailed               // gave up after retries: an error
	benchAborted              // the run ended first: not counted
)

// procUsage is what the process spent: CPU time (user and system) and
// heap allocations.
type procUsage struct {
	cpu    time.Duration
	allocs uint64
}

// readBenchUsage reads the process's usage so far. ReadMemStats stops the
// world for a moment, which is why it is read only at the ends of the
// measured time.
func readProcUsage() procUsage {
	var ru syscall.Rusage
	var u procUsage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u.allocs = ms.Mallocs
	return u
}

func (b *bencher) run(ctx context.Context, cpuFile, memFile *os.File) (*benchResult, error) {
	o := b.o
	c, err := client.New(b.targets, client.Options{
		Token:               o.token,
		TLSConfig:           o.tls,
		RequestTimeout:      benchRequestTimeout,
		MaxIdleConnsPerHost: o.clients + 8,
	})
	if err != nil {
		return nil, err
	}
	b.client = c
	defer c.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.cancel = cancel
	b.base = time.Now()
	if o.rate > 0 {
		b.interval = time.Second * time.Duration(o.batch) / time.Duration(o.rate)
	}
	b.measureA.Store(math.MaxInt64)
	b.measureB.Store(math.MaxInt64)

	var clients sync.WaitGroup
	for i := range o.clients {
		clients.Go(func() { b.runClient(runCtx, i) })
	}
	var aux sync.WaitGroup
	auxCtx, stopAux := context.WithCancel(runCtx)
	defer stopAux()
	if len(b.scrapeURLs) > 0 {
		aux.Go(func() { b.scrapeLoop(auxCtx) })
	}
	if isTerminal(b.stderr) {
		aux.Go(func() { b.progressLoop(auxCtx) })
	}

	// wait waits d, or with done also until it is closed; it reports
	// whether the run is still going, and whether done was closed first.
	wait := func(d time.Duration, done <-chan struct{}) (going, closed bool) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true, false
		case <-done:
			return true, true
		case <-runCtx.Done():
			return false, false
		}
	}
	finish := func() error {
		cancel()
		clients.Wait()
		stopAux()
		aux.Wait()
		return b.fatal
	}

	if going, _ := wait(o.warmup, nil); !going {
		if err := finish(); err != nil {
			return nil, err
		}
		return nil, errors.New("interrupted during the warmup")
	}
	if cpuFile != nil {
		if err := pprof.StartCPUProfile(cpuFile); err != nil {
			finish()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
	}
	used0 := readProcUsage()
	start := time.Since(b.base)
	b.measureA.Store(int64(start))
	var done <-chan struct{}
	if o.entries > 0 {
		done = b.reached
	}
	going, reached := wait(o.duration, done)
	end := time.Since(b.base)
	b.measureB.Store(int64(end))
	used1 := readProcUsage()
	if cpuFile != nil {
		pprof.StopCPUProfile()
	}
	var memErr error
	if memFile != nil {
		runtime.GC()
		memErr = pprof.Lookup("heap").WriteTo(memFile, 0)
	}
	if err := finish(); err != nil {
		return nil, err
	}
	if memErr != nil {
		return nil, fmt.Errorf("--memprofile: %w", memErr)
	}
	res := b.result(end-start, !going, procUsage{cpu: used1.cpu - used0.cpu, allocs: used1.allocs - used0.allocs})
	if going && o.entries > 0 && !reached {
		return res, fmt.Errorf("--duration %v passed after %s of --entries %s acknowledged entries", o.duration, commas(res.Entries), commas(o.entries))
	}
	return res, nil
}

func (b *bencher) runClient(ctx context.Context, i int) {
	o := b.o
	var pace *time.Timer
	if b.interval > 0 {
		pace = time.NewTimer(time.Hour)
		defer pace.Stop()
	}
	for k := 0; ctx.Err() == nil; k++ {
		tenant := b.tenants[(i+k)%len(b.tenants)]
		batch := b.batches[(i+k)%len(b.batches)]
		t0 := time.Now()
		if pace != nil {
			// The next send time of the schedule, whichever client is
			// free to take it. Latency counts from it, not from when the
			// request left: a late send is the system's delay too.
			due := b.base.Add(time.Duration(b.sends.Add(1)-1) * b.interval)
			if d := due.Sub(t0); d > 0 {
				pace.Reset(d)
				select {
				case <-pace.C:
				case <-ctx.Done():
					return
				}
			}
			t0 = due
		}
		outcome, retries := b.send(ctx, tenant, batch)
		took := time.Since(t0)
		if outcome == benchAborted {
			return
		}
		at := int64(time.Since(b.base))
		measured := at >= b.measureA.Load() && at < b.measureB.Load()
		if outcome == benchFailed {
			b.liveErrs.Add(1)
			if measured {
				b.errs.Add(1)
				b.retries.Add(int64(retries))
			}
			continue
		}
		b.live.record(took)
		b.liveEntries.Add(int64(o.batch))
		if measured {
			b.lat.record(took)
			b.requests.Add(1)
			b.bodyBytes.Add(int64(batch.Size()))
			b.retries.Add(int64(retries))
			if n := b.entries.Add(int64(o.batch)); o.entries > 0 && n >= o.entries {
				b.reachedOnce.Do(func() { close(b.reached) })
			}
		}
	}
}

// send appends one batch with the client, which follows redirects to the
// leader and retries 503s, other 5xx answers and connection failures with
// the same idempotency ids for up to benchRequestTimeout. It returns the
// outcome and the number of retries (requests after the first).
func (b *bencher) send(ctx context.Context, tenant string, batch *client.Batch) (benchOutcome, int) {
	res, err := b.client.AppendBatch(ctx, tenant, batch)
	if err == nil {
		return benchOK, res.Attempts - 1
	}
	if ctx.Err() != nil {
		return benchAborted, 0
	}
	var e *client.Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 {
		b.fail(fmt.Errorf("%v: the run cannot continue", err))
		return benchAborted, e.Attempts - 1
	}
	msg := err.Error()
	b.lastFail.Store(&msg)
	if e != nil {
		return benchFailed, e.Attempts - 1
	}
	return benchFailed, 0
}

// fail stops the run on an error no retry can fix.
func (b *bencher) fail(err error) {
	b.fatalOnce.Do(func() { b.fatal = err })
	b.cancel()
}

// scrapeLoop scrapes every node's /metrics once a second, as Prometheus
// would, so that rendering the exposition is part of the measured cost.
func (b *bencher) scrapeLoop(ctx context.Context) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, u := range b.scrapeURLs {
			t0 := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			at := int64(time.Since(b.base))
			if resp.StatusCode == http.StatusOK && at >= b.measureA.Load() && at < b.measureB.Load() {
				b.scrapes.Add(1)
				b.scrapeNanos.Add(int64(time.Since(t0)))
			}
		}
	}
}

// progressLoop rewrites one line a second: elapsed time, the last second's
// entries/s and p99, and the errors so far.
func (b *bencher) progressLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := b.live.snapshot()
	prevEntries, prevAt := int64(0), time.Now()
	width := 0
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(b.stderr, "\r%s\r", strings.Repeat(" ", width))
			return
		case now := <-t.C:
			cur := b.live.snapshot()
			entries := b.liveEntries.Load()
			rate := float64(entries-prevEntries) / now.Sub(prevAt).Seconds()
			p99 := percentile(diffCounts(cur, prev), 0.99, 0)
			elapsed := time.Since(b.base)
			phase := "warmup"
			if a := b.measureA.Load(); int64(elapsed) >= a {
				phase = "run"
				elapsed -= time.Duration(a)
			}
			line := fmt.Sprintf("%-6s %6.1fs  %12s entries/s  p99 %8.2f ms  errors %d",
				phase, elapsed.Seconds(), commas(int64(rate)), millis(p99), b.liveErrs.Load())
			pad := max(0, width-len(line))
			fmt.Fprintf(b.stderr, "\r%s%s", line, strings.Repeat(" ", pad))
			width = len(line)
			prev, prevEntries, prevAt = cur, entries, now
		}
	}
}

// benchResult is the run's outcome; --json prints it.
type benchResult struct {
	Target          string  `json:"target"` // "in-process", "addrs" or "ack"
	Nodes           int     `json:"nodes"`
	Clients         int     `json:"clients"`
	Batch           int     `json:"batch"`
	Rate            int64   `json:"rate,omitempty"` // --rate: offered entries/s; 0 for none
	ValueSize       int     `json:"value_size"`
	Tenants         int     `json:"tenants"`
	Telemetry       string  `json:"telemetry"`
	Seed            uint64  `json:"seed"`
	WarmupS         float64 `json:"warmup_s"`
	DurationS       float64 `json:"duration_s"`
	Requests        int64   `json:"requests"`
	Entries         int64   `json:"entries"`
	Bytes           int64   `json:"bytes"`      // values: entries × value_size
	BodyBytes       int64   `json:"body_bytes"` // request bodies sent
	RequestsPerSec  float64 `json:"requests_per_sec"`
	EntriesPerSec   float64 `json:"entries_per_sec"`
	MBPerSec        float64 `json:"mb_per_sec"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	P999Ms          float64 `json:"p999_ms"`
	MaxMs           float64 `json:"max_ms"`
	Errors          int64   `json:"errors"`
	Retries         int64   `json:"retries"`
	Scrapes         int64   `json:"scrapes"`
	ScrapeAvgMs     float64 `json:"scrape_avg_ms"`
	SpanExports     int64   `json:"span_exports"`
	SpanExportBytes int64   `json:"span_export_bytes"`
	// What the whole process (the nodes of an in-process cluster and the
	// load generator, or only the load generator with --addrs) used during
	// the measured time: CPU time, user and system, from getrusage; the
	// cores that is on average; and per acknowledged entry, CPU and heap
	// allocations (runtime.MemStats.Mallocs).
	CPUS           float64 `json:"cpu_s"`
	CPUCores       float64 `json:"cpu_cores"`
	CPUUsPerEntry  float64 `json:"cpu_us_per_entry"`
	AllocsPerEntry float64 `json:"allocs_per_entry"`
	Interrupted    bool    `json:"interrupted"`
	// With --backup: the leader's backup task at the end of the measured
	// time.
	Backup                bool   `json:"backup"`
	BackupCheckpointOp    uint64 `json:"backup_checkpoint_op,omitempty"`
	BackupLagEntries      uint64 `json:"backup_lag_entries,omitempty"`
	BackupStoredBytes     uint64 `json:"backup_stored_bytes,omitempty"`
	BackupRepositoryBytes uint64 `json:"backup_repository_bytes,omitempty"`
}

func (b *bencher) result(d time.Duration, interrupted bool, used procUsage) *benchResult {
	o := b.o
	secs := d.Seconds()
	r := &benchResult{
		Target: "in-process", Nodes: o.nodes, Clients: o.clients, Batch: o.batch, Rate: o.rate,
		ValueSize: o.valueSize, Tenants: o.tenants, Telemetry: o.telemetry, Seed: o.seed,
		WarmupS: round(o.warmup.Seconds(), 3), DurationS: round(secs, 3),
		Requests: b.requests.Load(), Entries: b.entries.Load(), BodyBytes: b.bodyBytes.Load(),
		Errors: b.errs.Load(), Retries: b.retries.Load(), Scrapes: b.scrapes.Load(),
		Interrupted: interrupted,
	}
	switch {
	case o.ack:
		r.Target, r.Nodes = "ack", 0
	case !o.inProcess():
		r.Target = "addrs"
	}
	r.Bytes = r.Entries * int64(o.valueSize)
	if secs > 0 {
		r.RequestsPerSec = round(float64(r.Requests)/secs, 1)
		r.EntriesPerSec = round(float64(r.Entries)/secs, 1)
		r.MBPerSec = round(float64(r.Bytes)/1e6/secs, 3)
	}
	counts, maxNs := b.lat.snapshot(), b.lat.max.Load()
	r.P50Ms = round(millis(percentile(counts, 0.50, maxNs)), 3)
	r.P99Ms = round(millis(percentile(counts, 0.99, maxNs)), 3)
	r.P999Ms = round(millis(percentile(counts, 0.999, maxNs)), 3)
	r.MaxMs = round(millis(maxNs), 3)
	if r.Scrapes > 0 {
		r.ScrapeAvgMs = round(float64(b.scrapeNanos.Load())/float64(r.Scrapes)/1e6, 3)
	}
	r.CPUS = round(used.cpu.Seconds(), 3)
	if secs > 0 {
		r.CPUCores = round(used.cpu.Seconds()/secs, 3)
	}
	if r.Entries > 0 {
		r.CPUUsPerEntry = round(float64(used.cpu.Nanoseconds())/1e3/float64(r.Entries), 4)
		r.AllocsPerEntry = round(float64(used.allocs)/float64(r.Entries), 3)
	}
	return r
}

func writeBenchSummary(w io.Writer, o benchOptions, r *benchResult, c *benchCluster) {
	target := fmt.Sprintf("%d running node(s) at %s", r.Nodes, strings.Join(o.addrs, ","))
	if c != nil {
		kept := "removed"
		if c.keep {
			kept = "kept"
		}
		target = fmt.Sprintf("%d in-process node(s), data in %s (%s), telemetry %s", r.Nodes, c.dir, kept, r.Telemetry)
	}
	fmt.Fprintf(w, "\nkmbd bench: %s\n", target)
	fmt.Fprintf(w, "load: %d clients, %d entries of %d-byte values per request, %d tenants, seed %d%s\n\n",
		r.Clients, r.Batch, r.ValueSize, r.Tenants, r.Seed, benchRateNote(r.Rate))
	rows := [][2]string{
		{"Duration", fmt.Sprintf("%.2f s (after %.2f s of warmup)", r.DurationS, r.WarmupS)},
		{"Requests", commas(r.Requests)},
		{"Entries", commas(r.Entries)},
		{"Bytes", fmt.Sprintf("%s (values; %s sent in request bodies)", benchBytes(r.Bytes), benchBytes(r.BodyBytes))},
		{"Requests/s", commas(int64(r.RequestsPerSec))},
		{"Entries/s", commas(int64(r.EntriesPerSec))},
		{"MB/s", fmt.Sprintf("%.2f", r.MBPerSec)},
		{"Latency p50", fmt.Sprintf("%.2f ms", r.P50Ms)},
		{"Latency p99", fmt.Sprintf("%.2f ms", r.P99Ms)},
		{"Latency p99.9", fmt.Sprintf("%.2f ms", r.P999Ms)},
		{"Latency max", fmt.Sprintf("%.2f ms", r.MaxMs)},
		{"Errors", fmt.Sprintf("%s (%s retries)", commas(r.Errors), commas(r.Retries))},
		{"CPU", fmt.Sprintf("%.2f µs per entry (%.2f s of process CPU, %.2f cores busy)", r.CPUUsPerEntry, r.CPUS, r.CPUCores)},
		{"Allocations", fmt.Sprintf("%.1f per entry", r.AllocsPerEntry)},
	}
	if r.Telemetry == benchTelMetrics || r.Telemetry == benchTelFull {
		rows = append(rows, [2]string{"Scrapes", fmt.Sprintf("%s, %.2f ms on average", commas(r.Scrapes), r.ScrapeAvgMs)})
	}
	if r.Telemetry == benchTelFull {
		rows = append(rows, [2]string{"Span exports", fmt.Sprintf("%s requests, %s", commas(r.SpanExports), benchBytes(r.SpanExportBytes))})
	}
	if r.Backup {
		rows = append(rows, [2]string{"Backup", fmt.Sprintf("checkpoint at op %s, %s entries behind at the end; repository %s",
			commas(int64(r.BackupCheckpointOp)), commas(int64(r.BackupLagEntries)), benchBytes(int64(r.BackupRepositoryBytes)))})
	}
	if r.Interrupted {
		rows = append(rows, [2]string{"Interrupted", "yes"})
	}
	for _, row := range rows {
		fmt.Fprintf(w, "  %-14s %s\n", row[0], row[1])
	}
}

// benchRateNote describes --rate for the summaries' load line.
func benchRateNote(rate int64) string {
	if rate == 0 {
		return ""
	}
	return fmt.Sprintf(", offered at %s entries/s", commas(rate))
}

// benchCompare runs the --compare series: --rounds rounds, each running
// every variant once on a fresh in-process cluster, in the listed order
// rotated by one per round. A failed run is reported and the series goes on;
// an interruption ends it. The summary covers the runs that completed.
func benchCompare(ctx context.Context, o benchOptions, stdout, stderr io.Writer) error {
	k := len(o.compare)
	names := make([]string, k)
	for i, v := range o.compare {
		names[i] = v.name
	}
	measured := o.duration.String()
	if o.entries > 0 {
		measured = commas(o.entries) + " entries"
	}
	fmt.Fprintf(stderr, "kmbd bench: %d round(s) of %s on %d in-process node(s) at 127.0.0.1, %v of warmup and %s measured per run\n",
		o.rounds, strings.Join(names, ", "), o.nodes, o.warmup, measured)

	runs := make([][]*benchResult, k) // per variant, completed runs in order
	byRound := make([][]*benchResult, k)
	for i := range byRound {
		byRound[i] = make([]*benchResult, o.rounds) // nil: failed or not run
	}
	failed := make([]int, k)
	interrupted := false
	self := ""
	if o.baseline != "" {
		exe, err := benchSelf()
		if err != nil {
			return fmt.Errorf("--baseline: this build's path, to run its variants alike: %w", err)
		}
		self = exe
	}
series:
	for r := range o.rounds {
		for i := range k {
			vi := (r + i) % k
			v := o.compare[vi]
			ro := o
			ro.telemetry, ro.backup, ro.ack = v.telemetry, v.backup, v.ack
			// Each run starts from a collected heap, whatever the last one left.
			runtime.GC()
			var res *benchResult
			var err error
			switch {
			case v.binary != "":
				res, err = benchRunBinary(ctx, ro, v.binary)
			case self != "" && !v.ack:
				// Against a baseline in a process of its own, this
				// build's variants get one each too: a fresh process
				// for every run on both sides.
				res, err = benchRunBinary(ctx, ro, self, benchVariantArgs(v)...)
			default:
				res, _, err = benchRunOnce(ctx, ro, stderr, nil, nil)
			}
			label := fmt.Sprintf("round %d/%d %s", r+1, o.rounds, v.name)
			if err != nil {
				failed[vi]++
				fmt.Fprintf(stderr, "%s: failed: %v\n", label, err)
			} else {
				runs[vi] = append(runs[vi], res)
				byRound[vi][r] = res
				line := fmt.Sprintf("%s: %s entries/s, p99 %.1f ms, %.2f µs CPU and %.1f allocations per entry",
					label, commas(int64(res.EntriesPerSec)), res.P99Ms, res.CPUUsPerEntry, res.AllocsPerEntry)
				if res.Errors > 0 {
					line += fmt.Sprintf(", %s errors", commas(res.Errors))
				}
				fmt.Fprintln(stderr, line)
			}
			if ctx.Err() != nil {
				interrupted = true
				break series
			}
		}
	}

	out := benchCompareResult{
		Rounds: o.rounds, Nodes: o.nodes, Clients: o.clients, Batch: o.batch, Rate: o.rate, ValueSize: o.valueSize,
		Tenants: o.tenants, Seed: o.seed, WarmupS: round(o.warmup.Seconds(), 3), DurationS: round(o.duration.Seconds(), 3),
		Entries: o.entries, Interrupted: interrupted,
	}
	completed := 0
	for i, v := range o.compare {
		vr := benchVariantResult{Variant: v.name, Telemetry: v.telemetry, Backup: v.backup, Runs: []float64{}, Failed: failed[i],
			CPURuns: []float64{}, AllocsRuns: []float64{}}
		var p50s, p99s []float64
		for _, res := range runs[i] {
			vr.Runs = append(vr.Runs, res.EntriesPerSec)
			vr.CPURuns = append(vr.CPURuns, res.CPUUsPerEntry)
			vr.AllocsRuns = append(vr.AllocsRuns, res.AllocsPerEntry)
			p50s, p99s = append(p50s, res.P50Ms), append(p99s, res.P99Ms)
		}
		if n := len(vr.Runs); n > 0 {
			vr.MedianCPUUsPerEntry = round(median(vr.CPURuns), 4)
			vr.MinCPUUsPerEntry, vr.MaxCPUUsPerEntry = slices.Min(vr.CPURuns), slices.Max(vr.CPURuns)
			vr.MedianAllocsPerEntry = round(median(vr.AllocsRuns), 3)
			if base := out.Compare; i > 0 && len(base[0].CPURuns) > 0 && base[0].MedianCPUUsPerEntry > 0 {
				ratio := round(vr.MedianCPUUsPerEntry/base[0].MedianCPUUsPerEntry, 4)
				vr.CPURatioToBaseline = &ratio
			} else if i == 0 {
				one := 1.0
				vr.CPURatioToBaseline = &one
			}
			var ratios []float64
			for r := range o.rounds {
				if a, b := byRound[i][r], byRound[0][r]; a != nil && b != nil && b.CPUUsPerEntry > 0 {
					ratios = append(ratios, a.CPUUsPerEntry/b.CPUUsPerEntry)
				}
			}
			if len(ratios) > 0 {
				ratio := round(median(ratios), 4)
				vr.CPURoundRatio = &ratio
			}
		}
		if n := len(vr.Runs); n > 0 {
			vr.MedianEntriesPerSec = round(median(vr.Runs), 1)
			vr.MinEntriesPerSec, vr.MaxEntriesPerSec = slices.Min(vr.Runs), slices.Max(vr.Runs)
			vr.MedianP50Ms, vr.MedianP99Ms = round(median(p50s), 3), round(median(p99s), 3)
			vr.P99Runs = p99s
			switch {
			case i == 0:
				one := 1.0
				vr.RatioToBaseline, vr.P99RatioToBaseline = &one, &one
			case out.Compare[0].MedianEntriesPerSec > 0:
				ratio := round(vr.MedianEntriesPerSec/out.Compare[0].MedianEntriesPerSec, 4)
				vr.RatioToBaseline = &ratio
				if b := out.Compare[0].MedianP99Ms; b > 0 {
					p99 := round(vr.MedianP99Ms/b, 4)
					vr.P99RatioToBaseline = &p99
				}
			}
		}
		completed += len(vr.Runs)
		out.Failed += vr.Failed
		out.Compare = append(out.Compare, vr)
	}
	writeBenchCompare(stdout, &out)
	if o.json {
		line, _ := json.Marshal(out)
		fmt.Fprintf(stdout, "%s\n", line)
	}
	switch total := o.rounds * k; {
	case interrupted:
		return fmt.Errorf("interrupted after %d of %d runs; the figures above cover the %d that completed", completed+out.Failed, total, completed)
	case out.Failed > 0:
		return fmt.Errorf("%d of %d runs failed; the figures above cover the %d that completed", out.Failed, total, completed)
	}
	return nil
}

// benchCompareResult is the outcome of a --compare series; --json prints it.
type benchCompareResult struct {
	Compare     []benchVariantResult `json:"compare"`
	Rounds      int                  `json:"rounds"`
	Nodes       int                  `json:"nodes"`
	Clients     int                  `json:"clients"`
	Batch       int                  `json:"batch"`
	Rate        int64                `json:"rate,omitempty"` // --rate: offered entries/s per run; 0 for none
	ValueSize   int                  `json:"value_size"`
	Tenants     int                  `json:"tenants"`
	Seed        uint64               `json:"seed"`
	WarmupS     float64              `json:"warmup_s"`
	DurationS   float64              `json:"duration_s"`
	Entries     int64                `json:"entries"` // with --entries: acknowledged entries measured per run
	Failed      int                  `json:"failed_runs"`
	Interrupted bool                 `json:"interrupted"`
}

// benchVariantResult is one variant's runs in a series.
type benchVariantResult struct {
	Variant   string `json:"variant"`
	Telemetry string `json:"telemetry"`
	Backup    bool   `json:"backup"`
	// Runs are the entries/s of the completed runs, in the order run.
	Runs                []float64 `json:"runs"`
	Failed              int       `json:"failed_runs"`
	MedianEntriesPerSec float64   `json:"median_entries_per_sec"`
	MinEntriesPerSec    float64   `json:"min_entries_per_sec"`
	MaxEntriesPerSec    float64   `json:"max_entries_per_sec"`
	MedianP50Ms         float64   `json:"median_p50_ms"`
	MedianP99Ms         float64   `json:"median_p99_ms"`
	// P99Runs are the p99 latencies of the completed runs, in order.
	P99Runs []float64 `json:"p99_ms_runs"`
	// RatioToBaseline is the median entries/s over the first variant's,
	// P99RatioToBaseline the median p99 over the first variant's; null
	// when either has no completed run.
	RatioToBaseline    *float64 `json:"ratio_to_baseline"`
	P99RatioToBaseline *float64 `json:"p99_ratio_to_baseline"`
	// CPU time and allocations of the whole process per acknowledged
	// entry: of each completed run, in the order run, and their median,
	// minimum and maximum.
	CPURuns              []float64 `json:"cpu_us_per_entry_runs"`
	AllocsRuns           []float64 `json:"allocs_per_entry_runs"`
	MedianCPUUsPerEntry  float64   `json:"median_cpu_us_per_entry"`
	MinCPUUsPerEntry     float64   `json:"min_cpu_us_per_entry"`
	MaxCPUUsPerEntry     float64   `json:"max_cpu_us_per_entry"`
	MedianAllocsPerEntry float64   `json:"median_allocs_per_entry"`
	// CPURatioToBaseline is the median CPU per entry over the first
	// variant's; CPURoundRatio the median over rounds of the ratio between
	// this variant's run and the first variant's run of the same round,
	// which leaves out load that changed between rounds. Null when there
	// is nothing to compare.
	CPURatioToBaseline *float64 `json:"cpu_ratio_to_baseline"`
	CPURoundRatio      *float64 `json:"cpu_round_ratio"`
}

func writeBenchCompare(w io.Writer, r *benchCompareResult) {
	measured := fmt.Sprintf("%.2f s", r.DurationS)
	if r.Entries > 0 {
		measured = commas(r.Entries) + " entries"
	}
	fmt.Fprintf(w, "\nkmbd bench: %d round(s) on %d in-process node(s), %s measured per run (after %.2f s of warmup)\n",
		r.Rounds, r.Nodes, measured, r.WarmupS)
	fmt.Fprintf(w, "load: %d clients, %d entries of %d-byte values per request, %d tenants, seed %d%s\n\n",
		r.Clients, r.Batch, r.ValueSize, r.Tenants, r.Seed, benchRateNote(r.Rate))
	width := len("variant")
	for _, v := range r.Compare {
		width = max(width, len(v.Variant))
	}
	baseline := "vs " + r.Compare[0].Variant
	change := func(i int, ratio *float64) string {
		switch {
		case i == 0:
			return "baseline"
		case ratio != nil:
			return fmt.Sprintf("%+.1f%%", (*ratio-1)*100)
		}
		return "-"
	}
	fmt.Fprintf(w, "  %-*s  %5s  %12s  %12s  %12s  %9s  %9s  %9s  %s\n",
		width, "variant", "runs", "entries/s", "min", "max", "p50 ms", "p99 ms", baseline, "p99 "+baseline)
	for i, v := range r.Compare {
		n := len(v.Runs)
		if n == 0 {
			fmt.Fprintf(w, "  %-*s  %5s  %12s  %12s  %12s  %9s  %9s  %9s  %s\n",
				width, v.Variant, fmt.Sprintf("%d/%d", n, n+v.Failed), "-", "-", "-", "-", "-", "-", "-")
			continue
		}
		fmt.Fprintf(w, "  %-*s  %5s  %12s  %12s  %12s  %9.2f  %9.2f  %9s  %s\n",
			width, v.Variant, fmt.Sprintf("%d/%d", n, n+v.Failed),
			commas(int64(v.MedianEntriesPerSec)), commas(int64(v.MinEntriesPerSec)), commas(int64(v.MaxEntriesPerSec)),
			v.MedianP50Ms, v.MedianP99Ms, change(i, v.RatioToBaseline), change(i, v.P99RatioToBaseline))
	}
	fmt.Fprintf(w, "\n  %-*s  %12s  %9s  %9s  %12s  %9s  %s\n",
		width, "variant", "cpu µs/entry", "min", "max", "allocs/entry", baseline, "per round")
	for i, v := range r.Compare {
		if len(v.CPURuns) == 0 {
			fmt.Fprintf(w, "  %-*s  %12s  %9s  %9s  %12s  %9s  %s\n", width, v.Variant, "-", "-", "-", "-", "-", "-")
			continue
		}
		fmt.Fprintf(w, "  %-*s  %12.3f  %9.3f  %9.3f  %12.1f  %9s  %s\n",
			width, v.Variant, v.MedianCPUUsPerEntry, v.MinCPUUsPerEntry, v.MaxCPUUsPerEntry, v.MedianAllocsPerEntry,
			change(i, v.CPURatioToBaseline), change(i, v.CPURoundRatio))
	}
	fmt.Fprintf(w, "\nentries/s, p50, p99, CPU and allocations per entry are medians over a variant's runs; min and max are its extreme runs;\n"+
		"CPU is the whole process's (nodes and load generator), per acknowledged entry; \"per round\" is the median over rounds of the\n"+
		"ratio to the baseline's run of the same round.\n")
}

// median of vs, which is not empty; the mean of the middle two for an even
// count.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// benchBytes formats a byte count in decimal units.
func benchBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.2f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

func millis(ns uint64) float64 { return float64(ns) / 1e6 }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// histogram counts durations in log-linear buckets: exact below 256 ns,
// then 128 buckets per power of two (under 0.4% error). Recording is a few
// atomic adds, so every client shares one.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Uint64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = 2*histSub + (64-histSubBits-1)*histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - (histSubBits + 1)
	top := v >> shift
	return 2*histSub + (shift-1)*histSub + int(top-histSub)
}

// histValue is the middle of bucket i.
func histValue(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	j := i - 2*histSub
	shift := j/histSub + 1
	top := uint64(j%histSub + histSub)
	return top<<shift + 1<<(shift-1)
}

func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[histIndex(v)].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

func (h *histogram) snapshot() []uint64 {
	out := make([]uint64, histBuckets)
	for i := range h.counts {
		out[i] = h.counts[i].Load()
	}
	return out
}

func diffCounts(cur, prev []uint64) []uint64 {
	out := make([]uint64, len(cur))
	for i := range cur {
		out[i] = cur[i] - prev[i]
	}
	return out
}

// percentile returns the q-quantile of counts in nanoseconds, capped at
// maxNs when maxNs is not 0; 0 when counts are empty.
func percentile(counts []uint64, q float64, maxNs uint64) uint64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			v := histValue(i)
			if maxNs != 0 && v > maxNs {
				v = maxNs
			}
			return v
		}
	}
	return maxNs
}

// benchCluster is an in-process cluster.
type benchCluster struct {
	dir     string
	keep    bool
	stopped bool
	nodes   []*benchNode
	sink    *benchSpanSink
}

// benchNode is one node of it, served as kmbd serves a node.
type benchNode struct {
	*server
	id             uint64
	apiURL, telURL string // http://127.0.0.1:port
}

func startBenchCluster(ctx context.Context, o benchOptions) (c *benchCluster, err error) {
	dir, err := os.MkdirTemp(o.dir, "kmbd-bench-")
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	c = &benchCluster{dir: dir, keep: o.keep}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	if o.telemetry == benchTelFull {
		if c.sink, err = startBenchSpanSink(); err != nil {
			return c, err
		}
	}
	var replicas string
	if o.nodes > 1 {
		addrs, err := benchReplicationAddrs(o.nodes)
		if err != nil {
			return c, err
		}
		var parts []string
		for i, a := range addrs {
			parts = append(parts, fmt.Sprintf("%d=%s", i+1, a))
		}
		replicas = strings.Join(parts, ",")
	}
	for id := uint64(1); id <= uint64(o.nodes); id++ {
		cfg := defaultConfig()
		cfg.NodeID = id
		cfg.DataDir = filepath.Join(dir, strconv.FormatUint(id, 10))
		cfg.Cluster.Replicas = replicas
		cfg.API.Listen = "127.0.0.1:0"
		cfg.API.MaxBodyBytes = benchMaxBodyBytes
		cfg.API.MaxBatchEntries = benchMaxBatch
		cfg.Telemetry = benchTelemetryConfig(o.telemetry, c.sink)
		if o.backup {
			repo := filepath.Join(dir, "backup")
			if err := os.MkdirAll(repo, 0o755); err != nil {
				return c, err
			}
			cfg.Backup.Repository = "file://" + repo
		}
		n, err := startBenchNode(cfg)
		if err != nil {
			return c, fmt.Errorf("node %d: %w", id, err)
		}
		c.nodes = append(c.nodes, n)
	}
	return c, c.waitLeader(ctx)
}

// benchTelemetryConfig is the [telemetry] table of a node for mode.
func benchTelemetryConfig(mode string, sink *benchSpanSink) telemetry.Config {
	t := telemetry.DefaultConfig()
	t.Listen = "127.0.0.1:0"
	t.LogLevel = "error"
	t.TracingEnabled = false
	if mode == benchTelFull {
		t.LogLevel, t.LogFormat = "info", "json"
		t.TracingEnabled = true
		t.TracingProtocol = telemetry.ProtocolHTTP
		t.TracingEndpoint = sink.url
		t.TracingSampleRatio = benchFullSampleRatio
	}
	return t
}

// startBenchNode starts a node as kmbd does; logs are discarded.
func startBenchNode(cfg Config) (*benchNode, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := startServer(cfg, io.Discard)
	if err != nil {
		return nil, err
	}
	return &benchNode{server: s, id: cfg.NodeID, apiURL: "http://" + s.apiAddr, telURL: "http://" + s.telAddr}, nil
}

// waitLeader waits until every node is ready and one leads.
func (c *benchCluster) waitLeader(ctx context.Context) error {
	deadline := time.Now().Add(benchLeaderTimeout)
	for {
		ready, leader := 0, false
		for _, n := range c.nodes {
			select {
			case err := <-n.runErr:
				n.ranOut(err)
				return fmt.Errorf("node %d stopped while starting: %w", n.id, err)
			default:
			}
			if n.app.node.Ready() == nil {
				ready++
				leader = leader || n.app.node.Status().IsLeader
			}
		}
		if ready == len(c.nodes) && leader {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no leader within %v (%d of %d nodes ready)", benchLeaderTimeout, ready, len(c.nodes))
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted while waiting for a leader")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (c *benchCluster) leader() *benchNode {
	for _, n := range c.nodes {
		if n.app.node.Status().IsLeader {
			return n
		}
	}
	return c.nodes[0]
}

// stop shuts the nodes down in serve's order: stop taking traffic, finish
// what was accepted, stop the nodes, flush telemetry; then removes the data
// unless it is kept.
func (c *benchCluster) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for _, n := range c.nodes {
		n.checks.BeginShutdown() // every node stops taking traffic before any drains
	}
	for _, n := range c.nodes {
		if err := n.drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node %d: client API: %w", n.id, err))
		}
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, n := range c.nodes {
		wg.Go(func() {
			if err := n.stopNode(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %d: %w", n.id, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, n := range c.nodes {
		if err := n.flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node %d: telemetry: %w", n.id, err))
		}
	}
	if c.sink != nil {
		c.sink.close()
	}
	if !c.keep {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// benchReplicationAddrs chooses the replication addresses of an in-process
// cluster; tests replace it.
var benchReplicationAddrs = benchFreeAddrs

// benchFreeAddrs returns n loopback addresses that were free a moment ago,
// held open together so no port is handed out twice.
func benchFreeAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("replication address: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// benchSpanSink is an OTLP/HTTP collector that discards what it receives
// and counts it.
type benchSpanSink struct {
	url      string
	srv      *http.Server
	requests atomic.Int64
	bytes    atomic.Int64
}

func startBenchSpanSink() (*benchSpanSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("span collector: %w", err)
	}
	s := &benchSpanSink{url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			s.requests.Add(1)
			s.bytes.Add(n)
			// An empty ExportTraceServiceResponse: full success.
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusOK)
		}),
	}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *benchSpanSink) load() (requests, bytes int64) {
	if s == nil {
		return 0, 0
	}
	return s.requests.Load(), s.bytes.Load()
}

func (s *benchSpanSink) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// benchAck is an HTTP server of this process that reads every append and
// acknowledges it at once, as a node would once it committed it, and
// stores nothing: loading it measures what the load generator and the
// HTTP exchange cost by themselves (the --compare variant ack).
type benchAck struct {
	url string
	srv *http.Server
}

func startBenchAck() (*benchAck, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ack server: %w", err)
	}
	answer := []byte(`{"first_position":1,"last_position":1,"commit_number":1}` + "\n")
	contentType := []string{"application/json"}
	a := &benchAck{url: "http://" + ln.Addr().String()}
	a.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header()["Content-Type"] = contentType
			_, _ = w.Write(answer)
		}),
	}
	go a.srv.Serve(ln)
	return a, nil
}

func (a *benchAck) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
}

// dirSize is the size of the files under dir.
func dirSize(dir string) uint64 {
	var n uint64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += uint64(fi.Size())
			}
		}
		return nil
	})
	return n
}
