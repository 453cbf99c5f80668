#!/usr/bin/env bash
# Starts a local 3-node kmbd cluster on 127.0.0.1 and stops it on Ctrl-C.
#
#   node  client API        telemetry        replication      data
#   1     127.0.0.1:7001    127.0.0.1:9091   127.0.0.1:7101   ./kmb-cluster/1
#   2     127.0.0.1:7002    127.0.0.1:9092   127.0.0.1:7102   ./kmb-cluster/2
#   3     127.0.0.1:7003    127.0.0.1:9093   127.0.0.1:7103   ./kmb-cluster/3
#
# Logs go to ./kmb-cluster/N.log. KMB_CLUSTER_DIR moves the data; extra
# arguments are passed to every node.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${KMB_CLUSTER_DIR:-./kmb-cluster}"
mkdir -p "$dir"
go build -o "$dir/kmbd" ./cmd/kmbd

replicas="1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103"
pids=()
stop() {
	echo "stopping the cluster" >&2
	kill -TERM "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

for i in 1 2 3; do
	"$dir/kmbd" --node-id "$i" --replicas "$replicas" --data-dir "$dir/$i" \
		--api-listen "127.0.0.1:700$i" --telemetry-listen "127.0.0.1:909$i" "$@" \
		2>"$dir/$i.log" &
	pids+=($!)
done

for i in 1 2 3; do
	for _ in $(seq 1 100); do
		if curl -fs "http://127.0.0.1:909$i/health/ready" >/dev/null 2>&1; then break; fi
		sleep 0.1
	done
done
for i in 1 2 3; do
	printf 'node %s: ' "$i"
	curl -s "http://127.0.0.1:909$i/status" | tr -d ' \n' | head -c 160
	echo
done
cat >&2 <<EOT
cluster up. Try:
  curl -s -L -X POST 127.0.0.1:7001/v1/tenants/acme/entries -d '{"entries":[{"key":"k","value":1}]}'
  curl -s 127.0.0.1:9091/metrics | grep kmb_consensus
Ctrl-C stops it; logs in $dir/N.log
EOT
wait
