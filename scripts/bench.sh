#!/usr/bin/env bash
# Runs every benchmark behind BENCHMARKS.md and regenerates it.
#
# Raw results go to ${KMB_BENCH_OUT:-./bench-results}: per group of Go
# benchmarks <group>.txt (go test output, benchstat's input), per kmbd bench
# run <name>.json (the --json line) and <name>.out (its whole output), and
# for each of them <name>.meta (the exact command, when it started, the
# commit of the tree, the Go version, the machine and its load average
# then). A group's files are removed before it runs and written only when it
# succeeds, so the directory never mixes a failed run with an older one. The
# last step, report, renders scripts/benchmarks.md.tmpl over that directory
# into BENCHMARKS.md with internal/benchreport; it fails, naming the file and
# benchmark, when a figure the template asks for is missing.
#
#   scripts/bench.sh                  # every group, then report
#   scripts/bench.sh primitives spans # chosen groups only (no report)
#   scripts/bench.sh report           # re-render BENCHMARKS.md from the results
#   benchstat old/primitives.txt new/primitives.txt   # compare two runs
#
# Groups: primitives metric logging spans render log wire append cluster
# tracing backup audit restart retention client (go test -bench), spans-vs (the span
# benchmarks of KMB_SPANS_BASE and of the tree, interleaved), kmbd (kmbd
# bench, 1 and 3 nodes), writepath-vs (kmbd bench --compare off --baseline:
# the write path of KMB_WRITEPATH_BASE against the tree's, 3 nodes, runs
# interleaved), compare (kmbd bench --compare off,backup, and
# off,metrics,full,ack in CPU per entry), compare-shm (the latter with the
# data on /dev/shm), compare-rate (the latter at a fixed offered load,
# --rate), profile (CPU profiles of off, metrics and full, and the
# share of instrumenting code in them), report.
#
# Environment:
#   COUNT               go test -count (default 5; the span groups 10)
#   KMB_BENCH_DURATION  kmbd bench --duration of every run (default 10s)
#   KMB_BENCH_ROUNDS    kmbd bench --compare --rounds (default 7)
#   KMB_BENCH_ENTRIES   kmbd bench --entries of each run of the telemetry
#                       series (default 3000000)
#   KMB_BENCH_RATE      kmbd bench --rate of compare-rate, in entries/s
#                       (default 200000, below every variant's capacity)
#   KMB_SPANS_BASE      the commit spans-vs compares the tree with (default
#                       9316f76, the last before the span sites' rework)
#   KMB_WRITEPATH_BASE  the commit writepath-vs compares the tree with
#                       (default 3f336ec, the last before the write path's
#                       rework: early prepares, no per-write timeout,
#                       backups' frames as received, the leader's fsync off
#                       its loop)
#   KMB_BENCH_NOTE      a remark on the conditions, recorded with each group
#                       and printed in BENCHMARKS.md (e.g. "other work
#                       shared the machine")
#   KMB_BENCH_OUT       results directory (default ./bench-results)
#   KMB_BENCH_DOC       the document report writes (default BENCHMARKS.md)
#
# A quick smoke run of everything, leaving BENCHMARKS.md alone:
#   COUNT=1 KMB_BENCH_DURATION=2s KMB_BENCH_ROUNDS=1 KMB_BENCH_OUT=/tmp/kmb-smoke \
#     KMB_BENCH_DOC=/tmp/kmb-smoke/BENCHMARKS.md scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${KMB_BENCH_OUT:-./bench-results}"
count="${COUNT:-5}"
spans_count="${COUNT:-10}"
duration="${KMB_BENCH_DURATION:-10s}"
rounds="${KMB_BENCH_ROUNDS:-7}"
entries="${KMB_BENCH_ENTRIES:-3000000}"
rate="${KMB_BENCH_RATE:-200000}"
spans_base="${KMB_SPANS_BASE:-9316f76}"
writepath_base="${KMB_WRITEPATH_BASE:-3f336ec}"
doc="${KMB_BENCH_DOC:-BENCHMARKS.md}"
mkdir -p "$out"
benchstat="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

