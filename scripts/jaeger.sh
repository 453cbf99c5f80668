#!/usr/bin/env bash
# Builds the Jaeger v2 all-in-one binary from its Go module once and prints
# its path. `go install` refuses the module (it has replace directives), so
# it is built inside the downloaded module. The binary is cached under
# ${KMB_TOOLS_DIR:-$HOME/.cache/kmb-tools}.
set -euo pipefail
version="${KMB_JAEGER_VERSION:-v1.76.0}" # Jaeger v2 releases carry v1.x module tags too
dir="${KMB_TOOLS_DIR:-$HOME/.cache/kmb-tools}"
bin="$dir/jaeger-$version"
if [ ! -x "$bin" ]; then
	mkdir -p "$dir"
	echo "jaeger.sh: building Jaeger $version (once; several minutes)" >&2
	src=$(GOFLAGS=-mod=mod go mod download -json "github.com/jaegertracing/jaeger@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	(cd "$src" && go build -o "$bin.tmp" ./cmd/jaeger)
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
