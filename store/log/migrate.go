package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// migratingExt names a segment being rewritten from format version 1. It
// is renamed over the version-1 segment once complete and synced, so a
// crash part way leaves every segment whole in one format or the other.
const migratingExt = ".migrating"

// needsMigration reports whether any segment of names is in format
// version 1.
func (l *Log) needsMigration(names []string) (bool, error) {
	for _, name := range names {
		v, err := l.segmentVersion(name)
		if err != nil {
			return false, err
		}
		if v == segmentVersionV1 {
			return true, nil
		}
	}
	return false, nil
}

func (l *Log) segmentVersion(name string) (uint16, error) {
	f, err := l.fs.OpenFile(filepath.Join(l.dir, name), os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("log: %w", err)
	}
	defer f.Close()
	var b [len(segmentMagic) + 2]byte
	if _, err := f.ReadAt(b[:], 0); err != nil && err != io.EOF {
		return 0, fmt.Errorf("log: read %s: %w", name, err)
	}
	return segmentVersionOf(b[:]), nil
}

// migrate rewrites a log written before format version 2 (ops without
// kind, principal or chain hash; segment headers without first position
// and chain hash) in the current format, segment by segment, computing
// every op's chain hash. Version-1 segments always follow version-2 ones
// (migration goes in op order), so a migration cut short by a crash
// resumes where it stopped.
//
// Version-1 segments are verified as version 1 recovered them: a bad
// record in the last segment is a torn tail and is dropped, with a WARN
// line; anywhere else migration refuses, changing nothing more.
func (l *Log) migrate(rep *RecoveryReport) error {
	if l.readOnly {
		return nil
	}
	entries, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), migratingExt) {
			if err := l.fs.Remove(filepath.Join(l.dir, e.Name())); err != nil {
				return fmt.Errorf("log: remove unfinished migration: %w", err)
			}
		}
	}
	names, err := listSegments(l.fs, l.dir)
	if err != nil {
		return err
	}
	if v1, err := l.needsMigration(names); err != nil || !v1 {
		return err
	}

	m := migration{l: l, next: segmentHeader{firstOp: 1, firstPos: 1}}
	for i, name := range names {
		v, err := l.segmentVersion(name)
		if err != nil {
			return err
		}
		switch v {
		case segmentVersion:
			if err := m.follow(name); err != nil {
				return err
			}
		case segmentVersionV1:
			if err := m.rewrite(name, i == len(names)-1); err != nil {
				return err
			}
			rep.Migrated++
		default:
			if i == len(names)-1 {
				// A torn header of the last segment: recovery decides.
				continue
			}
			return fmt.Errorf("log: segment %s: format version %d: migration needs versions 1 and 2 only", name, v)
		}
	}
	if err := l.dirFile.Sync(); err != nil {
		return fmt.Errorf("log: migrate: sync directory: %w", err)
	}
	l.logger.Info("log migrated to format version 2: every op now carries a chain hash",
		"dir", l.dir, "segments_migrated", rep.Migrated, "last_op", m.next.firstOp-1)
	return nil
}

// migration carries where the next segment must start.
type migration struct {
	l       *Log
	next    segmentHeader
	chainer Chainer
	buf     []byte
}

// follow moves past a segment already in version 2, reading its records
// for the op, position and chain hash it ends with.
func (m *migration) follow(name string) error {
	sc := newScanner(Start{Op: m.next.firstOp, Position: m.next.firstPos, Prev: m.next.prevChain})
	// Read whole (as a last segment is): migration trusts no index.
	seg, damage, err := m.l.recoverSegment(name, sc, true)
	if err != nil {
		return fmt.Errorf("log: migrate: %w", err)
	}
	seg.f.Close()
	if len(damage) > 0 {
		return fmt.Errorf("log: migrate: segment %s: %s", name, damage[0])
	}
	m.next = segmentHeader{firstOp: sc.nextOp, firstPos: sc.nextPos, prevChain: sc.prev}
	return nil
}

