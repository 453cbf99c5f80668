// Package store is kmbd's storage engine: the replicated, append-only,
// multi-tenant log and everything that serves it. Its subpackages are:
//
//   - log: the segmented, checksummed on-disk log and its recovery;
//   - projection: the per-tenant key/value view applied from committed ops;
//   - node: the driver that runs the write path and owns the event loop;
//   - api: the client HTTP/JSON API.
//
// Nothing under store imports the Prometheus client, the OpenTelemetry SDK or
// an exporter: it records into telemetry/metric's stdlib-only primitives and
// logs through *slog.Logger, and the telemetry package exports both.
package store
