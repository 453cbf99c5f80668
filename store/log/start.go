package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// A log need not start at op 1: RemoveBefore deletes whole segments below
// an op (local retention), and Reset empties the log to start at any op
// (a replica installing a checkpoint). Where the log starts is then
// recorded in a small file, START, so that Open can still tell a log that
// starts later on purpose from one whose first segments went missing:
//
//	START, 60 bytes:
//	  [6]byte  magic "KMBSTA"
//	  u16 LE   version (1)
//	  u64 LE   first op
//	  u64 LE   first position
//	  [32]byte chain hash of the op before the first
//	  u32 LE   CRC32C of the 56 bytes above
//
// Without START the log starts at op 1, position 1, after the zero chain
// hash. START is replaced atomically (temporary file, fsync, rename, fsync
// of the directory) before any segment below it is removed, so a crash
// part way leaves segments wholly below the recorded start, which Open
// removes, finishing the job.
const (
	startFile    = "START"
	startMagic   = "KMBSTA"
	startVersion = 1
	startSize    = 6 + 2 + 8 + 8 + ChainSize + 4
)

// Start is where a log starts: its first op (which it may not hold yet),
// that op's first position, and the chain hash of the op before it.
type Start struct {
	Op       uint64
	Position uint64
	Prev     Chain
}

func (s Start) header() segmentHeader {
	return segmentHeader{firstOp: s.Op, firstPos: s.Position, prevChain: s.Prev}
}

func appendStart(dst []byte, s Start) []byte {
	start := len(dst)
	dst = append(dst, startMagic...)
	dst = binary.LittleEndian.AppendUint16(dst, startVersion)
	dst = binary.LittleEndian.AppendUint64(dst, s.Op)
	dst = binary.LittleEndian.AppendUint64(dst, s.Position)
	dst = append(dst, s.Prev[:]...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

func decodeStart(b []byte) (Start, error) {
	if len(b) != startSize {
		return Start{}, fmt.Errorf("%d bytes, want %d", len(b), startSize)
	}
	if crc32.Checksum(b[:startSize-4], castagnoli) != binary.LittleEndian.Uint32(b[startSize-4:]) {
		return Start{}, errors.New("checksum mismatch")
	}
	if string(b[:6]) != startMagic || binary.LittleEndian.Uint16(b[6:]) != startVersion {
		return Start{}, errors.New("bad magic or unknown version")
	}
	s := Start{Op: binary.LittleEndian.Uint64(b[8:]), Position: binary.LittleEndian.Uint64(b[16:]), Prev: Chain(b[24:])}
	if s.Op == 0 || s.Position == 0 {
		return Start{}, fmt.Errorf("first op %d, first position %d: both start at 1", s.Op, s.Position)
	}
	return s, nil
}

// readStart returns the recorded start, or op 1 when there is none.
func readStart(fsys FS, dir string) (Start, error) {
	origin := Start{Op: 1, Position: 1}
	f, err := fsys.OpenFile(filepath.Join(dir, startFile), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return origin, nil
	}
	if err != nil {
		return origin, fmt.Errorf("log: %w", err)
	}
	defer f.Close()
	b := make([]byte, startSize+1)
	n, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return origin, fmt.Errorf("log: read %s: %w", startFile, err)
	}
	s, err := decodeStart(b[:n])
	if err != nil {
		return origin, fmt.Errorf("log: %s in %s: %w: %w", startFile, dir, ErrCorrupt, err)
	}
	return s, nil
}

// writeStart records s durably.
func (l *Log) writeStart(s Start) error {
	path := filepath.Join(l.dir, startFile)
	tmp := path + ".tmp"
	f, err := l.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("log: write %s: %w", startFile, err)
	}
	_, err = f.WriteAt(appendStart(nil, s), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, path)
	}
	if err != nil {
		l.fs.Remove(tmp)
		return fmt.Errorf("log: write %s: %w", startFile, err)
	}
	l.dirty = true
	return l.syncDir()
}

// Start returns where the log starts: the first op it holds or, when it
// holds none, the op its first append must be.
func (l *Log) Start() Start {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.segs) == 0 {
		return Start{}
	}
	h := l.segs[0].segmentHeader
	return Start{Op: h.firstOp, Position: h.firstPos, Prev: h.prevChain}
}

// ChainAt returns the chain hash of op: of an op the log holds, or of the
// op just before its start (which a segment header records).
func (l *Log) ChainAt(op uint64) (Chain, error) {
	if s := l.Start(); op+1 == s.Op {
		return s.Prev, nil
	}
	o, err := l.Read(op)
	if err != nil {
		return Chain{}, err
	}
	return o.Chain, nil
}

