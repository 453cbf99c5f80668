package log

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// RecoveryReport says what Open found and what it cut.
type RecoveryReport struct {
	Segments        int    // segment files in the log after recovery
	FirstOp, LastOp uint64 // 0 when the log is empty
	// TruncatedBytes is how much Open cut from the end of the log: a
	// torn tail of the last segment, or a whole last segment whose header
	// was torn. 0 when the tail was clean.
	TruncatedBytes   int64
	TruncatedSegment string // file name of the segment cut or removed
	TruncatedOffset  int64  // where the cut starts; 0 for a removed segment
	Reason           string // e.g. "checksum mismatch", "short record", "bad length", "non-contiguous op"
	// Migrated is the number of segments rewritten from format version 1.
	Migrated int
	// Indexed is the number of sealed segments trusted from their index
	// without being read; Reindexed the number read because they had no
	// valid index, and given one.
	Indexed, Reindexed int
	// Corrupt lists damage that a torn write cannot explain, which Open
	// keeps (the ops it held are faulty, see Log.Faulty) only when
	// Config.TolerateCorruption is set; otherwise Open fails with a
	// *CorruptionError.
	Corrupt []Damage
}

// Damage is a run of bytes in a segment where records should be but none
// verifies: a torn write at the tail, or corruption (bit rot, a
// misdirected write) anywhere.
type Damage struct {
	Segment     string // file name
	Offset, End int64  // the damaged bytes, [Offset, End)
	// FirstOp..LastOp are the ops the damaged bytes held, known from the
	// records around them. LastOp is 0 when nothing valid follows (a
	// tail), and FirstOp > LastOp when the bytes held no op.
	FirstOp, LastOp uint64
	Reason          string // why the first bad record failed: one of the fixed reasons
	Detail          string
	// Tail is set when nothing valid follows the damage, in its segment
	// or in a later one: the damage a torn final write leaves.
	Tail bool
}

// Ops is the number of ops the damage held, 0 for a tail.
func (d Damage) Ops() uint64 {
	if d.Tail || d.LastOp < d.FirstOp {
		return 0
	}
	return d.LastOp - d.FirstOp + 1
}

func (d Damage) String() string {
	var ops string
	switch {
	case d.Tail:
		ops = fmt.Sprintf("from op %d to the end", d.FirstOp)
	case d.LastOp < d.FirstOp:
		ops = "between ops"
	case d.FirstOp == d.LastOp:
		ops = fmt.Sprintf("op %d", d.FirstOp)
	default:
		ops = fmt.Sprintf("ops %d..%d", d.FirstOp, d.LastOp)
	}
	return fmt.Sprintf("segment %s offset %d (%d bytes, %s): %s", d.Segment, d.Offset, d.End-d.Offset, ops, d.Detail)
}

// CorruptionError is Open's error for a log whose damage a torn write
// cannot explain: a bad record followed by valid ones, or any damage in a
// segment that a later segment follows. Cutting the log there would drop
// acknowledged ops, so Open changes nothing and refuses.
type CorruptionError struct {
	Dir    string
	Damage []Damage // every damaged run, in log order
}

func (e *CorruptionError) Error() string {
	d := e.Damage[0]
	more := ""
	if n := len(e.Damage) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more damaged run(s))", n)
	}
	return fmt.Sprintf("log %s is corrupt: %s%s; valid records follow, so this is not a torn write and the log is not cut",
		e.Dir, d, more)
}

// Unwrap makes a CorruptionError match ErrCorrupt.
func (e *CorruptionError) Unwrap() error { return ErrCorrupt }

// Open opens the log in cfg.Dir, creating the directory and a first
// segment if needed, and recovers it as described in the package
// documentation. A nil logger discards; nil metrics record nothing.
func Open(cfg Config, logger *slog.Logger, m *Metrics) (*Log, RecoveryReport, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, RecoveryReport{}, err
	}
	return open(cfg, logger, m)
}

