package log

import (
	"fmt"
	"sort"
	"sync"
)

// scanChunkSize is how much Scan reads with one pread: big enough that
// syscalls are a small part of scanning a log at start-up, small enough to
// stay in cache.
const scanChunkSize = 1 << 20

// readBufs recycles Read's frame buffers. Buffers of huge records are
// dropped instead of pinning their memory in the pool.
var readBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledReadBuf = 1 << 20

// location is where a durable op's frame lies.
type location struct {
	seg        *segment
	start, end int64 // frame bytes [start, end)
}

// locate finds op among the published (durable) ops. Called with
// barrier held for reading, which keeps the file open and its bytes in
// place until the caller is done reading them.
func (l *Log) locate(op uint64) (location, bool, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if d, bad := l.faultyIn(op, op); bad {
		return location{}, false, &faultyError{op: op, d: d}
	}
	s, i, ok := l.findPublished(op)
	if !ok {
		return location{}, false, nil
	}
	return location{seg: s, start: s.offsets[i], end: s.frameEnd(i)}, true, nil
}

// findPublished returns the segment and index within it of a published
// op. Called with mu held.
func (l *Log) findPublished(op uint64) (*segment, int, bool) {
	n := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].firstOp > op })
	if n == 0 {
		return nil, 0, false
	}
	s := l.segs[n-1]
	i := op - s.firstOp
	if i >= uint64(len(s.offsets)) {
		return nil, 0, false
	}
	return s, int(i), true
}

// frameEnd is the offset just past the i-th published frame of s. Called
// with mu held.
func (s *segment) frameEnd(i int) int64 {
	if i+1 < len(s.offsets) {
		return s.offsets[i+1]
	}
	return s.end
}

// Read returns op number op. Only durable ops are readable: others, and
// ops not in the log, give ErrNotFound. The record's checksum is verified
// again: a record damaged since recovery gives an error wrapping
// ErrCorrupt, never a wrong op. Safe concurrently with the writer.
func (l *Log) Read(op uint64) (Op, error) {
	if op == 0 || op > l.durableOp.Load() {
		return Op{}, ErrNotFound
	}
	if l.closed.Load() {
		return Op{}, ErrClosed
	}
	l.barrier.RLock()
	defer l.barrier.RUnlock()
	loc, ok, err := l.locate(op)
	if err != nil {
		return Op{}, err
	}
	if !ok {
		if l.closed.Load() {
			return Op{}, ErrClosed
		}
		return Op{}, ErrNotFound // truncated since the check above
	}

	bp := readBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledReadBuf {
			readBufs.Put(bp)
		}
	}()
	n := int(loc.end - loc.start)
	if cap(*bp) < n {
		*bp = make([]byte, n)
	}
	b := (*bp)[:n]
	if _, err := loc.seg.f.ReadAt(b, loc.start); err != nil {
		return Op{}, fmt.Errorf("log: read op %d from %s at offset %d: %w", op, loc.seg.name, loc.start, err)
	}
	o, rerr := decodeFrame(b)
	if rerr == nil && o.Op != op {
		rerr = &recordError{Reason: reasonOpGap, Err: fmt.Errorf("record holds op %d", o.Op)}
	}
	if rerr != nil {
		return Op{}, fmt.Errorf("log: read op %d from %s at offset %d: %w", op, loc.seg.name, loc.start, rerr)
	}
	return o, nil
}

// Scan calls fn with every durable op from op number from on (from 0 means
// the first), in order, up to the DurableOp at the time of the call. It
// stops at, and returns, the first error of fn or of reading. fn may keep
// the op; it runs with no lock held, so it may call Read. Scan reads
// segments in large chunks and verifies every record like Read.
func (l *Log) Scan(from uint64, fn func(*Op) error) error {
	return l.ScanRange(from, l.durableOp.Load(), fn)
}

