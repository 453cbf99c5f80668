#!/usr/bin/env bash
# Builds the MinIO server (an S3-compatible object store) from its Go module
# once and prints its path. The backup package's S3 tests start it on
# loopback. The binary is cached under ${KMB_TOOLS_DIR:-$HOME/.cache/kmb-tools}.
set -euo pipefail
version="${KMB_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
dir="${KMB_TOOLS_DIR:-$HOME/.cache/kmb-tools}"
bin="$dir/minio-$version"
if [ ! -x "$bin" ]; then
	mkdir -p "$dir"
	echo "minio.sh: building MinIO $version (once; several minutes)" >&2
	gobin=$(mktemp -d)
	GOBIN="$gobin" GOFLAGS=-mod=mod go install "github.com/minio/minio@$version"
	mv "$gobin/minio" "$bin"
	rm -rf "$gobin"
fi
echo "$bin"