// open is Open without Validate, so that tests can roll tiny segments.
func open(cfg Config, logger *slog.Logger, m *Metrics) (*Log, RecoveryReport, error) {
	began := time.Now()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return nil, RecoveryReport{}, errors.New("log: dir is required")
	}
	fsys := cfg.FS
	if fsys == nil {
		fsys = OS
	}
	if !cfg.ReadOnly {
		if err := fsys.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, RecoveryReport{}, fmt.Errorf("log: %w", err)
		}
	}
	dirFile, err := fsys.OpenFile(cfg.Dir, os.O_RDONLY, 0)
	if err != nil {
		return nil, RecoveryReport{}, fmt.Errorf("log: %w", err)
	}
	l := &Log{
		dir:      cfg.Dir,
		fs:       fsys,
		dirFile:  dirFile,
		segSize:  cfg.SegmentSizeBytes,
		logger:   logger,
		metrics:  m,
		tolerate: cfg.TolerateCorruption || cfg.ReadOnly,
		readOnly: cfg.ReadOnly,
		// Check builds its Log without this: it verifies every record.
		useIndexes: !cfg.VerifyAll,
	}
	rep, err := l.recover()
	if err != nil {
		for _, s := range l.segs {
			s.f.Close()
		}
		dirFile.Close()
		return nil, rep, err
	}
	l.metrics.publish()
	logger.Info("log recovered",
		"dir", l.dir,
		"segments", rep.Segments,
		"first_op", rep.FirstOp,
		"last_op", rep.LastOp,
		"last_position", l.nextPos-1,
		"size_bytes", l.size.Load(),
		"truncated_bytes", rep.TruncatedBytes,
		"segments_indexed", rep.Indexed,
		"segments_read", rep.Segments-rep.Indexed,
		"corrupt_ops", l.FaultyOps(),
		"duration", time.Since(began))
	return l, rep, nil
}

// recover reads every segment, cuts a torn tail, and sets up the writer's
// and the readers' state.
func (l *Log) recover() (RecoveryReport, error) {
	var rep RecoveryReport
	if err := l.migrate(&rep); err != nil {
		return rep, err
	}
	names, err := listSegments(l.fs, l.dir)
	if err != nil {
		return rep, err
	}
	if l.start, err = readStart(l.fs, l.dir); err != nil {
		return rep, err
	}
	if names, err = l.dropBelowStart(names); err != nil {
		return rep, err
	}
	if l.readOnly {
		if len(names) == 0 {
			return rep, fmt.Errorf("log: %s holds no log", l.dir)
		}
		if v1, err := l.needsMigration(names); err != nil || v1 {
			return rep, cmp.Or(err, fmt.Errorf("log: %s is in format version 1: start kmbd on it once to migrate it", l.dir))
		}
	}
	sc, torn, damage, err := l.verify(names)
	if err != nil {
		return rep, err
	}
	if l.readOnly {
		return l.openReadOnly(sc, damage, &rep)
	}

	// Verified everything; decide. Only a damaged tail of the last
	// segment, with nothing valid after it, is a torn write.
	var tail *Damage
	var corrupt []Damage
	for i := range damage {
		if damage[i].Tail {
			tail = &damage[i]
		} else {
			corrupt = append(corrupt, damage[i])
		}
	}
	if len(corrupt) > 0 && !l.tolerate {
		return rep, &CorruptionError{Dir: l.dir, Damage: corrupt}
	}
	if tail != nil {
		if err := l.cutTail(tail, &rep); err != nil {
			return rep, err
		}
	}
	if torn != nil {
		if err := l.removeTorn(torn, sc.nextOp, &rep); err != nil {
			return rep, err
		}
	}
	for _, d := range corrupt {
		l.logger.Error("log corrupt: ops held for repair from the cluster",
			"segment", d.Segment, "offset", d.Offset, "bytes", d.End-d.Offset,
			"first_op", d.FirstOp, "last_op", d.LastOp, "reason", d.Reason, "detail", d.Detail)
		if d.Ops() > 0 {
			l.damage = append(l.damage, d)
		}
	}
	rep.Corrupt = corrupt

	if len(l.segs) == 0 {
		s, err := createSegment(l.fs, l.dir, l.start.header())
		if err != nil {
			return rep, err
		}
		l.segs = append(l.segs, s)
		l.size.Add(s.size)
		l.dirty = true
		sc.nextOp, sc.nextPos, sc.prev = l.start.Op, l.start.Position, l.start.Prev
	}

	l.active = l.segs[len(l.segs)-1]
	// The previous process may have died with the tail in the page cache
	// only. Sync it before calling anything in it durable.
	l.active.dirty = true
	if err := l.syncSegment(l.active); err != nil {
		return rep, err
	}
	if err := l.syncDir(); err != nil {
		return rep, err
	}

	l.nextOp, l.nextPos, l.prev, l.lastTS = sc.nextOp, sc.nextPos, sc.prev, sc.lastTS
	if l.nextOp > l.segs[0].firstOp {
		l.firstOp.Store(l.segs[0].firstOp)
	}
	l.lastOp.Store(l.nextOp - 1)
	l.durableOp.Store(l.nextOp - 1)
	l.lastPos.Store(l.nextPos - 1)
	rep.Segments = len(l.segs)
	rep.FirstOp, rep.LastOp = l.firstOp.Load(), l.lastOp.Load()
	rep.Indexed, rep.Reindexed = l.indexed.trusted, l.indexed.written
	return rep, nil
}