// rewrite converts one version-1 segment.
func (m *migration) rewrite(name string, last bool) error {
	l := m.l
	path := filepath.Join(l.dir, name)
	b, err := readFile(l.fs, path)
	if err != nil {
		return err
	}
	if len(b) < segmentHeaderSizeV1 ||
		binary.LittleEndian.Uint32(b[segmentHeaderSizeV1-4:]) != crc32.Checksum(b[:segmentHeaderSizeV1-4], castagnoli) {
		if last {
			return nil // torn while being created: recovery removes it
		}
		return fmt.Errorf("log: migrate: segment %s: %w: bad version-1 header", name, ErrCorrupt)
	}
	if first := binary.LittleEndian.Uint64(b[8:]); first != m.next.firstOp {
		return fmt.Errorf("log: migrate: segment %s: %w: starts at op %d, want op %d", name, ErrCorrupt, first, m.next.firstOp)
	}
	out := appendSegmentHeader(m.buf[:0], m.next)
	next := m.next
	off := segmentHeaderSizeV1
	for off < len(b) {
		op, size, rerr := decodeV1Frame(b[off:])
		if rerr == nil && (op.Op != next.firstOp || op.FirstPosition != next.firstPos) {
			rerr = &recordError{Reason: reasonOpGap, Err: fmt.Errorf("record holds op %d at position %d, want op %d at %d", op.Op, op.FirstPosition, next.firstOp, next.firstPos)}
		}
		if rerr != nil {
			if !last {
				return fmt.Errorf("log: migrate: segment %s, offset %d: %w; it is not the last segment, so this is not a torn write: refusing to start", name, off, rerr)
			}
			l.logger.Warn("log tail truncated", "segment", name, "offset", off, "bytes_cut", len(b)-off, "reason", rerr.Reason, "detail", rerr.Error())
			break
		}
		op.Chain = m.chainer.Op(next.prevChain, &op)
		if out, err = appendFrame(out, &op); err != nil {
			return err
		}
		next = segmentHeader{firstOp: op.Op + 1, firstPos: op.LastPosition() + 1, prevChain: op.Chain}
		off += size
	}
	m.buf = out

	tmp := path + migratingExt
	f, err := l.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("log: migrate: %w", err)
	}
	_, err = f.WriteAt(out, 0)
	if err == nil {
		err = f.Datasync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("log: migrate segment %s: %w", name, err)
	}
	l.logger.Info("log segment migrated to format version 2", "segment", name, "first_op", m.next.firstOp, "last_op", next.firstOp-1)
	m.next = next
	return nil
}

// decodeV1Frame decodes the version-1 record at the start of b.
func decodeV1Frame(b []byte) (Op, int, *recordError) {
	if len(b) < frameHeaderSize {
		return Op{}, 0, &recordError{Reason: reasonShortRecord}
	}
	n := binary.LittleEndian.Uint32(b)
	sum := binary.LittleEndian.Uint32(b[4:])
	if n < minOpSizeV1 || n > MaxRecordSize {
		return Op{}, 0, &recordError{Reason: reasonBadLength, Err: fmt.Errorf("length %d outside [%d, %d]", n, minOpSizeV1, MaxRecordSize)}
	}
	if int(n) > len(b)-frameHeaderSize {
		return Op{}, 0, &recordError{Reason: reasonShortRecord}
	}
	payload := b[frameHeaderSize : frameHeaderSize+int(n)]
	if rerr := checkPayload(payload, sum); rerr != nil {
		return Op{}, 0, rerr
	}
	op, err := DecodeOpV1(payload)
	if err != nil {
		return Op{}, 0, &recordError{Reason: reasonDecode, Err: err}
	}
	return op, frameHeaderSize + int(n), nil
}

// readFile reads a whole file of fsys.
func readFile(fsys FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("log: read %s: %w", path, err)
	}
	return b, nil
}
