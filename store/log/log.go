package log

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	// ErrNotFound is returned by Read for an op that is not in the log or
	// not yet durable.
	ErrNotFound = errors.New("log: op not found")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("log: closed")
	// ErrNotContiguous is wrapped by Append errors for ops that do not
	// continue the log.
	ErrNotContiguous = errors.New("log: op does not continue the log")
	// ErrReadOnly is returned by every write of a log opened with
	// Config.ReadOnly.
	ErrReadOnly = errors.New("log: opened read-only")
	// ErrDiskFull is wrapped by Append errors when the file system ran out
	// of space (ENOSPC, EDQUOT). Nothing of that Append is in the log, and
	// the log stays usable: a later Append may succeed once space is freed.
	ErrDiskFull = errors.New("log: disk full")
)

// noSpace reports whether err is the file system running out of space.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// maxRetainedBuf bounds the encode buffer that Append keeps between calls;
// a rare huge batch should not pin its memory for the life of the log.
const maxRetainedBuf = 4 << 20

// Log is a segmented, append-only, checksummed log of ops.
//
// One goroutine, the writer, calls Append, Sync, TruncateAfter and Close.
// Read, Scan and the accessors are safe from any goroutine, concurrently
// with the writer.
//
// Readers only ever see durable ops. Append encodes and writes records and
// stages their offsets in writer-private memory; Sync fsyncs, then
// publishes the staged offsets under mu in one short critical section.
// Readers look offsets up under mu.RLock and pread without it, so neither
// side waits for the other's I/O.
type Log struct {
	dir      string
	fs       FS
	dirFile  File // kept open to fsync the directory after creating or removing segments
	segSize  int64
	logger   *slog.Logger
	metrics  *Metrics
	tolerate bool // Config.TolerateCorruption
	readOnly bool // opened by Check: nothing is written
	// useIndexes trusts sealed segments whose index checks out at Open
	// instead of reading them (not for Check, nor Config.VerifyAll).
	useIndexes bool
	start      Start // where the log starts, as recorded in START at Open
	indexed    struct{ trusted, written int }

	// Writer state.
	active   *segment // last segment; the only one appended to
	buf      []byte   // records being appended, reused across calls
	frames   []int    // offset in buf of each record of the current Append, plus the end
	nextOp   uint64   // op number the next Append must start with
	nextPos  uint64   // FirstPosition the next Append must start with
	prev     Chain    // chain hash of op nextOp-1: the next segment header's prevChain
	lastTS   int64    // commit time of op nextOp-1, for the index of a segment sealed next
	appended uint64   // bytes of records appended since Open
	dirty    bool     // segments created or removed since the directory's last fsync
	pending  *PendingSync
	failed   error // sticky: after a failed write or fsync the on-disk state is unknown

	// mu guards segs and the (mu) fields of each segment. The writer is
	// the only goroutine that changes them, so it may read them without
	// the lock.
	mu   sync.RWMutex
	segs []*segment // in op order
	// damage lists the corrupt runs recovery kept (TolerateCorruption):
	// their ops are in the index with placeholder offsets and are not
	// readable until Repair rewrites them.
	damage []Damage

	// barrier is held for reading by readers across lookup and pread,
	// and for writing by TruncateAfter and Close before they shrink or
	// close files. Append and Sync never take it, so readers never
	// delay the write path.
	barrier sync.RWMutex

	firstOp   atomic.Uint64
	lastOp    atomic.Uint64
	durableOp atomic.Uint64
	lastPos   atomic.Uint64
	size      atomic.Int64
	closed    atomic.Bool
}

// FirstOp is the number of the first op in the log, 0 when it is empty.
func (l *Log) FirstOp() uint64 { return l.firstOp.Load() }

// LastOp is the number of the last op appended, 0 when the log is empty.
func (l *Log) LastOp() uint64 { return l.lastOp.Load() }

// DurableOp is the number of the last op made durable by Sync or
// TruncateAfter; ops up to it are readable. 0 when none is.
func (l *Log) DurableOp() uint64 { return l.durableOp.Load() }

// LastPosition is the position of the last entry appended, 0 when the log
// has no entries.
func (l *Log) LastPosition() uint64 { return l.lastPos.Load() }