// ScanRange is Scan up to op last (at most DurableOp): it reads nothing
// past last, so that a caller bounded by a commit number never meets the
// ops after it, damaged ones included.
func (l *Log) ScanRange(from, last uint64, fn func(*Op) error) error {
	if l.closed.Load() {
		return ErrClosed
	}
	first := l.firstOp.Load()
	if first == 0 {
		return nil // no op in the log
	}
	from = max(from, first)
	last = min(last, l.durableOp.Load())
	var buf []byte
	for next := from; next <= last && next != 0; {
		chunk, err := l.readChunk(next, last, scanChunkSize, &buf)
		if err != nil {
			return err
		}
		for off := 0; off < len(chunk.b); next++ {
			op, size, rerr := decodeFrameAt(chunk.b[off:])
			if rerr == nil && op.Op != next {
				rerr = &recordError{Reason: reasonOpGap, Err: fmt.Errorf("record holds op %d, want %d", op.Op, next)}
			}
			if rerr != nil {
				return fmt.Errorf("log: scan %s at offset %d: %w", chunk.seg.name, chunk.start+int64(off), rerr)
			}
			if err := fn(&op); err != nil {
				return err
			}
			off += size
		}
	}
	return nil
}

// chunk is a run of whole durable frames read by Scan.
type chunk struct {
	seg   *segment
	start int64 // file offset of b[0]
	b     []byte
}

// readChunk reads the frames of op next and of the ops after it in its
// segment, up to op last, that fit within limit bytes (at least op next's
// frame), into *buf.
func (l *Log) readChunk(next, last uint64, limit int64, buf *[]byte) (chunk, error) {
	l.barrier.RLock()
	defer l.barrier.RUnlock()
	if l.closed.Load() {
		return chunk{}, ErrClosed
	}
	l.mu.RLock()
	if d, bad := l.faultyIn(next, last); bad {
		l.mu.RUnlock()
		if next < d.FirstOp {
			last = d.FirstOp - 1 // read up to the damage; the caller meets it next
		} else {
			return chunk{}, &faultyError{op: max(next, d.FirstOp), d: d}
		}
		l.mu.RLock()
	}
	s, i, ok := l.findPublished(next)
	var start, end int64
	if ok {
		// Frames i..j-1: frame i, then each next one that still ends
		// within the chunk, none past op last.
		start = s.offsets[i]
		bound := start + limit
		maxJ := min(len(s.offsets), int(last-s.firstOp+1))
		j := i + 1 + sort.Search(maxJ-i-1, func(k int) bool { return s.frameEnd(i+1+k) > bound })
		end = s.frameEnd(j - 1)
	}
	l.mu.RUnlock()
	if !ok {
		// Only a concurrent TruncateAfter below next can get here.
		return chunk{}, fmt.Errorf("log: scan: op %d: %w", next, ErrNotFound)
	}
	n := int(end - start)
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err := s.f.ReadAt(b, start); err != nil {
		return chunk{}, fmt.Errorf("log: scan %s at offset %d: %w", s.name, start, err)
	}
	return chunk{seg: s, start: start, b: b}, nil
}

// decodeFrameAt decodes the frame at the start of b, which may be followed
// by more frames, and returns its total size.
func decodeFrameAt(b []byte) (Op, int, *recordError) {
	if len(b) < frameHeaderSize {
		return Op{}, 0, &recordError{Reason: reasonShortRecord}
	}
	n, _, rerr := parseFrameHeader(b, int64(len(b)-frameHeaderSize))
	if rerr != nil {
		return Op{}, 0, rerr
	}
	op, rerr := decodeFrame(b[:frameHeaderSize+n])
	return op, frameHeaderSize + n, rerr
}

// FirstOpAt returns where to start reading to meet every op committed at
// or after t (Unix ns): the first op of the last segment that starts at or
// before t, since commit times increase along the log and every earlier
// segment holds only earlier ops. It reads nothing from disk.
func (l *Log) FirstOpAt(t int64) uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i := sort.Search(len(l.segs), func(i int) bool {
		ts := l.segs[i].firstTS
		return ts == 0 || ts > t
	})
	first := l.firstOp.Load()
	if i == 0 {
		return first
	}
	return max(l.segs[i-1].firstOp, first)
}
