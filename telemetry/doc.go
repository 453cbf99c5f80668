// Package telemetry is kmbd's embedded observability SDK: one Config and one
// New that build the metric registry, the structured logger and the tracer
// provider, and one Shutdown that flushes them.
//
// The storage engine never imports this package. It records into the
// stdlib-only primitives of telemetry/metric and logs through *slog.Logger;
// this package is the boundary where those are exported: /metrics writes the
// metric registry's families itself, next to the Go runtime and process
// collectors of a Prometheus registry the node owns (never the global one),
// with the output client_golang would give through the bridge collector that
// Push and the protobuf formats still use; the logging handler writes kmbd's
// JSON log shape, and the OpenTelemetry SDK exports spans over OTLP.
//
// Configuration precedence, lowest to highest: built-in defaults, the TOML
// file, environment variables (KMB_LOG, KMB_LOG_FORMAT and the standard
// OTEL_* variables), command-line flags.
package telemetry
