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
	"strings"
)

// A sealed segment's index is a sidecar file, %020d.idx next to its
// %020d.seg, written when the segment is sealed (at roll). It lets Open
// trust the segment without reading it: Open checks the index's checksum,
// that it describes the segment's header, and that the segment's size is
// the one it records, and then takes the offsets of the records and the
// state after the last one (op, position, chain hash, commit time) from
// it. Only the last segment, and sealed segments without a valid index,
// are read record by record.
//
// The index is a cache of what the segment holds, never the authority: a
// missing, torn or mismatched index only costs a scan of its segment,
// which then writes it again. Its content is therefore not fsynced; what
// matters is that an index never describes different bytes of the same
// size, so it is removed, durably, before its segment is cut or written
// to again (TruncateAfter into a sealed segment).
//
//	index, format version 1:
//	  [6]byte  magic "KMBIDX"
//	  u16 LE   version (1)
//	  u64 LE   first op      } equal to the segment header's
//	  u64 LE   first position}
//	  [32]byte prev chain    }
//	  u64 LE   segment size in bytes, header included
//	  u64 LE   ops in the segment (>= 1)
//	  u64 LE   next position: the position after the last op's entries
//	  [32]byte chain hash of the last op
//	  i64 LE   commit time of the first op, Unix ns
//	  i64 LE   commit time of the last op
//	  uvarint  frame length (8 + payload) of each op, in order
//	  u32 LE   CRC32C of everything before it
//
// The frame lengths must add up to the segment size less its header.
const (
	indexMagic   = "KMBIDX"
	indexVersion = 1
	indexExt     = ".idx"

	indexFixedSize = 6 + 2 + 8 + 8 + ChainSize + 8 + 8 + 8 + ChainSize + 8 + 8
	// maxIndexSize bounds what loadIndex reads: the most frames a segment
	// can hold, at three bytes of length each.
	maxIndexSize = (MaxSegmentSizeBytes+MaxRecordSize)/(frameHeaderSize+minOpSize)*3 + indexFixedSize + 4
)

// segmentIndex is what a sealed segment's index says.
type segmentIndex struct {
	segmentHeader
	size            int64
	nextPos         uint64
	lastChain       Chain
	firstTS, lastTS int64
	offsets         []int64 // of each op's frame
}

func (x *segmentIndex) ops() int { return len(x.offsets) }

// indexName is the file name of the index of segment name.
func indexName(segment string) string {
	return strings.TrimSuffix(segment, segmentExt) + indexExt
}