// openReadOnly finishes a read-only recovery: the log reads up to the
// last valid record, a torn tail and a torn last segment stay on disk
// unread, and corrupt ops are faulty.
func (l *Log) openReadOnly(sc *scanner, damage []Damage, rep *RecoveryReport) (RecoveryReport, error) {
	for _, d := range damage {
		if !d.Tail && d.Ops() > 0 {
			l.damage = append(l.damage, d)
			rep.Corrupt = append(rep.Corrupt, d)
		}
		if d.Tail {
			s := l.segs[len(l.segs)-1]
			s.end = d.Offset
		}
	}
	l.active = l.segs[len(l.segs)-1]
	l.nextOp, l.nextPos, l.prev, l.lastTS = sc.nextOp, sc.nextPos, sc.prev, sc.lastTS
	if l.nextOp > l.segs[0].firstOp {
		l.firstOp.Store(l.segs[0].firstOp)
	}
	l.lastOp.Store(l.nextOp - 1)
	l.durableOp.Store(l.nextOp - 1)
	l.lastPos.Store(l.nextPos - 1)
	rep.Segments = len(l.segs)
	rep.FirstOp, rep.LastOp = l.firstOp.Load(), l.lastOp.Load()
	return *rep, nil
}

// verify reads and checks every segment in names, changing nothing. It
// returns the scanner's state after the last valid record, a last segment
// with a torn header (set aside, not read: a crash while it was being
// created leaves one), and the damage found, each run marked Tail only if
// nothing valid follows it in its segment or in a later one.
func (l *Log) verify(names []string) (sc *scanner, torn *tornSegment, damage []Damage, err error) {
	// A torn header can only be left by a crash while the last segment
	// was being created, before anything in it was synced. Such a segment
	// is set aside, so that the one before it is read as the sealed
	// segment it is, and removed once the rest has been verified: a
	// failed Open changes no file.
	if n := len(names); n > 0 {
		if torn, err = l.checkTornTail(names[n-1]); err != nil {
			return nil, nil, nil, err
		}
		if torn != nil {
			names = names[:n-1]
		}
	}
	sc = newScanner(l.start)
	for i, name := range names {
		s, d, err := l.recoverSegment(name, sc, i == len(names)-1)
		if err != nil {
			return nil, nil, nil, err
		}
		l.segs = append(l.segs, s)
		l.size.Add(s.size)
		if len(d) > 0 && d[len(d)-1].Tail {
			// A segment is synced before the next one is created, so a
			// damaged end of any segment but the last is no torn write:
			// it held the ops up to the next segment's first.
			var next uint64
			switch {
			case i < len(names)-1:
				next, _ = parseSegmentName(names[i+1])
			case torn != nil:
				next, _ = parseSegmentName(torn.name)
			}
			if next > 0 {
				t := &d[len(d)-1]
				t.Tail, t.LastOp = false, next-1
				sc.placeholders(s, t.Offset, next)
			}
		}
		damage = append(damage, d...)
	}
	return sc, torn, damage, nil
}

