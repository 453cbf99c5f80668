// Package status defines the replica status snapshot and serves it as JSON on
// /status.
//
// The snapshot is the single source of the node's state numbers: the /status
// handler renders it, and the state gauges on /metrics (view, leader, op and
// commit numbers, projection lag, ...) read it at scrape time instead of being
// written on the hot path. Producing a snapshot must therefore be cheap and
// lock-light; the node builds it from atomics.
package status