// appendIndex encodes x. offsets must be those of a segment of x.size
// bytes.
func appendIndex(dst []byte, x *segmentIndex) []byte {
	start := len(dst)
	dst = append(dst, indexMagic...)
	dst = binary.LittleEndian.AppendUint16(dst, indexVersion)
	dst = binary.LittleEndian.AppendUint64(dst, x.firstOp)
	dst = binary.LittleEndian.AppendUint64(dst, x.firstPos)
	dst = append(dst, x.prevChain[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(x.size))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(x.offsets)))
	dst = binary.LittleEndian.AppendUint64(dst, x.nextPos)
	dst = append(dst, x.lastChain[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(x.firstTS))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(x.lastTS))
	for i, off := range x.offsets {
		end := x.size
		if i+1 < len(x.offsets) {
			end = x.offsets[i+1]
		}
		dst = binary.AppendUvarint(dst, uint64(end-off))
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decodeIndex decodes and checks an index: checksum, version, a frame
// length per op within the record bounds, lengths that fill the segment
// exactly. It does not compare it with the segment; the caller does.
func decodeIndex(b []byte) (*segmentIndex, error) {
	if len(b) < indexFixedSize+4 {
		return nil, fmt.Errorf("index of %d bytes, shorter than any", len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("index checksum mismatch")
	}
	if string(body[:6]) != indexMagic {
		return nil, fmt.Errorf("bad index magic %q", body[:6])
	}
	if v := binary.LittleEndian.Uint16(body[6:]); v != indexVersion {
		return nil, fmt.Errorf("unknown index version %d", v)
	}
	at := 8
	u64 := func() uint64 { v := binary.LittleEndian.Uint64(body[at:]); at += 8; return v }
	chain := func() Chain { c := Chain(body[at:]); at += ChainSize; return c }
	x := &segmentIndex{}
	x.firstOp = u64()
	x.firstPos = u64()
	x.prevChain = chain()
	size := u64()
	count := u64()
	x.nextPos = u64()
	x.lastChain = chain()
	x.firstTS = int64(u64())
	x.lastTS = int64(u64())
	rest := body[at:]
	if size > MaxSegmentSizeBytes+MaxRecordSize+frameHeaderSize+segmentHeaderSize || count == 0 || count > uint64(len(rest)) {
		return nil, fmt.Errorf("index of a segment of %d bytes with %d ops: out of bounds", size, count)
	}
	x.size = int64(size)
	x.offsets = make([]int64, count)
	off := int64(segmentHeaderSize)
	for i := range x.offsets {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n < frameHeaderSize+minOpSize || n > frameHeaderSize+MaxRecordSize {
			return nil, fmt.Errorf("index: bad frame length of op %d", x.firstOp+uint64(i))
		}
		rest = rest[k:]
		x.offsets[i] = off
		off += int64(n)
	}
	if len(rest) != 0 || off != x.size {
		return nil, fmt.Errorf("index: frame lengths add up to %d bytes, the segment has %d", off, x.size)
	}
	if x.firstOp == 0 || x.firstPos == 0 || x.nextPos < x.firstPos {
		return nil, fmt.Errorf("index: first op %d, first position %d, next position %d", x.firstOp, x.firstPos, x.nextPos)
	}
	return x, nil
}

// loadIndex returns the index of segment s, whose header and file size
// are known, when one exists that describes it; nil otherwise (the
// segment must then be scanned).
func (l *Log) loadIndex(s *segment, size int64) *segmentIndex {
	f, err := l.fs.OpenFile(filepath.Join(l.dir, indexName(s.name)), os.O_RDONLY, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() > maxIndexSize {
		return nil
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil
	}
	x, err := decodeIndex(b)
	if err != nil {
		l.logger.Warn("log segment index invalid: the segment is read instead", "segment", s.name, "reason", err.Error())
		return nil
	}
	if x.segmentHeader != s.segmentHeader || x.size != size {
		l.logger.Warn("log segment index does not describe its segment: the segment is read instead",
			"segment", s.name, "index_size", x.size, "segment_size", size)
		return nil
	}
	return x
}

// writeIndex writes the index of sealed segment s. It is a cache: a
// failure is logged and costs a scan at the next Open, nothing else.
// Segments holding damaged ops get none (their offsets are placeholders).
func (l *Log) writeIndex(s *segment, nextPos uint64, lastChain Chain, firstTS, lastTS int64) {
	if l.readOnly || s.ops() == 0 {
		return
	}
	for _, d := range l.damage {
		if d.Segment == s.name {
			return
		}
	}
	x := segmentIndex{segmentHeader: s.segmentHeader, size: s.size, nextPos: nextPos, lastChain: lastChain,
		firstTS: firstTS, lastTS: lastTS, offsets: make([]int64, s.ops())}
	for i := range x.offsets {
		x.offsets[i] = s.offsetOf(i)
	}
	path := filepath.Join(l.dir, indexName(s.name))
	tmp := path + ".tmp"
	err := func() error {
		f, err := l.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(appendIndex(nil, &x), 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return l.fs.Rename(tmp, path)
	}()
	if err != nil {
		l.fs.Remove(tmp)
		l.logger.Warn("log segment index not written: the segment will be read at the next start", "segment", s.name, "error", err.Error())
		return
	}
	l.dirty = true
}

// removeIndex removes segment s's index, if any, before s is cut or
// written to again; the caller syncs the directory before that.
func (l *Log) removeIndex(s *segment) error {
	err := l.fs.Remove(filepath.Join(l.dir, indexName(s.name)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("log: remove index of %s: %w", s.name, err)
	}
	if err == nil {
		l.dirty = true
	}
	return nil
}