# quote prints its arguments as a shell command line, single-quoting those
# that need it.
quote() {
	local a s=""
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./,=:@+-]+$ ]]; then
			s+=" $a"
		else
			s+=" '${a//\'/\'\\\'\'}'"
		fi
	done
	echo "${s# }"
}

# meta writes <name>.meta.tmp: the command, then the conditions it starts in.
meta() { # name, command words
	local name="$1"; shift
	{
		echo "command: $(quote "$@")"
		echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "commit: $(git describe --always --dirty 2>/dev/null || echo unknown)"
		echo "go: $(go env GOVERSION)"
		echo "goos: $(go env GOOS)"
		echo "goarch: $(go env GOARCH)"
		echo "ncpu: $(getconf _NPROCESSORS_ONLN)"
		echo "kernel: $(uname -sr)"
		if [ -r /proc/loadavg ]; then echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"; fi
		if [ -n "${KMB_BENCH_NOTE:-}" ]; then echo "note: $KMB_BENCH_NOTE"; fi
	} >"$out/$name.meta.tmp"
}

gotest() { # group, go test arguments (with a -count of their own, COUNT's is not added)
	local group="$1"; shift
	local args=(go test "$@" -run '^$' -benchmem)
	[[ " $* " == *" -count "* ]] || args+=(-count "$count")
	rm -f "$out/$group.txt" "$out/$group.meta"
	echo "== $group: $(quote "${args[@]}")" >&2
	meta "$group" "${args[@]}"
	"${args[@]}" >"$out/$group.txt.tmp"
	mv "$out/$group.txt.tmp" "$out/$group.txt"
	mv "$out/$group.meta.tmp" "$out/$group.meta"
	$benchstat "$out/$group.txt"
}

kmbd_built=""
build_kmbd() {
	if [ -z "$kmbd_built" ]; then
		echo "== building $out/kmbd" >&2
		go build -o "$out/kmbd" ./cmd/kmbd
		kmbd_built=1
	fi
}

# kmbd_bench runs the kmbd built above; the last line of its output (the
# --json object) becomes <name>.json. A run that fails leaves <name>.out
# for inspection and no <name>.json.
kmbd_bench() { # name, kmbd bench arguments (with --json)
	local name="$1"; shift
	build_kmbd
	rm -f "$out/$name.json" "$out/$name.meta"
	echo "== $name: $(quote kmbd bench "$@")" >&2
	meta "$name" kmbd bench "$@"
	local rc=0
	"$out/kmbd" bench "$@" >"$out/$name.out" || rc=$?
	sed '$d' "$out/$name.out" >&2 # the summary; the last line is the JSON
	if [ "$rc" -ne 0 ]; then
		echo "$name: kmbd bench exited $rc; output in $out/$name.out" >&2
		rm -f "$out/$name.meta.tmp"
		return "$rc"
	fi
	tail -n 1 "$out/$name.out" >"$out/$name.json"
	mv "$out/$name.meta.tmp" "$out/$name.meta"
}