// SizeBytes is the total size of all segment files, including data not
// yet synced.
func (l *Log) SizeBytes() int64 { return l.size.Load() }

// usable returns the error that stops the writer from going on, if any.
func (l *Log) usable() error {
	if err := l.usableWhilePending(); err != nil {
		return err
	}
	if l.pending != nil {
		return errSyncPending
	}
	return nil
}

// usableWhilePending is usable, with a pending sync allowed: Append,
// MarkFaulty and RemoveBefore may go on while the ops before are being
// synced (they touch no staged op nor the active segment's sync state).
func (l *Log) usableWhilePending() error {
	if l.closed.Load() {
		return ErrClosed
	}
	if l.readOnly {
		return ErrReadOnly
	}
	if l.failed != nil {
		return fmt.Errorf("log: unusable after an I/O error, restart to recover: %w", l.failed)
	}
	return nil
}

// fail records an I/O error on the write path. After a failed write or
// fsync the kernel may have dropped dirty pages, so retrying could report
// success for data that is gone; only a restart, whose recovery reads back
// what actually reached the disk, is safe.
func (l *Log) fail(err error) error {
	if l.failed == nil {
		l.failed = err
	}
	return err
}

// Append writes ops, which must continue the log: the first must be op
// LastOp()+1 starting at position LastPosition()+1, and each next one must
// follow its predecessor. If any op does not, or encodes to more than
// MaxRecordSize, Append returns an error and writes nothing.
//
// All records go to the active segment in one write, or one write per
// segment when the batch crosses a roll. They are not durable, nor
// readable, until Sync.
//
// When the disk is full Append returns an error wrapping ErrDiskFull and
// leaves the log as it was: what it wrote is cut off again and segments it
// created are removed. Any other write error makes the log unusable (see
// fail).
func (l *Log) Append(ops ...*Op) error { return l.AppendEncoded(ops, nil) }

// AppendEncoded is Append with the ops' encodings at hand: enc[i], when
// enc is not nil and enc[i] is not, is AppendOp's encoding of ops[i], as a
// backup received it from its primary (wire.Message.Raw), and is written
// as it is rather than encoded again. An encoding that is not ops[i]'s
// is written as the record of ops[i], and every reader of the log would
// then see it: the caller must pass only what decoded to ops[i].
func (l *Log) AppendEncoded(ops []*Op, enc [][]byte) error {
	if err := l.usableWhilePending(); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	if enc != nil && len(enc) != len(ops) {
		return fmt.Errorf("log: %d encodings for %d ops", len(enc), len(ops))
	}

	// Encode and validate everything before writing anything.
	buf, frames := l.buf[:0], l.frames[:0]
	next, pos, entries := l.nextOp, l.nextPos, 0
	for i, op := range ops {
		if err := checkContinues(op, next, pos); err != nil {
			return err
		}
		frames = append(frames, len(buf))
		var err error
		if enc != nil && enc[i] != nil {
			buf, err = appendEncodedFrame(buf, op, enc[i])
		} else {
			buf, err = appendFrame(buf, op)
		}
		if err != nil {
			return err
		}
		next++
		pos += uint64(len(op.Entries))
		entries += len(op.Entries)
	}
	frames = append(frames, len(buf))
	l.buf, l.frames = buf, frames // keep the grown capacity for next time
	if cap(buf) > maxRetainedBuf {
		defer func() { l.buf = nil }() // but not a huge one
	}

	// Write, rolling before any record that would start at or past the
	// roll size. A segment always gets at least one record, so a roll
	// never leaves an empty segment behind.
	undo := l.undoPoint()
	from := 0
	for i, op := range ops {
		at := l.active.size + int64(frames[i]-frames[from])
		if at < l.segSize || (i == from && l.active.ops() == 0) {
			continue
		}
		if err := l.write(from, i); err != nil {
			return l.writeFailed(undo, err)
		}
		prev, lastTS := l.prev, l.lastTS
		if i > 0 {
			prev, lastTS = ops[i-1].Chain, ops[i-1].Timestamp
		}
		firstTS := l.active.firstTS // read by the writer, which alone sets it
		if firstTS == 0 && l.active.firstOp >= ops[0].Op {
			firstTS = ops[l.active.firstOp-ops[0].Op].Timestamp // started by this Append
		}
		if err := l.roll(segmentHeader{firstOp: op.Op, firstPos: op.FirstPosition, prevChain: prev}, firstTS, lastTS); err != nil {
			return l.writeFailed(undo, err)
		}
		from = i
	}
	if err := l.write(from, len(ops)); err != nil {
		return l.writeFailed(undo, err)
	}

	if l.nextOp == l.firstOpWhenEmpty() {
		l.firstOp.Store(ops[0].Op)
	}
	l.noteFirstTimestamps(ops)
	l.nextOp, l.nextPos = next, pos
	l.prev = ops[len(ops)-1].Chain
	l.lastTS = ops[len(ops)-1].Timestamp
	l.lastOp.Store(next - 1)
	l.lastPos.Store(pos - 1)
	l.appended += uint64(len(buf))
	l.metrics.appended(entries, len(buf))
	return nil
}

