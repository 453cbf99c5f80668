package vsr

import (
	"errors"
	"fmt"
	"slices"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// Repairing corrupt ops (Durable.Faulty) follows "Protocol-Aware Recovery
// for Consensus-Based Storage" (Alagappan et al., FAST 2018): a replica
// whose log holds ops it cannot read must not act as if its log were
// shorter, since it may have acknowledged them and a quorum may count on
// them. So it keeps its log's length and, until the faulty ops are
// repaired:
//
//   - its verified prefix, and so its commit number, its acknowledgements
//     and what it applies, stop before the first faulty op;
//   - it does not send do_view_change (it does not vote), and it does not
//     lead: a primary with faulty ops starts a view change instead;
//   - it fetches the run of faulty ops from the primary like any catch-up
//     (get_ops), checks each op's chain hash, and once it holds copies of
//     the whole run checks them against the chain hash of its own intact
//     op after the run. A match means the copies are exactly the ops it
//     held: they go to the driver (Ready.Repair) to be written back in
//     place.
//
// A mismatch means this replica's ops there were never in the current
// view's log: they differ from the primary's, so they were not committed
// (committed ops are in every later view's log, and the chain hash of an
// op covers all before it). They are replaced like any uncommitted suffix,
// except that the replica first makes durable a promise (HardState.Promised)
// that it may have acknowledged up to its old op number, and does not vote
// until it holds the current view's log that far again. A crash between
// cutting and refetching then cannot make it vote with a log shorter than
// what it acknowledged.

// setFaulty takes the faulty runs found on disk at start.
func (r *Replica) setFaulty(runs []Run) error {
	prev := uint64(0)
	for _, run := range runs {
		if run.First == 0 || run.First > run.Last || run.First <= prev || run.Last >= r.op {
			return fmt.Errorf("vsr: faulty runs %v: want sorted, disjoint runs within the log before its last op %d", runs, r.op)
		}
		prev = run.Last
		r.addFaulty(run)
	}
	r.verified = r.capVerified(r.verified)
	r.commit = min(r.commit, r.verified)
	return nil
}

// addFaulty adds a run, merging it with runs it touches, so that every
// run is followed by an intact op (or the end of the log).
func (r *Replica) addFaulty(run Run) {
	r.faulty = append(r.faulty, run)
	slices.SortFunc(r.faulty, func(a, b Run) int { return int(a.First) - int(b.First) })
	merged := r.faulty[:1]
	for _, x := range r.faulty[1:] {
		last := &merged[len(merged)-1]
		if x.First <= last.Last+1 {
			last.Last = max(last.Last, x.Last)
			continue
		}
		merged = append(merged, x)
	}
	r.faulty = merged
	r.faultyTick = r.tick
}

// capVerified bounds a verified prefix by the first faulty op.
func (r *Replica) capVerified(n uint64) uint64 {
	if len(r.faulty) > 0 {
		return min(n, r.faulty[0].First-1)
	}
	return n
}

func (r *Replica) faultyOps() uint64 {
	var n uint64
	for _, run := range r.faulty {
		n += run.Last - run.First + 1
	}
	return n
}

// faultyRunAt returns the run holding op n.
func (r *Replica) faultyRunAt(n uint64) (Run, bool) {
	for _, run := range r.faulty {
		if run.First <= n && n <= run.Last {
			return run, true
		}
	}
	return Run{}, false
}

// dropFaultyAfter forgets faulty ops a truncation after n removed.
func (r *Replica) dropFaultyAfter(n uint64) {
	keep := r.faulty[:0]
	for _, run := range r.faulty {
		if run.First > n {
			continue
		}
		run.Last = min(run.Last, n)
		keep = append(keep, run)
	}
	r.faulty = keep
	if len(r.candidates) > 0 && r.candidates[0].Op > n {
		r.candidates, r.replacing = nil, false
	}
}

// FaultyRuns returns the runs of ops the replica holds as faulty.
func (r *Replica) FaultyRuns() []Run { return slices.Clone(r.faulty) }

// canVote reports whether the replica may take part in a view change with
// its log: it can read all of it, and holds all it may have acknowledged.
func (r *Replica) canVote() bool { return len(r.faulty) == 0 && r.promised == 0 }

// canLead reports whether the replica may lead a view.
func (r *Replica) canLead() bool { return r.canVote() }

// MarkCorrupt tells the replica that op n of its log, which it had
// persisted, cannot be read: the driver found its record corrupt. The
// replica holds it as faulty and repairs it from the primary; a primary
// gives up its view. It reports false when n is not a persisted op.
func (r *Replica) MarkCorrupt(n uint64) bool {
	if n == 0 || n > r.durable || n > r.op {
		return false
	}
	if _, ok := r.faultyRunAt(n); ok {
		return true
	}
	r.markFaulty(n)
	return true
}

func (r *Replica) markFaulty(n uint64) {
	r.addFaulty(Run{First: n, Last: n})
	r.verified = r.capVerified(r.verified)
	r.commit = min(r.commit, r.verified)
	r.event(Event{Kind: EventCorruptOp, View: r.view, Op: n})
	if r.status == StatusNormal && r.isPrimary() {
		r.beginViewChange(r.view + 1)
	}
}

// errCorruptRead is how a failed read of an op this replica persisted is
// told apart from an op it simply does not hold.
var errCorruptRead = errors.New("vsr: persisted op unreadable")

// readPersisted reads op n of the log; when the op is durable and still
// its storage cannot read it, the op is corrupt on disk and is marked
// faulty.
func (r *Replica) readPersisted(n uint64) (*kmblog.Op, error) {
	if n < r.logStart {
		return nil, fmt.Errorf("vsr: op %d is before the log's start (%d)", n, r.logStart)
	}
	if _, bad := r.faultyRunAt(n); bad {
		return nil, fmt.Errorf("%w: op %d awaits repair", errCorruptRead, n)
	}
	op, err := r.readOp(n)
	if err != nil && n >= 1 && n <= min(r.durable, r.memBase) {
		r.markFaulty(n)
		return nil, fmt.Errorf("%w: op %d: %v", errCorruptRead, n, err)
	}
	return op, err
}

// installCandidate takes op, the primary's copy of the next op of the
// faulty run that starts right after the verified prefix, whose chain
// hash the caller has checked. Once the whole run is there, it decides:
// repair in place, or replace (see the comment at the top of this file).
// It reports false when op is not the next candidate.
func (r *Replica) installCandidate(run Run, op *kmblog.Op) bool {
	want := run.First + uint64(len(r.candidates))
	switch {
	case op.Op < want:
		return true // a copy already held
	case op.Op > want:
		return false
	}
	r.candidates = append(r.candidates, op)
	r.faultyTick = r.tick
	if op.Op < run.Last {
		return true
	}

	// The whole run: do the copies continue into this replica's own op
	// after it?
	anchor := run.Last + 1
	same := false
	if anchor <= r.op {
		local, err := r.readPersisted(anchor)
		if err != nil {
			// Unreadable too: the run now reaches it, and the copies so
			// far still count.
			return false
		}
		same = r.chainer.Op(op.Chain, local) == local.Chain
	}
	if same {
		r.repairs = append(r.repairs, r.candidates...)
		r.faulty = slices.DeleteFunc(r.faulty, func(x Run) bool { return x == run })
		r.verified = r.capVerified(run.Last)
		r.prevOp, r.prev = run.Last, op.Chain
		r.event(Event{Kind: EventRepaired, View: r.view, Op: run.First, Commit: run.Last})
		r.candidates = nil
		return true
	}

	// Different ops: never committed. Cut before them once the promise
	// to hold this log's length again is durable (Advance sees it).
	r.promised = max(r.promised, r.op)
	r.replacing = true
	if r.promisedDurable < r.promised {
		r.persistHardState()
		return true
	}
	r.replaceWithCandidates()
	return true
}

// replaceWithCandidates cuts the log before the first faulty run and
// takes the primary's copies of it instead; the promise is durable.
func (r *Replica) replaceWithCandidates() {
	cands := r.candidates
	r.candidates, r.replacing = nil, false
	if len(cands) == 0 {
		return
	}
	r.event(Event{Kind: EventRepairReplaced, View: r.view, Op: cands[0].Op})
	r.truncateLog(cands[0].Op - 1)
	for _, c := range cands {
		r.appendOp(c)
	}
}

// keptPromise clears the promise once the replica holds the current view's
// log up to it again, or up to the primary's op number if that is below
// it: every committed op is in the primary's log, so acknowledged ops past
// its end were never committed.
func (r *Replica) keptPromise() {
	if r.promised == 0 || r.catchingUp || r.status != StatusNormal || r.replacing || len(r.faulty) > 0 {
		return
	}
	if r.verified >= min(r.promised, r.primaryOp) {
		r.promised = 0
		r.persistHardState()
	}
}

// repairStallTicks is how long faulty ops may wait for a matching copy
// before the replica says so (and again every as long).
const repairStallTicks = 100

func (r *Replica) checkRepairStall() {
	if len(r.faulty) == 0 || r.tick-r.faultyTick < repairStallTicks {
		return
	}
	r.faultyTick = r.tick
	r.event(Event{Kind: EventRepairStalled, View: r.view, Op: r.faulty[0].First, Commit: r.faulty[0].Last})
}

// AppendFailed tells the replica that the driver could not make rd's
// appends durable for want of space, and did nothing of rd after them:
// rd's repairs and truncation are durable, none of its appends are, its
// hard state was not persisted and its messages were not sent. The
// replica forgets every op it does not hold durably (they were sent
// nowhere, so a primary may number new ops the same), neither
// acknowledges nor commits them, and asks again for its hard state to be
// persisted. A backup gets the ops again from the primary once there is
// space.
func (r *Replica) AppendFailed(rd Ready) {
	if rd.Truncate {
		r.durable = min(r.durable, rd.TruncateAfter)
	}
	if rd.MustPersist {
		r.hsDirty = true // r.hs is the newest hard state
	}
	if r.op <= r.durable {
		return
	}
	n := r.durable
	r.mem = r.mem[:n-r.memBase]
	r.op = n
	if r.prevOp > n {
		r.prevOp = 0
	}
	r.commit = min(r.commit, n)
	r.verified = min(r.verified, n)
	r.dropFaultyAfter(n)
	r.reloadLast()
}
