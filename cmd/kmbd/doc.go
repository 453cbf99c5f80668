// Command kmbd runs one node of kmb, the replicated, append-only,
// multi-tenant log store, with its observability endpoints.
//
//	kmbd [flags]
//
// With no arguments it runs a single-node store on built-in defaults: the
// client API on 127.0.0.1:7000, metrics, health, status and pprof on :9090,
// data in ./kmb-data. Configuration comes from built-in defaults, a TOML
// file (--config), environment variables (KMB_LOG, KMB_LOG_FORMAT, OTEL_*)
// and flags, each overriding the one before. Run `kmbd -h` for the flags.
//
// SIGINT or SIGTERM shut the node down gracefully: probes turn 503, the API
// stops accepting, in-flight writes commit, the log is synced and closed,
// spans are flushed, and the process exits 0.
package main