// AppendedBytes is how many bytes of records Append wrote since Open,
// framing included (writes undone after a full disk excepted). Writer
// only.
func (l *Log) AppendedBytes() uint64 { return l.appended }

// noteFirstTimestamps records the commit time of the first op of every
// segment that ops started (under mu: readers look them up).
func (l *Log) noteFirstTimestamps(ops []*Op) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.segs) - 1; i >= 0; i-- {
		s := l.segs[i]
		if s.firstOp < ops[0].Op {
			break
		}
		if s.firstTS == 0 {
			s.firstTS = ops[s.firstOp-ops[0].Op].Timestamp
		}
	}
}

// firstOpWhenEmpty is the op number an empty log starts with.
func (l *Log) firstOpWhenEmpty() uint64 { return l.segs[0].firstOp }

func checkContinues(op *Op, next, pos uint64) error {
	switch {
	case op == nil:
		return fmt.Errorf("%w: nil op", ErrNotContiguous)
	case op.Op != next:
		return fmt.Errorf("%w: got op %d, want op %d", ErrNotContiguous, op.Op, next)
	case op.FirstPosition != pos:
		return fmt.Errorf("%w: op %d starts at position %d, want %d", ErrNotContiguous, op.Op, op.FirstPosition, pos)
	}
	return nil
}

// write appends the records of l.buf from frame index from up to (not
// including) to to the active segment and stages their offsets.
func (l *Log) write(from, to int) error {
	if from == to {
		return nil
	}
	s := l.active
	base := l.frames[from]
	b := l.buf[base:l.frames[to]]
	if _, err := s.f.WriteAt(b, s.size); err != nil {
		// Some of b may have landed: undo cuts it off.
		s.size += int64(len(b))
		s.dirty = true
		l.size.Add(int64(len(b)))
		return fmt.Errorf("log: write %s: %w", s.name, err)
	}
	for _, start := range l.frames[from:to] {
		s.staged = append(s.staged, s.size+int64(start-base))
	}
	s.size += int64(len(b))
	s.dirty = true
	s.writes++
	l.size.Add(int64(len(b)))
	return nil
}

// roll seals the active segment, whose first and last ops have commit
// times firstTS and lastTS, and starts a new one with header h.
func (l *Log) roll(h segmentHeader, firstTS, lastTS int64) error {
	// Sync the sealed segment before writing anything to the new one.
	// Otherwise a crash could persist records of the new segment but not
	// the end of the old one, and recovery, which only forgives damage in
	// the last segment, would refuse to start.
	if err := l.syncSegment(l.active); err != nil {
		return err
	}
	// Its index lets the next Open trust it without reading it.
	l.writeIndex(l.active, h.firstPos, h.prevChain, firstTS, lastTS)
	s, err := createSegment(l.fs, l.dir, h)
	if err != nil {
		return err // nothing of it remains; the caller decides
	}
	l.mu.Lock()
	l.segs = append(l.segs, s)
	l.mu.Unlock()
	l.active = s
	l.dirty = true
	l.size.Add(s.size)
	l.metrics.rolled()
	l.logger.Info("log segment rolled", "segment", s.name, "first_op", h.firstOp)
	return nil
}