// dropBelowStart leaves out the segments wholly below the recorded start:
// a removal (RemoveBefore) that a crash interrupted after recording the
// start. They are deleted, finishing it, unless the log is read-only.
func (l *Log) dropBelowStart(names []string) ([]string, error) {
	drop := 0
	for drop+1 < len(names) {
		next, _ := parseSegmentName(names[drop+1])
		if next > l.start.Op {
			break
		}
		drop++
	}
	if drop == 0 || l.readOnly {
		return names[drop:], nil
	}
	for _, name := range names[:drop] {
		s := &segment{name: name, path: filepath.Join(l.dir, name)}
		if err := l.removeSegmentFiles(s); err != nil {
			return nil, err
		}
		l.logger.Warn("log segment below the retained start removed (an interrupted removal)", "segment", name, "first_op", l.start.Op)
	}
	return names[drop:], nil
}

// cutTail truncates a torn tail.
func (l *Log) cutTail(d *Damage, rep *RecoveryReport) error {
	s := l.segs[len(l.segs)-1]
	if err := s.f.Truncate(d.Offset); err != nil {
		return fmt.Errorf("log: truncate %s: %w", s.name, err)
	}
	if err := s.f.Datasync(); err != nil {
		return fmt.Errorf("log: sync %s: %w", s.name, err)
	}
	l.size.Add(d.Offset - s.size)
	s.end, s.size = d.Offset, d.Offset
	rep.TruncatedBytes = d.End - d.Offset
	rep.TruncatedSegment = s.name
	rep.TruncatedOffset = d.Offset
	rep.Reason = d.Reason
	l.logger.Warn("log tail truncated",
		"segment", s.name,
		"offset", d.Offset,
		"bytes_cut", d.End-d.Offset,
		"reason", d.Reason,
		"detail", d.Detail)
	return nil
}

