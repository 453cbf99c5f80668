// Package bench holds comparative benchmarks, and nothing else: recording
// into telemetry/metric next to prometheus/client_golang,
// VictoriaMetrics/metrics and the OpenTelemetry metric SDK, with
// sub-benchmarks named so that benchstat lines them up:
//
//	go test ./telemetry/metric/bench -run '^$' -bench . -benchmem -cpu 1,2 -count 5
//
// Every contender records into a series handle resolved before the timer
// starts (a cached vec child, a precomputed attribute set), which is how
// kmbd's hot paths use them. Histograms all see the same stream of
// latencies spread from 10µs to 20s over DurationBuckets; kmb records
// integer nanoseconds, the others float64 seconds converted beforehand.
// VictoriaMetrics histograms use their own fixed log-scale buckets.
//
// The benchmarks live in a separate package so that telemetry/metric itself
// stays free of these dependencies.
package bench
