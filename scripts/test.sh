#!/usr/bin/env bash
# Runs kmb's whole test suite. It installs what the tests need and cannot
# build themselves: promtool and the Prometheus server (Debian package
# "prometheus") for the exposition, rules and scraping tests, Chromium and
# tmux for the simulator's dashboard and terminal view, Jaeger v2
# (built from its Go module, cached) for the tracing test, and MinIO (the
# same way) for the backup package's S3 tests. Tests that need
# such a tool fail, rather than skip, when KMB_REQUIRE_TOOLS=1, which this
# script sets.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v promtool >/dev/null 2>&1; then
	echo "test.sh: installing promtool (Debian package prometheus)" >&2
	need_root apt-get update -qq
	DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
export KMB_PROMTOOL="$(command -v promtool)"
export KMB_PROMETHEUS="$(command -v prometheus)"
# Headless Chromium and tmux (Debian packages) for the end-to-end tests of
# kmbd vopr dashboard and kmbd vopr tui.
for tool in chromium tmux; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "test.sh: installing $tool (Debian package $tool)" >&2
		need_root apt-get update -qq
		DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq --no-install-recommends "$tool" >/dev/null
	fi
done
export KMB_CHROMIUM="$(command -v chromium)"
export KMB_TMUX="$(command -v tmux)"
# Jaeger v2, built from its Go module and cached, for the tracing end-to-end test.
export KMB_JAEGER="$(./scripts/jaeger.sh)"
# MinIO, built from its Go module and cached, for the backup package's S3 tests.
export KMB_MINIO="$(./scripts/minio.sh)"
export KMB_REQUIRE_TOOLS=1

go vet ./...
go test -race -count=1 ./... "$@"
# The simulator's checkers must catch a planted bug (see store/vsr/canary_on.go).
go test -count=1 -tags kmb_canary -run "TestCanaryCaught|TestCanaryObservedFailingStart" ./store/sim
# And a new epoch that starts before its config op commits (store/vsr/canary_epoch_on.go).
go test -count=1 -tags kmb_canary_epoch -run TestEpochCanaryCaught ./store/sim
