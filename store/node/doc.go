// Package node runs one kmbd replica: it recovers the log, rebuilds the
// projection, and drives the write path from a single event-loop goroutine.
//
// A write flows Prepare → Commit → Apply. The loop takes every request
// waiting in its queue, prepares one op per request (assigning op numbers,
// positions and the commit timestamp), appends them all to the log and
// fsyncs once — group commit: concurrent writers share one fsync — then
// advances the commit number, applies the ops to the projection in order and
// answers each writer. This node is a cluster of one; replication slots in
// between Prepare and Commit.
//
// The loop is the only writer of the log, the projection and the loop-owned
// metrics; it publishes those metrics once per iteration. Readers (HTTP
// handlers, scrapes, /status) only read atomics and the projection's
// read-locked maps.
package node