// undo is where an Append started, to go back to when the disk is full.
type undo struct {
	active *segment
	size   int64 // the active segment's size
	staged int   // its staged offsets
	segs   int   // segments in the log
}

func (l *Log) undoPoint() undo {
	return undo{active: l.active, size: l.active.size, staged: len(l.active.staged), segs: len(l.segs)}
}

// writeFailed handles a failed write or roll of Append. Out of space, it
// removes what the Append wrote and created, so that the log is as it was
// and stays usable; anything else (or failing to undo) is fatal.
func (l *Log) writeFailed(u undo, err error) error {
	if !noSpace(err) {
		return l.fail(err)
	}
	l.mu.Lock()
	created := append([]*segment(nil), l.segs[u.segs:]...)
	clear(l.segs[u.segs:])
	l.segs = l.segs[:u.segs]
	l.mu.Unlock()
	for _, s := range created {
		s.f.Close()
		if rerr := l.fs.Remove(s.path); rerr != nil {
			return l.fail(fmt.Errorf("%w; and removing %s after it: %v", err, s.name, rerr))
		}
		l.size.Add(-s.size)
		l.dirty = true
	}
	s := u.active
	l.active = s
	if len(created) > 0 {
		// s was sealed, and indexed, by this Append's roll: it is the
		// active segment again and about to be cut.
		if rerr := l.removeIndex(s); rerr != nil {
			return l.fail(fmt.Errorf("%w; and after it: %v", err, rerr))
		}
		if serr := l.syncDir(); serr != nil {
			return serr
		}
	}
	if s.size > u.size {
		// The cut must be durable: a roll may have synced part of what
		// this Append wrote, and none of it may come back after a crash.
		terr := s.f.Truncate(u.size)
		if terr == nil {
			terr = s.f.Datasync()
		}
		if terr != nil {
			return l.fail(fmt.Errorf("%w; and cutting %s back after it: %v", err, s.name, terr))
		}
		l.size.Add(u.size - s.size)
		s.size = u.size
	}
	s.staged = s.staged[:u.staged]
	if err := l.syncDir(); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrDiskFull, err)
}

// Sync makes every appended op durable and readable: it fsyncs the active
// segment (segments sealed by a roll were synced then) and, after segments
// were created or removed, the directory. Afterwards DurableOp() ==
// LastOp(). Without anything new to sync it returns at once.
func (l *Log) Sync() error {
	if err := l.usable(); err != nil {
		return err
	}
	if err := l.syncSegment(l.active); err != nil {
		return err
	}
	if err := l.syncDir(); err != nil {
		return err
	}
	l.publish()
	l.metrics.publish()
	return nil
}

// publish makes every staged op visible to readers. The caller has made
// them durable.
func (l *Log) publish() { l.publishThrough(l.nextOp - 1) }

// publishThrough makes the staged ops up to last visible to readers. The
// caller has made them durable.
func (l *Log) publishThrough(last uint64) {
	durable := l.durableOp.Load()
	if durable >= last {
		return
	}
	l.mu.Lock()
	// Only the segments holding ops after the durable one have staged
	// offsets: walk back from the end to the first of them, then publish
	// forward up to last.
	first := len(l.segs) - 1
	for first > 0 && l.segs[first].firstOp > durable+1 {
		first--
	}
	for _, s := range l.segs[first:] {
		if s.firstOp > last {
			break
		}
		k := min(len(s.staged), int(last+1-s.firstOp)-len(s.offsets))
		s.offsets = append(s.offsets, s.staged[:k]...)
		if k == len(s.staged) {
			s.end = s.size
			s.staged = s.staged[:0]
		} else {
			s.end = s.staged[k] // where the first op still staged starts
			s.staged = s.staged[:copy(s.staged, s.staged[k:])]
		}
	}
	l.mu.Unlock()
	// Stored after the offsets are published, so a reader that sees the
	// new DurableOp also finds the op in the index.
	l.durableOp.Store(last)
}

// errSyncPending refuses what must not run while a sync started by
// StartSync is pending: anything but Append and FinishSync.
var errSyncPending = errors.New("log: a sync is pending (FinishSync first)")

