#!/usr/bin/env bash
# Runs every benchmark behind BENCHMARKS.md and prints benchstat summaries.
# Raw results go to ${KMB_BENCH_OUT:-./bench-results} (one file per group), so
# two runs can be compared with: benchstat old/primitives.txt new/primitives.txt
#
#   scripts/bench.sh            # all groups, 5 counts each
#   COUNT=10 scripts/bench.sh primitives spans
set -euo pipefail
cd "$(dirname "$0")/.."
out="${KMB_BENCH_OUT:-./bench-results}"
count="${COUNT:-5}"
mkdir -p "$out"
benchstat="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

run() { # group, then go test arguments
	local group="$1"; shift
	echo "== $group: go test $* -count $count" >&2
	go test "$@" -run '^$' -benchmem -count "$count" | tee "$out/$group.txt" >/dev/null
	$benchstat "$out/$group.txt"
}

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(primitives logging spans render log wire append cluster tracing)
for g in "${groups[@]}"; do
	case "$g" in
	primitives) run primitives ./telemetry/metric/bench -bench . -cpu 1,2 ;;
	logging) run logging ./telemetry/logging -bench . ;;
	spans) run spans ./telemetry/spans -bench . ;;
	render) run render ./telemetry -bench MetricsRender ;;
	log) run log ./store/log -bench . ;;
	wire) run wire ./store/wire ./store/transport -bench . ;;
	append) run append ./store/node -bench 'BenchmarkAppend$' -benchtime 3s ;;
	cluster) run cluster ./store/node -bench 'BenchmarkClusterAppend$' -benchtime 3s ;;
	tracing) run tracing ./store/node -bench 'BenchmarkAppendTracing$' -benchtime 3s ;;
	*) echo "unknown group $g" >&2; exit 2 ;;
	esac
done
