package log

import (
	"fmt"
)

// TruncateAfter drops every op after op number op, durable or not, and
// leaves the log durable: when it returns, the truncation survives a crash
// and DurableOp() == LastOp() == op. A view change uses it to discard an
// uncommitted suffix. With op >= LastOp() it only syncs.
//
// Whole segments after op are deleted, newest first, and only once that is
// durable is the segment holding op cut, so that a crash part way leaves a
// log that is still contiguous. Readers of the dropped ops get ErrNotFound.
func (l *Log) TruncateAfter(op uint64) error {
	if err := l.usable(); err != nil {
		return err
	}
	if op >= l.nextOp-1 {
		return l.Sync()
	}

	// The new last position comes from op's record itself. Reading it
	// first means a damaged record fails the call before anything changes.
	first := l.segs[0]
	if op+1 < first.firstOp {
		return fmt.Errorf("log: truncate after op %d: the log starts at op %d", op, first.firstOp)
	}
	lastPos, prev, lastTS := first.firstPos-1, first.prevChain, int64(0)
	if op >= l.firstOpWhenEmpty() {
		o, err := l.readUnpublished(op)
		if err != nil {
			return err
		}
		lastPos, prev, lastTS = o.LastPosition(), o.Chain, o.Timestamp
	}

	// Hide the dropped ops from readers and wait for reads in flight to
	// finish, so that nobody reads bytes that are about to go.
	keep := l.segmentOf(op + 1)
	s := l.segs[keep]
	i := int(op + 1 - s.firstOp)
	cut := s.offsetOf(i)
	l.barrier.Lock()
	l.mu.Lock()
	removed := append([]*segment(nil), l.segs[keep+1:]...)
	clear(l.segs[keep+1:])
	l.segs = l.segs[:keep+1]
	if i < len(s.offsets) {
		s.offsets = s.offsets[:i]
		s.end = cut
		s.staged = s.staged[:0]
	} else {
		s.staged = s.staged[:i-len(s.offsets)]
	}
	if l.durableOp.Load() > op {
		l.durableOp.Store(op)
	}
	l.mu.Unlock()
	l.barrier.Unlock()

	l.active = s
	l.nextOp, l.nextPos, l.prev, l.lastTS = op+1, lastPos+1, prev, lastTS
	l.lastOp.Store(op)
	l.lastPos.Store(lastPos)
	if op < l.firstOpWhenEmpty() {
		l.firstOp.Store(0)
	}

	for j := len(removed) - 1; j >= 0; j-- {
		r := removed[j]
		r.f.Close()
		if err := l.removeSegmentFiles(r); err != nil {
			return l.fail(fmt.Errorf("log: truncate: %w", err))
		}
		l.size.Add(-r.size)
		l.logger.Info("log segment removed by truncation", "segment", r.name, "first_op", r.firstOp)
	}
	// s is written to again: its index, if it was sealed, no longer
	// describes it, and must not survive a crash that the cut survives.
	if err := l.removeIndex(s); err != nil {
		return l.fail(err)
	}
	// The removals must be durable before the cut: if only the cut
	// survived a crash, the log would have a gap after it.
	if err := l.syncDir(); err != nil {
		return err
	}
	if cut < s.size {
		if err := s.f.Truncate(cut); err != nil {
			return l.fail(fmt.Errorf("log: truncate %s: %w", s.name, err))
		}
		l.size.Add(cut - s.size)
		s.size = cut
		s.dirty = true
	}
	// Sealed segments before s were synced when they were sealed, so
	// syncing s and the directory makes the whole remaining log durable.
	return l.Sync()
}

// segmentOf returns the index in l.segs of the segment that holds, or
// would hold, op. Writer only.
func (l *Log) segmentOf(op uint64) int {
	k := len(l.segs) - 1
	for k > 0 && l.segs[k].firstOp > op {
		k--
	}
	return k
}

// readUnpublished reads any op the writer has appended, synced or not.
// Writer only.
func (l *Log) readUnpublished(op uint64) (Op, error) {
	s := l.segs[l.segmentOf(op)]
	i := int(op - s.firstOp)
	start, end := s.offsetOf(i), s.size
	if i+1 < s.ops() {
		end = s.offsetOf(i + 1)
	}
	b := make([]byte, end-start)
	if _, err := s.f.ReadAt(b, start); err != nil {
		return Op{}, fmt.Errorf("log: read op %d from %s at offset %d: %w", op, s.name, start, err)
	}
	o, rerr := decodeFrame(b)
	if rerr == nil && o.Op != op {
		rerr = &recordError{Reason: reasonOpGap, Err: fmt.Errorf("record holds op %d", o.Op)}
	}
	if rerr != nil {
		return Op{}, fmt.Errorf("log: read op %d from %s at offset %d: %w", op, s.name, start, rerr)
	}
	return o, nil
}
