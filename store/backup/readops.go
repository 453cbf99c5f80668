package backup

import (
	"context"
	"errors"
	"fmt"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// errStopRead ends readObject early once the range is done.
var errStopRead = errors.New("stop")

// ReadOps calls fn with every op first..last the repository holds, in
// order, read from the segments that cover them or, where retention
// removed those, from a snapshot's parts. Every object is checked as a
// restore checks it (size, SHA-256, record checksums, continuity). It
// fails, having called fn for none of them, when the repository does not
// hold the whole range.
func (r *Repository) ReadOps(ctx context.Context, first, last uint64, fn func(*kmblog.Op) error) error {
	if first == 0 || last < first {
		return fmt.Errorf("backup: read ops %d..%d: not a range of ops", first, last)
	}
	m := r.Manifest()
	objs, err := m.objectsFor(first, last)
	if err != nil {
		return err
	}
	dec, err := newSegmentDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	for _, s := range objs {
		_, err := readObject(ctx, r.backend, dec, s, func(op *kmblog.Op, _ int) (bool, error) {
			switch {
			case op.Op < first:
				return true, nil
			case op.Op > last:
				return false, errStopRead
			}
			first = op.Op + 1
			return true, fn(op)
		})
		if errors.Is(err, errStopRead) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// objectsFor returns the objects that hold ops first..last, in op order:
// segments where they exist, else the parts of the newest snapshot that
// holds the ops retention removed.
func (m *Manifest) objectsFor(first, last uint64) ([]SegmentInfo, error) {
	if last > m.Checkpoint.Op {
		return nil, fmt.Errorf("backup: ops %d..%d are not all in the repository: its checkpoint is op %d", first, last, m.Checkpoint.Op)
	}
	var out []SegmentInfo
	cover := func(objs []SegmentInfo, next uint64) (SegmentInfo, bool) {
		for _, s := range objs {
			if s.FirstOp <= next && next <= s.LastOp {
				return s, true
			}
		}
		return SegmentInfo{}, false
	}
	for next := first; next <= last; {
		s, ok := cover(m.Segments, next)
		for i := len(m.Snapshots) - 1; !ok && i >= 0; i-- {
			s, ok = cover(m.Snapshots[i].Parts, next)
		}
		if !ok {
			return nil, fmt.Errorf("backup: op %d is in no segment or snapshot of the repository", next)
		}
		out = append(out, s)
		next = s.LastOp + 1
	}
	return out, nil
}
