// Package sim is kmb's deterministic cluster simulator (a VOPR, after
// TigerBeetle's Viewstamped Operation Replicator).
//
// It runs whole clusters of vsr.Replica state machines in one goroutine,
// driven by a seeded PRNG: a simulated network that delays, drops,
// duplicates and reorders messages and partitions the cluster; replicas
// that crash at any point of handling a Ready (before persisting, with a
// torn append, or after persisting but before sending), restart from what
// they persisted, or lose their disk and rejoin through the recovery
// protocol; and clients that write and read keys through the log, retrying
// with the same request id after a timeout.
//
// Invariant checkers run throughout: committed ops agree across replicas
// and never change (agreement and prefix consistency), commit <= op, views
// never go backwards, at most one replica acts as primary per view; at the
// end every committed op is on every replica, and the client history is
// linearizable (checked with porcupine). A liveness phase then heals every
// fault; the cluster must converge and finish every request within a
// bound. The same seed replays the same run exactly.
package sim