// RemoveBefore deletes every whole segment whose ops are all below op, and
// returns how many it deleted and their bytes. The active segment always
// stays, so the log keeps its last ops. It records the new start durably
// (START) before deleting anything, and syncs the directory after, so
// that a crash leaves either the old log or one starting at a segment
// boundary at or below op. Readers of the deleted ops get ErrNotFound;
// FirstOp and Start move up. Writer only.
func (l *Log) RemoveBefore(op uint64) (segments int, bytes int64, err error) {
	if err := l.usableWhilePending(); err != nil {
		return 0, 0, err
	}
	keep := 0
	for keep+1 < len(l.segs) && l.segs[keep+1].firstOp <= op {
		keep++
	}
	if keep == 0 {
		return 0, 0, nil
	}
	h := l.segs[keep].segmentHeader
	if err := l.writeStart(Start{Op: h.firstOp, Position: h.firstPos, Prev: h.prevChain}); err != nil {
		return 0, 0, l.fail(err)
	}
	l.barrier.Lock()
	l.mu.Lock()
	removed := append([]*segment(nil), l.segs[:keep]...)
	l.segs = append(l.segs[:0:0], l.segs[keep:]...)
	var kept []Damage
	for _, d := range l.damage {
		if d.FirstOp >= h.firstOp {
			kept = append(kept, d)
		}
	}
	l.damage = kept
	if l.firstOp.Load() != 0 {
		l.firstOp.Store(h.firstOp)
	}
	l.mu.Unlock()
	l.barrier.Unlock()
	for _, s := range removed {
		s.f.Close()
		if err := l.removeSegmentFiles(s); err != nil {
			return segments, bytes, l.fail(err)
		}
		segments++
		bytes += s.size
		l.size.Add(-s.size)
	}
	if err := l.syncDir(); err != nil {
		return segments, bytes, err
	}
	l.logger.Info("log segments removed below the retained start",
		"segments", segments, "bytes", bytes, "first_op", h.firstOp, "first_position", h.firstPos)
	return segments, bytes, nil
}

// RemovalStart returns the first op the log would start at after
// RemoveBefore(op): the first op of the newest segment, other than the
// active one's successors, that starts at or below op; the current start
// when nothing would go. The caller reads the op before it (for the
// replica's log base) while it is still there. Writer only.
func (l *Log) RemovalStart(op uint64) uint64 {
	if len(l.segs) == 0 {
		return 0
	}
	keep := 0
	for keep+1 < len(l.segs) && l.segs[keep+1].firstOp <= op {
		keep++
	}
	return l.segs[keep].firstOp
}

// FirstOpWithin returns the op to remove before (RemoveBefore) so that
// the segments left take at most bytes on disk: the first op of the
// oldest segment that, with every newer one, fits. The active segment
// always stays, so when it alone is larger its first op is returned.
// When the whole log fits, the current start. Writer only (segment sizes
// are the writer's).
func (l *Log) FirstOpWithin(bytes int64) uint64 {
	if len(l.segs) == 0 {
		return 0
	}
	i := len(l.segs) - 1
	total := l.segs[i].size
	for i > 0 && total+l.segs[i-1].size <= bytes {
		i--
		total += l.segs[i].size
	}
	return l.segs[i].firstOp
}

// removeSegmentFiles deletes a segment and its index.
func (l *Log) removeSegmentFiles(s *segment) error {
	if err := l.removeIndex(s); err != nil {
		return err
	}
	if err := l.fs.Remove(s.path); err != nil {
		return fmt.Errorf("log: remove segment %s: %w", s.name, err)
	}
	l.dirty = true
	return nil
}

// Reset discards every op and makes the log an empty one that starts at
// s: its next append must be op s.Op at position s.Position, chaining
// from s.Prev. A replica that installs a checkpoint of op s.Op-1 uses it.
// The old segments go newest first, then the start is recorded and the
// new segment created, each step durable, so a crash part way leaves a
// prefix of the old log or the new empty one. Writer only.
func (l *Log) Reset(s Start) error {
	if err := l.usable(); err != nil {
		return err
	}
	if s.Op == 0 || s.Position == 0 {
		return fmt.Errorf("log: reset to op %d, position %d: both start at 1", s.Op, s.Position)
	}
	l.barrier.Lock()
	l.mu.Lock()
	old := l.segs
	l.segs = nil
	l.damage = nil
	l.durableOp.Store(0)
	l.firstOp.Store(0)
	l.mu.Unlock()
	l.barrier.Unlock()
	for i := len(old) - 1; i >= 0; i-- {
		o := old[i]
		o.f.Close()
		if err := l.removeSegmentFiles(o); err != nil {
			return l.fail(err)
		}
		l.size.Add(-o.size)
	}
	if err := l.syncDir(); err != nil {
		return err
	}
	if err := l.writeStart(s); err != nil {
		return l.fail(err)
	}
	seg, err := createSegment(l.fs, l.dir, s.header())
	if err != nil {
		return l.fail(err)
	}
	l.mu.Lock()
	l.segs = []*segment{seg}
	l.mu.Unlock()
	l.active = seg
	l.size.Add(seg.size)
	l.dirty = true
	l.nextOp, l.nextPos, l.prev = s.Op, s.Position, s.Prev
	l.lastOp.Store(s.Op - 1)
	l.lastPos.Store(s.Position - 1)
	if err := l.Sync(); err != nil {
		return err
	}
	l.durableOp.Store(s.Op - 1)
	l.logger.Info("log reset", "first_op", s.Op, "first_position", s.Position)
	return nil
}