// listSegments returns the names of the segment files in dir in op order.
// Other files are ignored.
func listSegments(fsys FS, dir string) ([]string, error) {
	entries, err := fsys.ReadDir(dir) // sorted by name, and names sort in op order
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	var names []string
	for _, e := range entries {
		if _, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// tornSegment is a last segment whose header is torn.
type tornSegment struct {
	name   string
	size   int64
	reason *recordError
}

// checkTornTail reports whether the last segment's header is torn (short,
// or failing its checksum). A header with a valid checksum but an unknown
// version or bad magic is not torn, and is left for recoverSegment to
// refuse. A torn header followed by a valid record is damage to a segment
// that held data, not a crash during its creation: that is an error.
func (l *Log) checkTornTail(name string) (*tornSegment, error) {
	f, err := l.fs.OpenFile(filepath.Join(l.dir, name), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	hdr := make([]byte, segmentHeaderSize)
	n, err := f.ReadAt(hdr, 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("log: read %s: %w", name, err)
	}
	_, herr := decodeSegmentHeader(hdr[:n])
	if herr == nil || herr.Reason == reasonHeaderInvalid {
		return nil, nil
	}
	if validFrameAt(f, segmentHeaderSize, fi.Size()) {
		return nil, fmt.Errorf("log: segment %s: %w, but a valid record follows it; refusing to delete the segment", name, herr)
	}
	return &tornSegment{name: name, size: fi.Size(), reason: herr}, nil
}

// removeTorn deletes a last segment with a torn header, after checking
// from its name that it is the segment that would follow the log.
func (l *Log) removeTorn(t *tornSegment, nextOp uint64, rep *RecoveryReport) error {
	if op, _ := parseSegmentName(t.name); op != nextOp {
		return fmt.Errorf("log: segment %s: %w, and its name says it starts at op %d but the log before it ends at op %d",
			t.name, t.reason, op, nextOp-1)
	}
	if err := l.fs.Remove(filepath.Join(l.dir, t.name)); err != nil {
		return fmt.Errorf("log: remove segment with torn header: %w", err)
	}
	l.dirty = true
	rep.TruncatedBytes = t.size
	rep.TruncatedSegment = t.name
	rep.TruncatedOffset = 0
	rep.Reason = t.reason.Reason
	l.logger.Warn("log segment with torn header removed",
		"segment", t.name,
		"bytes_cut", t.size,
		"reason", t.reason.Reason,
		"detail", t.reason.Error())
	return nil
}

// validFrameAt reports whether a frame with a good checksum starts at off.
func validFrameAt(f File, off, size int64) bool {
	var h [frameHeaderSize]byte
	if size-off < frameHeaderSize {
		return false
	}
	if _, err := f.ReadAt(h[:], off); err != nil {
		return false
	}
	n, sum, rerr := parseFrameHeader(h[:], size-off-frameHeaderSize)
	if rerr != nil {
		return false
	}
	payload := make([]byte, n)
	if _, err := f.ReadAt(payload, off+frameHeaderSize); err != nil {
		return false
	}
	return checkPayload(payload, sum) == nil
}

// scanner carries what the next record must be from one segment to the
// next, and the buffers reused for all of them.
type scanner struct {
	nextOp, nextPos uint64
	prev            Chain // chain hash of op nextOp-1
	// known is false after damage: the op and position after it come from
	// the next valid record or segment header, and that record's chain
	// hash cannot be checked (the op before it is unreadable).
	known   bool
	lastTS  int64 // commit time of the op last checked
	br      *bufio.Reader
	payload []byte
	chainer Chainer
}

func newScanner(start Start) *scanner {
	return &scanner{nextOp: start.Op, nextPos: start.Position, prev: start.Prev, known: true, br: bufio.NewReaderSize(nil, 1<<20)}
}

// placeholders gives the ops from sc.nextOp up to (not including) next,
// held by damaged bytes starting at off, index entries at off, so that the
// segment's index stays dense; Read refuses them (they are faulty).
func (sc *scanner) placeholders(s *segment, off int64, next uint64) {
	for ; sc.nextOp < next; sc.nextOp++ {
		s.offsets = append(s.offsets, off)
	}
	sc.known = false
}

// recoverSegment opens and verifies one segment and returns the damage it
// found (the last one marked Tail if nothing valid follows it in the
// segment). A sealed segment (not the last) whose index checks out is
// trusted without being read; one without a valid index is read and,
// when sound, given one. Errors are for what cannot be recovered at all:
// unreadable files, bad headers, segments that do not continue the log.
func (l *Log) recoverSegment(name string, sc *scanner, last bool) (*segment, []Damage, error) {
	path := filepath.Join(l.dir, name)
	flag := os.O_RDWR
	if l.readOnly {
		flag = os.O_RDONLY
	}
	f, err := l.fs.OpenFile(path, flag, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("log: %w", err)
	}
	s := &segment{name: name, path: path, f: f}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()

	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("log: %w", err)
	}
	size := fi.Size()
	hdr := make([]byte, segmentHeaderSize)
	n, err := f.ReadAt(hdr, 0)
	if err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("log: read %s: %w", name, err)
	}
	h, herr := decodeSegmentHeader(hdr[:n])
	if herr != nil {
		return nil, nil, fmt.Errorf("log: segment %s: %w", name, herr)
	}
	if nameOp, _ := parseSegmentName(name); h.firstOp != nameOp {
		return nil, nil, fmt.Errorf("log: segment %s: %w: header says first op %d", name, ErrCorrupt, h.firstOp)
	}
	if sc.known || h.firstOp < sc.nextOp {
		if h.firstOp != sc.nextOp {
			return nil, nil, fmt.Errorf("log: segment %s: %w: starts at op %d, want op %d (segment missing or misplaced?)",
				name, ErrCorrupt, h.firstOp, sc.nextOp)
		}
	}
	if sc.known && (h.firstPos != sc.nextPos || h.prevChain != sc.prev) {
		return nil, nil, fmt.Errorf("log: segment %s: %w: header says it starts at position %d after chain hash %x, but the log before it ends at position %d with chain hash %x",
			name, ErrCorrupt, h.firstPos, h.prevChain[:8], sc.nextPos-1, sc.prev[:8])
	}
	if sc.nextOp == 1 && sc.known && (h.firstOp != 1 || h.firstPos != 1 || h.prevChain != (Chain{})) {
		return nil, nil, fmt.Errorf("log: segment %s: %w: the first segment must start at op 1, position 1", name, ErrCorrupt)
	}
	// The header is the authority on where this segment starts.
	s.segmentHeader = h
	sc.nextOp, sc.nextPos, sc.prev, sc.known = h.firstOp, h.firstPos, h.prevChain, true

	if !last && l.useIndexes {
		if x := l.loadIndex(s, size); x != nil {
			s.offsets, s.firstTS = x.offsets, x.firstTS
			s.end, s.size = size, size
			sc.nextOp, sc.nextPos, sc.prev, sc.lastTS = h.firstOp+uint64(x.ops()), x.nextPos, x.lastChain, x.lastTS
			l.indexed.trusted++
			ok = true
			return s, nil, nil
		}
	}

	var damage []Damage
	off := int64(segmentHeaderSize)
	for off < size {
		end, bad, err := sc.scan(s, off, size)
		if err != nil {
			return nil, nil, fmt.Errorf("log: read %s: %w", name, err)
		}
		if bad == nil {
			break
		}
		d := Damage{Segment: name, Offset: end, End: size, FirstOp: sc.nextOp, Reason: bad.Reason, Detail: bad.Error(), Tail: true}
		next, nextOp, nextPos, err := sc.resync(f, end, size)
		if err != nil {
			return nil, nil, fmt.Errorf("log: read %s: %w", name, err)
		}
		if next < 0 {
			damage = append(damage, d)
			s.end, s.size = size, size // the caller cuts a tail
			ok = true
			return s, damage, nil
		}
		d.End, d.LastOp, d.Tail = next, nextOp-1, false
		damage = append(damage, d)
		sc.placeholders(s, end, nextOp)
		sc.nextPos = nextPos
		off = next
	}
	s.end, s.size = size, size
	ok = true
	if !last && len(damage) == 0 && l.useIndexes && !l.readOnly {
		l.writeIndex(s, sc.nextPos, sc.prev, s.firstTS, sc.lastTS)
		l.indexed.written++
	}
	return s, damage, nil
}

// scan verifies the records of s from offset off up to size and records
// their offsets. It stops at the first bad record and returns its offset
// and what is wrong with it; err is for failures to read the file.
func (sc *scanner) scan(s *segment, off, size int64) (end int64, bad *recordError, err error) {
	sc.br.Reset(io.NewSectionReader(s.f, off, size-off))
	var h [frameHeaderSize]byte
	for off < size {
		if size-off < frameHeaderSize {
			return off, &recordError{Reason: reasonShortRecord, Err: fmt.Errorf("%d bytes left, frame header is %d", size-off, frameHeaderSize)}, nil
		}
		if _, err := io.ReadFull(sc.br, h[:]); err != nil {
			return off, nil, err
		}
		n, sum, rerr := parseFrameHeader(h[:], size-off-frameHeaderSize)
		if rerr != nil {
			return off, rerr, nil
		}
		if cap(sc.payload) < n {
			sc.payload = make([]byte, n)
		}
		payload := sc.payload[:n]
		if _, err := io.ReadFull(sc.br, payload); err != nil {
			return off, nil, err
		}
		if rerr := sc.check(payload, sum); rerr != nil {
			return off, rerr, nil
		}
		if s.firstTS == 0 && len(s.offsets) == 0 {
			s.firstTS = sc.lastTS
		}
		s.offsets = append(s.offsets, off)
		off += int64(frameHeaderSize + n)
	}
	return off, nil, nil
}

// check verifies one record's payload: checksum, strict decoding, that it
// is the op and position expected next, and that its chain hash follows
// the previous op's. On success it moves the scanner past it.
func (sc *scanner) check(payload []byte, sum uint32) *recordError {
	if rerr := checkPayload(payload, sum); rerr != nil {
		return rerr
	}
	p, err := parseOp(payload)
	switch {
	case err != nil:
		return &recordError{Reason: reasonDecode, Err: err}
	case p.op.Op != sc.nextOp:
		return &recordError{Reason: reasonOpGap, Err: fmt.Errorf("record holds op %d, want op %d", p.op.Op, sc.nextOp)}
	case p.op.FirstPosition != sc.nextPos:
		return &recordError{Reason: reasonPositionGap, Err: fmt.Errorf("op %d starts at position %d, want %d", p.op.Op, p.op.FirstPosition, sc.nextPos)}
	}
	if sc.known {
		if c := sc.chainer.Payload(sc.prev, payload); c != p.op.Chain {
			return &recordError{Reason: reasonChain, Err: fmt.Errorf("op %d has chain hash %x, the op before it implies %x", p.op.Op, p.op.Chain[:8], c[:8])}
		}
	}
	sc.known = true
	sc.lastTS = p.op.Timestamp
	sc.nextOp++
	sc.nextPos += p.entries
	sc.prev = p.op.Chain
	return nil
}

// resync looks for the first valid record after a bad one at off: a frame
// whose length fits, whose checksum matches and whose op decodes as one
// that can come after the last good op. It returns the record's offset
// and op number, or -1 when none follows. It is only run on damage, and
// filters candidates by their first bytes before checksumming them, so
// that garbage costs a pass over the bytes, not a checksum per offset.
//
// A record found this way is valid on its own, but the ops between the
// bad record and it are not readable: its chain hash is checked later,
// against the repaired ops.
func (sc *scanner) resync(f File, off, size int64) (at int64, op, pos uint64, err error) {
	const window = 1 << 20
	buf := make([]byte, 0, window+frameHeaderSize+16)
	for base := off + 1; base+frameHeaderSize+minOpSize <= size; base += window {
		n := min(int64(cap(buf)), size-base)
		buf = buf[:n]
		if _, err := f.ReadAt(buf, base); err != nil && err != io.EOF {
			return 0, 0, 0, err
		}
		for i := 0; i < int(min(window, n)); i++ {
			at := base + int64(i)
			h := buf[i:]
			if len(h) < frameHeaderSize+2 {
				break
			}
			length, sum, rerr := parseFrameHeader(h, size-at-frameHeaderSize)
			if rerr != nil || h[frameHeaderSize] != opVersion {
				continue
			}
			payload := make([]byte, length)
			if _, err := f.ReadAt(payload, at+frameHeaderSize); err != nil {
				return 0, 0, 0, err
			}
			if checkPayload(payload, sum) != nil {
				continue
			}
			p, err := parseOp(payload)
			if err != nil || p.op.Op < sc.nextOp || p.op.FirstPosition < sc.nextPos {
				continue
			}
			if p.op.Op == sc.nextOp && sc.chainer.Payload(sc.prev, payload) != p.op.Chain {
				continue
			}
			return at, p.op.Op, p.op.FirstPosition, nil
		}
	}
	return -1, 0, 0, nil
}

// Check verifies the log in cfg.Dir as Open does, without changing any
// file, and returns every damaged run it found, a torn tail included (a
// last segment with a torn header is reported as a Tail run at offset 0).
func Check(cfg Config) ([]Damage, RecoveryReport, error) {
	var err error
	fsys := cfg.FS
	if fsys == nil {
		fsys = OS
	}
	l := &Log{dir: cfg.Dir, fs: fsys, logger: slog.New(slog.DiscardHandler), readOnly: true}
	if l.start, err = readStart(fsys, cfg.Dir); err != nil {
		return nil, RecoveryReport{}, err
	}
	defer func() {
		for _, s := range l.segs {
			s.f.Close()
		}
	}()
	var rep RecoveryReport
	names, err := listSegments(fsys, cfg.Dir)
	if err != nil {
		return nil, rep, err
	}
	if names, err = l.dropBelowStart(names); err != nil {
		return nil, rep, err
	}
	if v1, err := l.needsMigration(names); err != nil {
		return nil, rep, err
	} else if v1 {
		return nil, rep, fmt.Errorf("log: %s is in format version 1: start kmbd on it once to migrate it, then check it", cfg.Dir)
	}
	sc, torn, damage, err := l.verify(names)
	if err != nil {
		return nil, rep, err
	}
	if torn != nil {
		damage = append(damage, Damage{Segment: torn.name, End: torn.size, FirstOp: sc.nextOp,
			Reason: torn.reason.Reason, Detail: torn.reason.Error(), Tail: true})
	}
	rep.Segments = len(l.segs)
	if len(l.segs) > 0 && sc.nextOp > l.segs[0].firstOp {
		rep.FirstOp, rep.LastOp = l.segs[0].firstOp, sc.nextOp-1
	}
	return damage, rep, nil
}
