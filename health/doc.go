// Package health serves kmbd's liveness and readiness probes.
//
// Liveness answers "is this process wedged?": it fails only while the
// process is shutting down or when a registered liveness check (such as the
// node's event-loop watchdog) reports that work has stopped moving. A failing
// liveness probe tells an orchestrator to restart the process, so it must
// never fail for reasons a restart would not fix, such as a lost quorum.
//
// Readiness answers "can this replica serve traffic now?": it fails while the
// store is recovering, during a view change, while catching up, and while
// shutting down. Load balancers use it to pick targets.
//
// Both endpoints answer 200 with {"status":"ok"} or 503 with
// {"status":"unavailable","reason":"..."}; the reason names the first failing
// check so an operator can act on it.
package health