# spans_vs runs the span benchmarks of two trees in one sitting, one run of
# each in turn, so that both meet the same machine: spans-vs-base.txt (the
# commit KMB_SPANS_BASE) and spans-vs-head.txt (this tree).
spans_vs() {
	local bench='BenchmarkSpan/(off|sampled-out)$'
	local abs src which
	abs="$(cd "$out" && pwd)"
	rm -f "$out"/spans-vs-base.* "$out"/spans-vs-head.*
	src="$(mktemp -d)"
	git archive "$spans_base" | tar -x -C "$src"
	(cd "$src" && go test -c -o "$abs/spans-base.test" ./telemetry/spans)
	rm -rf "$src"
	go test -c -o "$abs/spans-head.test" ./telemetry/spans
	for which in base head; do
		meta "spans-vs-$which" env KMB_SPANS_BASE="$spans_base" COUNT="$spans_count" scripts/bench.sh spans-vs
		if [ "$which" = base ]; then sed -i "s/^commit: .*/commit: $spans_base/" "$out/spans-vs-$which.meta.tmp"; fi
	done
	echo "== spans-vs: $spans_base against the tree, $spans_count runs each of go test -bench '$bench', interleaved" >&2
	for _ in $(seq "$spans_count"); do
		for which in base head; do
			"$abs/spans-$which.test" -test.run '^$' -test.bench "$bench" -test.benchmem -test.count 1 >>"$out/spans-vs-$which.txt.tmp"
		done
	done
	for which in base head; do
		mv "$out/spans-vs-$which.txt.tmp" "$out/spans-vs-$which.txt"
		mv "$out/spans-vs-$which.meta.tmp" "$out/spans-vs-$which.meta"
	done
	rm -f "$abs/spans-base.test" "$abs/spans-head.test"
	$benchstat "$out/spans-vs-base.txt" "$out/spans-vs-head.txt"
}

# writepath_vs builds kmbd at KMB_WRITEPATH_BASE and runs a --compare series
# of the tree's write path (off) against that build's (baseline).
writepath_vs() {
	local src abs
	abs="$(cd "$out" && pwd)"
	src="$(mktemp -d)"
	git archive "$writepath_base" | tar -x -C "$src"
	(cd "$src" && go build -o "$abs/kmbd-writepath-base" ./cmd/kmbd)
	rm -rf "$src"
	kmbd_bench writepath-vs --nodes 3 --clients 64 --batch 100 --compare off --baseline "$out/kmbd-writepath-base" \
		--rounds "$rounds" --duration "$duration" --json
	sed -i "s/^commit: \(.*\)$/commit: \1 against $writepath_base/" "$out/writepath-vs.meta"
	rm -f "$out/kmbd-writepath-base"
}

# The code that instruments: the OpenTelemetry SDK and exporters, the
# telemetry packages (metric recording and publishing, /metrics, logging,
# the span queue), slog, the API's and the node's span sites.
telemetry_focus='go\.opentelemetry\.io|github\.com/kmb-db/kmb/telemetry|github\.com/prometheus|log/slog|store/api\.\(\*API\)\.(traced|startSpan)|store/node\.\(\*Node\)\.(startPrepare|commitSpan|stampMessages|endStepSpans|traceEvent)|store/node\.endPrepare'

# profile_share writes <name>-share.json: the share of the CPU profile
# <name>.cpu whose samples have instrumenting code on their stack.
profile_share() { # name
	local name="$1" line
	meta "$name-share" go tool pprof -top -focus="$telemetry_focus" "$out/kmbd" "$out/$name.cpu"
	line="$(go tool pprof -top -focus="$telemetry_focus" "$out/kmbd" "$out/$name.cpu" 2>/dev/null | grep '^Showing nodes accounting for')"
	# Showing nodes accounting for 0.19s, 1.62% of 11.73s total
	echo "$line" | sed -E 's/^Showing nodes accounting for ([0-9.]+m?s), ([0-9.]+)% of ([0-9.]+m?s) total$/{"share_pct":\2,"focus":"\1","total":"\3"}/' >"$out/$name-share.json.tmp"
	if ! grep -q '^{"share_pct"' "$out/$name-share.json.tmp"; then
		echo "profile: cannot read pprof's summary line: $line" >&2
		rm -f "$out/$name-share.json.tmp" "$out/$name-share.meta.tmp"
		return 1
	fi
	mv "$out/$name-share.json.tmp" "$out/$name-share.json"
	mv "$out/$name-share.meta.tmp" "$out/$name-share.meta"
	echo "$name: $line" >&2
}

