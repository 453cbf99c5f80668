package log

import (
	"bufio"
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
	// torn or corrupt tail of the last segment, or a whole last segment
	// whose header was torn. 0 when the tail was clean.
	TruncatedBytes   int64
	TruncatedSegment string // file name of the segment cut or removed
	TruncatedOffset  int64  // where the cut starts; 0 for a removed segment
	Reason           string // e.g. "checksum mismatch", "short record", "bad length", "non-contiguous op"
}

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
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, RecoveryReport{}, fmt.Errorf("log: %w", err)
	}
	dirFile, err := os.Open(cfg.Dir)
	if err != nil {
		return nil, RecoveryReport{}, fmt.Errorf("log: %w", err)
	}
	l := &Log{
		dir:     cfg.Dir,
		dirFile: dirFile,
		segSize: cfg.SegmentSizeBytes,
		logger:  logger,
		metrics: m,
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
		"duration", time.Since(began))
	return l, rep, nil
}

// recover reads every segment, cuts a damaged tail, and sets up the
// writer's and the readers' state.
func (l *Log) recover() (RecoveryReport, error) {
	var rep RecoveryReport
	names, err := listSegments(l.dir)
	if err != nil {
		return rep, err
	}
	// A torn header can only be left by a crash while the last segment
	// was being created, before anything in it was synced. Such a segment
	// is set aside, so that the one before it is read as the sealed
	// segment it is, and removed once the rest has been verified: a
	// failed Open changes no file.
	var torn *tornSegment
	if n := len(names); n > 0 {
		if torn, err = l.checkTornTail(names[n-1]); err != nil {
			return rep, err
		}
		if torn != nil {
			names = names[:n-1]
		}
	}

	sc := scanner{nextOp: 1, nextPos: 1, br: bufio.NewReaderSize(nil, 1<<20)}
	for i, name := range names {
		// Only the last segment can have a torn tail: a segment is
		// synced before the next one is created.
		tail := i == len(names)-1 && torn == nil
		s, err := l.recoverSegment(name, tail, &sc, &rep)
		if err != nil {
			return rep, err
		}
		l.segs = append(l.segs, s)
		l.size.Add(s.size)
	}
	if torn != nil {
		if err := l.removeTorn(torn, sc.nextOp, &rep); err != nil {
			return rep, err
		}
	}
	if len(l.segs) == 0 {
		s, err := createSegment(l.dir, 1)
		if err != nil {
			return rep, err
		}
		l.segs = append(l.segs, s)
		l.size.Add(s.size)
		l.dirty = true
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

	l.nextOp, l.nextPos = sc.nextOp, sc.nextPos
	if l.nextOp > l.segs[0].firstOp {
		l.firstOp.Store(l.segs[0].firstOp)
	}
	l.lastOp.Store(l.nextOp - 1)
	l.durableOp.Store(l.nextOp - 1)
	l.lastPos.Store(l.nextPos - 1)
	rep.Segments = len(l.segs)
	rep.FirstOp, rep.LastOp = l.firstOp.Load(), l.lastOp.Load()
	return rep, nil
}

// listSegments returns the names of the segment files in dir in op order.
// Other files are ignored.
func listSegments(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name, and names sort in op order
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
	f, err := os.Open(filepath.Join(l.dir, name))
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
	if err := os.Remove(filepath.Join(l.dir, t.name)); err != nil {
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
func validFrameAt(f *os.File, off, size int64) bool {
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

// scanner carries the expected op and position from one segment to the
// next, and the buffers reused for all of them.
type scanner struct {
	nextOp, nextPos uint64
	br              *bufio.Reader
	payload         []byte
}

// recoverSegment opens and verifies one segment. A bad record in the tail
// segment is cut off; anywhere else it is an error.
func (l *Log) recoverSegment(name string, tail bool, sc *scanner, rep *RecoveryReport) (*segment, error) {
	path := filepath.Join(l.dir, name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
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
		return nil, fmt.Errorf("log: %w", err)
	}
	size := fi.Size()
	hdr := make([]byte, segmentHeaderSize)
	n, err := f.ReadAt(hdr, 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("log: read %s: %w", name, err)
	}
	firstOp, herr := decodeSegmentHeader(hdr[:n])
	if herr != nil {
		return nil, fmt.Errorf("log: segment %s: %w", name, herr)
	}
	if nameOp, _ := parseSegmentName(name); firstOp != nameOp {
		return nil, fmt.Errorf("log: segment %s: %w: header says first op %d", name, ErrCorrupt, firstOp)
	}
	if firstOp != sc.nextOp {
		return nil, fmt.Errorf("log: segment %s: %w: starts at op %d, want op %d (segment missing or misplaced?)",
			name, ErrCorrupt, firstOp, sc.nextOp)
	}
	s.firstOp = firstOp

	end, rerr, err := sc.scan(s, size)
	if err != nil {
		return nil, fmt.Errorf("log: read %s: %w", name, err)
	}
	if rerr != nil {
		if !tail {
			return nil, fmt.Errorf("log: segment %s, offset %d: %w; it is not the last segment, so this is not a torn write: refusing to start",
				name, end, rerr)
		}
		if err := f.Truncate(end); err != nil {
			return nil, fmt.Errorf("log: truncate %s: %w", name, err)
		}
		if err := fdatasync(f); err != nil {
			return nil, fmt.Errorf("log: sync %s: %w", name, err)
		}
		rep.TruncatedBytes = size - end
		rep.TruncatedSegment = name
		rep.TruncatedOffset = end
		rep.Reason = rerr.Reason
		l.logger.Warn("log tail truncated",
			"segment", name,
			"offset", end,
			"bytes_cut", size-end,
			"reason", rerr.Reason,
			"detail", rerr.Error())
		size = end
	}
	s.end, s.size = size, size
	ok = true
	return s, nil
}

// scan verifies the records of s from its header to size and records
// their offsets. It stops at the first bad record and returns its offset
// and what is wrong with it; err is for failures to read the file.
func (sc *scanner) scan(s *segment, size int64) (end int64, bad *recordError, err error) {
	sc.br.Reset(io.NewSectionReader(s.f, segmentHeaderSize, size-segmentHeaderSize))
	off := int64(segmentHeaderSize)
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
		if rerr := checkPayload(payload, sum); rerr != nil {
			return off, rerr, nil
		}
		p, err := parseOp(payload)
		switch {
		case err != nil:
			return off, &recordError{Reason: reasonDecode, Err: err}, nil
		case p.op.Op != sc.nextOp:
			return off, &recordError{Reason: reasonOpGap, Err: fmt.Errorf("record holds op %d, want op %d", p.op.Op, sc.nextOp)}, nil
		case p.op.FirstPosition != sc.nextPos:
			return off, &recordError{Reason: reasonPositionGap, Err: fmt.Errorf("op %d starts at position %d, want %d", p.op.Op, p.op.FirstPosition, sc.nextPos)}, nil
		}
		s.offsets = append(s.offsets, off)
		off += int64(frameHeaderSize + n)
		sc.nextOp++
		sc.nextPos += p.entries
	}
	return off, nil, nil
}
