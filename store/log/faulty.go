package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// ErrFaulty is wrapped by the errors of reads of an op that recovery found
// corrupt and kept for repair (Config.TolerateCorruption). Such errors
// match ErrCorrupt too.
var ErrFaulty = errors.New("log: op is corrupt on disk and awaits repair")

// ErrRepairMismatch is returned by Repair for ops that are not the ones the
// damaged records held.
var ErrRepairMismatch = errors.New("log: repair ops do not match the log")

type faultyError struct {
	op uint64
	d  Damage
}

func (e *faultyError) Error() string {
	return fmt.Sprintf("log: op %d is corrupt on disk and awaits repair (%s)", e.op, e.d)
}

func (e *faultyError) Unwrap() []error { return []error{ErrFaulty, ErrCorrupt} }

// Faulty returns the damaged runs whose ops await repair, in log order.
func (l *Log) Faulty() []Damage {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return slices.Clone(l.damage)
}

// FaultyOps is the number of ops awaiting repair.
func (l *Log) FaultyOps() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n uint64
	for _, d := range l.damage {
		n += d.Ops()
	}
	return n
}

// faultyIn returns the damaged run holding an op in [from, to], if any.
// Called with mu held.
func (l *Log) faultyIn(from, to uint64) (Damage, bool) {
	for _, d := range l.damage {
		if d.FirstOp <= to && d.LastOp >= from {
			return d, true
		}
	}
	return Damage{}, false
}

// Repair rewrites the records of one damaged run with ops, which must be
// exactly the ops the run held: ops FirstOp..LastOp of one run Faulty
// reports, identical to what was written (a replica fetches them from its
// peers). Repair verifies that: the ops must continue the chain hash of
// the op before the run and be continued by the op after it, and encode
// to exactly the run's size. It writes them in place, syncs, and makes
// them readable. ErrRepairMismatch means the ops are not the ones the run
// held; nothing is written. Writer only.
func (l *Log) Repair(ops []*Op) error {
	if err := l.usable(); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	first, last := ops[0].Op, ops[len(ops)-1].Op
	l.mu.RLock()
	i := slices.IndexFunc(l.damage, func(d Damage) bool { return d.FirstOp == first })
	var d Damage
	if i >= 0 {
		d = l.damage[i]
	}
	l.mu.RUnlock()
	if i < 0 || d.LastOp != last || uint64(len(ops)) != d.Ops() {
		return fmt.Errorf("%w: ops %d..%d are not a damaged run", ErrRepairMismatch, first, last)
	}
	s := l.segs[l.segmentOf(first)]

	// The chain hash before the run: the op before it, or the header of
	// the segment it starts.
	prev := s.prevChain
	pos := s.firstPos
	if first > s.firstOp {
		o, err := l.readUnpublished(first - 1)
		if err != nil {
			return fmt.Errorf("log: repair: %w", err)
		}
		prev, pos = o.Chain, o.LastPosition()+1
	}
	var c Chainer
	buf := make([]byte, 0, d.End-d.Offset)
	for k, op := range ops {
		if op.Op != first+uint64(k) || op.FirstPosition != pos {
			return fmt.Errorf("%w: op %d does not continue the log", ErrRepairMismatch, op.Op)
		}
		if c.Op(prev, op) != op.Chain {
			return fmt.Errorf("%w: op %d does not continue the chain hash", ErrRepairMismatch, op.Op)
		}
		prev, pos = op.Chain, op.LastPosition()+1
		var err error
		if buf, err = appendFrame(buf, op); err != nil {
			return err
		}
	}
	// In place, the records must fill the damaged bytes exactly; only at
	// the end of a segment (a sealed segment cut short) may they differ.
	atEnd := d.End == s.size
	if int64(len(buf)) != d.End-d.Offset && !atEnd {
		return fmt.Errorf("%w: ops %d..%d encode to %d bytes, the damaged run is %d", ErrRepairMismatch, first, last, len(buf), d.End-d.Offset)
	}
	// The op after the run must chain from the repaired ones.
	if next, err := l.readUnpublished(last + 1); err == nil {
		if c.Op(prev, &next) != next.Chain || next.FirstPosition != pos {
			return fmt.Errorf("%w: op %d does not follow the repaired op %d", ErrRepairMismatch, last+1, last)
		}
	} else if last+1 < l.nextOp {
		return fmt.Errorf("log: repair: %w", err)
	}

	if _, err := s.f.WriteAt(buf, d.Offset); err != nil {
		return l.fail(fmt.Errorf("log: repair %s: %w", s.name, err))
	}
	end := d.Offset + int64(len(buf))
	if atEnd && end < s.size {
		if err := s.f.Truncate(end); err != nil {
			return l.fail(fmt.Errorf("log: repair %s: %w", s.name, err))
		}
	}
	if err := s.f.Datasync(); err != nil {
		return l.fail(fmt.Errorf("log: repair %s: sync: %w", s.name, err))
	}
	l.mu.Lock()
	off := d.Offset
	for k, op := range ops {
		j := int(op.Op - s.firstOp)
		if j < len(s.offsets) {
			s.offsets[j] = off
		} else {
			s.staged[j-len(s.offsets)] = off
		}
		off += int64(frameHeaderSize + EncodedSize(ops[k]))
	}
	l.damage = slices.DeleteFunc(l.damage, func(x Damage) bool { return x.FirstOp == first })
	if atEnd { // only a sealed segment: a damaged end of the active one is a torn tail, cut
		l.size.Add(end - s.size)
		s.size, s.end = end, end
	}
	l.mu.Unlock()
	l.logger.Warn("log corrupt ops repaired", "segment", s.name, "offset", d.Offset, "first_op", first, "last_op", last)
	return nil
}

// MarkFaulty holds op, a durable op whose record no longer verifies
// (damaged on disk since it was written), as a damaged run of one op, so
// that Repair can rewrite it. It fails unless the op's record really is
// damaged. Writer only.
func (l *Log) MarkFaulty(op uint64) error {
	if err := l.usableWhilePending(); err != nil {
		return err
	}
	if op == 0 || op > l.durableOp.Load() {
		return ErrNotFound
	}
	_, err := l.Read(op)
	if err == nil {
		return fmt.Errorf("log: op %d reads back fine; not marking it faulty", op)
	}
	if errors.Is(err, ErrFaulty) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s, i, ok := l.findPublished(op)
	if !ok {
		return ErrNotFound
	}
	d := Damage{Segment: s.name, Offset: s.offsets[i], End: s.frameEnd(i), FirstOp: op, LastOp: op,
		Reason: "damaged since written", Detail: err.Error()}
	l.damage = append(l.damage, d)
	slices.SortFunc(l.damage, func(a, b Damage) int { return int(a.FirstOp) - int(b.FirstOp) })
	return nil
}

// spaceProbeName is the file ProbeSpace writes and removes.
const spaceProbeName = "space-probe.tmp"

// ProbeSpace writes n bytes to a file next to the segments, syncs and
// removes it: whether the disk has room again after ErrDiskFull.
func (l *Log) ProbeSpace(n int) error {
	path := filepath.Join(l.dir, spaceProbeName)
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, n), 0)
	if err == nil {
		err = f.Datasync()
	}
	f.Close()
	if rerr := l.fs.Remove(path); err == nil {
		err = rerr
	}
	return err
}
