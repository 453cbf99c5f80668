// Package vopr runs the cluster simulator (store/sim) over a range of seeds
// and keeps the live state of the whole campaign, for the interfaces that
// show it: seeds done and failed, rates, faults injected by kind, the
// current run's replicas, client operations completed and checked for
// linearizability, and each failing seed with the command that replays it.
//
// A Runner runs the seeds on one goroutine; Snapshot copies its State at
// any time from any goroutine, and Updates wakes whoever shows it.
// internal/vopr/dashboard serves the State as a web page, and
// internal/vopr/tui draws it in a terminal.
package vopr
