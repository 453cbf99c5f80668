// Package vsr is the Viewstamped Replication replica (Liskov and Cowling,
// "Viewstamped Replication Revisited", 2012) as a deterministic state
// machine.
//
// A Replica owns no goroutine, clock, randomness or I/O. Messages go in
// through Step, time through Tick (a logical tick), client writes through
// Propose; everything the replica wants done comes out of Ready: hard state
// to persist, log truncations and appends to make durable, messages to send,
// a new commit number to apply up to, and events for logs and metrics. The
// driver (store/node in production, store/sim in tests) must, for each
// Ready, in this order: persist the hard state and the log changes durably,
// send the messages, apply committed ops, then call Advance; a normal
// primary's Ready marked SyncLater may be finished later, after further
// Steps and Readys, as long as the Readys finish in the order they were
// taken (Ready.SyncLater has the rules). Randomness (the
// view-change timeout jitter) is an injected function. This is what lets the
// simulator run whole clusters deterministically from a seed.
//
// # Deviations from the paper, and why
//
// Durable state instead of the recovery protocol for restarts. A replica
// persists its log (fsynced before it acknowledges) and a small hard state
// (view, last normal view, a commit lower bound) before it sends any message
// that depends on them. A restarted replica therefore never votes or
// acknowledges against what it promised before the crash, and it rejoins
// directly in its persisted view. The paper's recovery protocol (Recovery /
// RecoveryResponse with a nonce) is kept for a replica that lost its state
// (a wiped disk): it must not take part in view changes or acknowledge
// prepares until it has fetched the log up to the commit number of the
// current primary, or it could help elect a log that misses committed ops.
// See below for how a brand-new cluster is recognised.
//
// Log suffixes instead of whole logs. DoViewChange carries only the ops
// after the new primary's commit number, which the new primary announces in
// its StartViewChange (a replica waits for that announcement before sending
// its DoViewChange); the ops at or below it are committed, so the new
// primary already holds them. StartView carries the ops after the
// primary's view-change base; a backup whose log cannot be verified up to
// the primary's op number from that message catches up: it keeps its log,
// verifies or replaces it op by op against the primary's (GetOps), and
// neither acknowledges nor claims the new view's log until it holds it.
//
// Repair and state transfer are one mechanism. A backup that sees a gap (a
// Prepare beyond its next op, a Commit or StartView beyond its log) asks the
// primary for the missing ops with GetOps. A backup that learns of a newer
// view from its primary's normal traffic catches up the same way. A log is
// never shortened below what its replica vouched for, except where the
// primary's log holds a different op: such ops were never committed.
//
// A new cluster forms when every replica answers the recovery handshake and
// none holds an op; the primary of view 0 additionally needs every answer
// to be "fresh" (never held state), so that a primary of view 0 that lost its
// disk cannot lead view 0 a second time.
package vsr