report() {
	echo "== report: $doc from $out" >&2
	go run ./internal/benchreport -in "$out" -template scripts/benchmarks.md.tmpl -out "$doc"
}

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(primitives metric logging spans spans-vs render log wire append cluster tracing backup audit restart retention client kmbd writepath-vs compare compare-shm compare-rate profile report)
for g in "${groups[@]}"; do
	case "$g" in
	primitives) gotest primitives ./telemetry/metric/bench -bench . -cpu 1,2 ;;
	metric) gotest metric ./telemetry/metric -bench 'LoopCounterPublish|LoopHistogramPublish|CappedLoopCounterVecTick|Gather10kTenants|Floor' -cpu 1,2 ;;
	logging) gotest logging ./telemetry/logging -bench . ;;
	spans) gotest spans ./telemetry/spans -bench . -count "$spans_count" ;;
	spans-vs) spans_vs ;;
	render) gotest render ./telemetry -bench MetricsRender ;;
	log) gotest log ./store/log -bench . ;;
	wire) gotest wire ./store/wire ./store/transport -bench . ;;
	append) gotest append ./store/node -bench 'BenchmarkAppend$' -benchtime 3s ;;
	cluster) gotest cluster ./store/node -bench 'BenchmarkClusterAppend$' -benchtime 3s ;;
	tracing) gotest tracing ./store/node -bench 'BenchmarkAppendTracing$' -benchtime 3s ;;
	backup) gotest backup ./store/backup -bench 'AppendSegment|Restore' ;;
	audit) gotest audit ./store/audit -bench . ;;
	restart) gotest restart ./store/node ./store/projection ./store/backup -bench 'BenchmarkRestart$|BenchmarkSnapshotPause|BenchmarkTieredRead' ;;
	retention) gotest retention ./store/node -bench 'BenchmarkRetentionDiskUse$' -benchtime 1x ;;
	client) gotest client ./client -bench . ;;
	writepath-vs) writepath_vs ;;
	kmbd)
		for nodes in 1 3; do
			kmbd_bench "kmbd-nodes$nodes" --nodes "$nodes" --clients 64 --batch 100 --duration "$duration" --json
		done
		;;
	compare)
		build_kmbd
		help="$("$out/kmbd" bench -h 2>&1 || true)"
		if [[ $help != *-compare* ]]; then
			echo "compare: this kmbd bench has no --compare" >&2
			exit 1
		fi
		kmbd_bench compare-backup --nodes 3 --compare off,backup --rounds "$rounds" --duration "$duration" --json
		# Telemetry's cost in CPU per entry, each run ending after a fixed
		# number of entries; ack measures the load generator alone.
		kmbd_bench compare-telemetry --nodes 3 --compare off,metrics,full,ack --rounds "$rounds" --entries "$entries" --json
		;;
	compare-shm)
		# The telemetry series with the data on tmpfs: without the disk's
		# fsync variance the nodes are CPU-bound, which is where an
		# instrumentation cost would show.
		kmbd_bench compare-telemetry-shm --nodes 3 --compare off,metrics,full,ack --rounds "$rounds" --entries "$entries" --dir /dev/shm --json
		;;
	compare-rate)
		# The telemetry series at a fixed offered load: every variant does
		# the same work per second, whatever its own capacity, so CPU per
		# entry does not move with how many requests share an fsync.
		kmbd_bench compare-telemetry-rate --nodes 3 --compare off,metrics,full,ack --rounds "$rounds" --entries "$entries" --rate "$rate" --json
		;;
	profile)
		# Where the CPU of each telemetry mode goes, from a CPU profile of a
		# run on tmpfs (three times the entries of a series' run, for more
		# samples): the share of samples in instrumenting code.
		for mode in off metrics full; do
			kmbd_bench "profile-$mode" --nodes 3 --telemetry "$mode" --entries "$((entries * 3))" --dir /dev/shm --cpuprofile "$out/profile-$mode.cpu" --json
			profile_share "profile-$mode"
		done
		;;
	report) report ;;
	*) echo "unknown group $g" >&2; exit 2 ;;
	esac
done