// PendingSync is an fsync of the active segment started by StartSync: Do
// runs it, on any goroutine, while the writer goes on appending, and
// FinishSync publishes the ops it made durable.
type PendingSync struct {
	seg    *segment
	writes uint64 // seg.writes when the sync started
	last   uint64 // the last op it makes durable
	took   time.Duration
	err    error
}

// Last is the last op the sync makes durable.
func (p *PendingSync) Last() uint64 { return p.last }

// Do fsyncs. It is the only part of a pending sync that may run off the
// writer's goroutine, and it runs once.
func (p *PendingSync) Do() {
	if p.seg == nil {
		return
	}
	p.took, p.err = timedDatasync(p.seg.f)
}

// StartSync begins making every op appended so far durable without the
// writer waiting for the disk: the caller runs the returned sync's Do
// (on another goroutine), may Append meanwhile, and then passes it to
// FinishSync, which publishes those ops as Sync does. One sync may be
// pending at a time; until FinishSync, the writer's methods other than
// Append, MarkFaulty and RemoveBefore return an error. The directory, when a
// roll or removal left it to sync, is synced here, before StartSync
// returns: that is rare, and what is synced off the writer is then one
// file.
func (l *Log) StartSync() (*PendingSync, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	if err := l.syncDir(); err != nil {
		return nil, err
	}
	p := &PendingSync{last: l.nextOp - 1}
	if l.active.dirty {
		p.seg, p.writes = l.active, l.active.writes
	}
	l.pending = p
	return p, nil
}

// FinishSync ends the pending sync p after its Do returned: the ops it
// covers become durable and readable. A failed fsync makes the log
// unusable, as Sync's does.
func (l *Log) FinishSync(p *PendingSync) error {
	if l.pending != p {
		return errors.New("log: FinishSync of a sync that is not pending")
	}
	l.pending = nil
	if s := p.seg; s != nil {
		if err := l.synced(s, p.took, p.err); err != nil {
			return err
		}
		// Nothing written since it started: the segment is clean. (A
		// roll in between synced it again itself.)
		if s.writes == p.writes {
			s.dirty = false
		}
	}
	if err := l.usable(); err != nil {
		return err
	}
	l.publishThrough(p.last)
	l.metrics.publish()
	return nil
}

func (l *Log) syncSegment(s *segment) error {
	if !s.dirty {
		return nil
	}
	took, err := timedDatasync(s.f)
	if err := l.synced(s, took, err); err != nil {
		return err
	}
	s.dirty = false
	return nil
}

// timedDatasync fsyncs f's data and says how long it took. It touches
// nothing of the log: a pending sync runs it off the writer.
func timedDatasync(f File) (time.Duration, error) {
	start := time.Now()
	err := f.Datasync()
	return time.Since(start), err
}

// synced records an fsync of s that took took; a failed one makes the log
// unusable.
func (l *Log) synced(s *segment, took time.Duration, err error) error {
	l.metrics.fsynced(took)
	if err != nil {
		return l.fail(fmt.Errorf("log: sync %s: %w", s.name, err))
	}
	return nil
}

// syncDir fsyncs the directory if segment files were created or removed
// since it was last synced, so that those changes survive a crash.
func (l *Log) syncDir() error {
	if !l.dirty {
		return nil
	}
	start := time.Now()
	err := l.dirFile.Sync()
	l.metrics.fsynced(time.Since(start))
	if err != nil {
		return l.fail(fmt.Errorf("log: sync directory %s: %w", l.dir, err))
	}
	l.dirty = false
	return nil
}

// Close syncs what was appended, then closes the files. Reads in flight
// finish first; later calls of any method return ErrClosed.
func (l *Log) Close() error {
	if l.closed.Load() {
		return ErrClosed
	}
	var errs []error
	if l.failed == nil && !l.readOnly {
		errs = append(errs, l.Sync())
	}
	l.closed.Store(true)
	l.barrier.Lock()
	defer l.barrier.Unlock()
	l.mu.Lock()
	segs := l.segs
	l.segs = nil
	l.mu.Unlock()
	for _, s := range segs {
		errs = append(errs, s.f.Close())
	}
	errs = append(errs, l.dirFile.Close())
	return errors.Join(errs...)
}
