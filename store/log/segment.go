package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	segmentMagic   = "KMBSEG"
	segmentVersion = 2
	segmentExt     = ".seg"

	// segmentHeaderSize is magic(6) + u16 version + u64 first op + u64
	// first position + the 32-byte chain hash of the op before the first +
	// u32 CRC32C of the preceding 56 bytes. Untyped, for use as int and
	// int64.
	segmentHeaderSize = 6 + 2 + 8 + 8 + ChainSize + 4

	// segmentVersionV1 and segmentHeaderSizeV1 describe the header of
	// segments written before version 2 (magic, version, first op, CRC),
	// which only migration reads.
	segmentVersionV1    = 1
	segmentHeaderSizeV1 = 6 + 2 + 8 + 4
)

// segmentName is the file name of the segment whose first op is firstOp.
// Zero padding makes lexical order equal op order.
func segmentName(firstOp uint64) string {
	return fmt.Sprintf("%020d%s", firstOp, segmentExt)
}

// parseSegmentName returns the first op encoded in a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// segmentHeader is what a segment's header says about where it starts.
// A segment is verifiable on its own: its first record must be op firstOp
// at position firstPos, and chain from prevChain.
type segmentHeader struct {
	firstOp   uint64
	firstPos  uint64
	prevChain Chain // chain hash of op firstOp-1; zero for op 1
}

func appendSegmentHeader(dst []byte, h segmentHeader) []byte {
	start := len(dst)
	dst = append(dst, segmentMagic...)
	dst = binary.LittleEndian.AppendUint16(dst, segmentVersion)
	dst = binary.LittleEndian.AppendUint64(dst, h.firstOp)
	dst = binary.LittleEndian.AppendUint64(dst, h.firstPos)
	dst = append(dst, h.prevChain[:]...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// segmentVersionOf returns the format version a segment header claims,
// from its magic and version fields alone, or 0 when b does not start
// like a segment header.
func segmentVersionOf(b []byte) uint16 {
	if len(b) < len(segmentMagic)+2 || string(b[:len(segmentMagic)]) != segmentMagic {
		return 0
	}
	return binary.LittleEndian.Uint16(b[len(segmentMagic):])
}

// decodeSegmentHeader verifies a segment header. A torn header (short or
// failing its checksum) is reported with a torn/short reason; a header that
// checks out but has an unknown version is invalid, never torn, so that a
// newer format is refused rather than deleted.
func decodeSegmentHeader(b []byte) (h segmentHeader, err *recordError) {
	if len(b) < segmentHeaderSize {
		return h, &recordError{Reason: reasonShortHeader, Err: fmt.Errorf("%d of %d bytes", len(b), segmentHeaderSize)}
	}
	body := b[:segmentHeaderSize-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[segmentHeaderSize-4:]); got != want {
		return h, &recordError{Reason: reasonTornHeader, Err: fmt.Errorf("crc32c %08x, header says %08x", got, want)}
	}
	if string(body[:len(segmentMagic)]) != segmentMagic {
		return h, &recordError{Reason: reasonHeaderInvalid, Err: fmt.Errorf("bad magic %q", body[:len(segmentMagic)])}
	}
	if v := binary.LittleEndian.Uint16(body[len(segmentMagic):]); v != segmentVersion {
		return h, &recordError{Reason: reasonHeaderInvalid, Err: fmt.Errorf("unknown format version %d", v)}
	}
	at := len(segmentMagic) + 2
	h.firstOp = binary.LittleEndian.Uint64(body[at:])
	h.firstPos = binary.LittleEndian.Uint64(body[at+8:])
	h.prevChain = Chain(body[at+16:])
	if h.firstOp == 0 || h.firstPos == 0 {
		return h, &recordError{Reason: reasonHeaderInvalid, Err: fmt.Errorf("first op %d, first position %d: both start at 1", h.firstOp, h.firstPos)}
	}
	return h, nil
}

// segment is one file of the log.
//
// Fields marked (writer) are touched only by the writer goroutine. Fields
// marked (mu) are read by readers under Log.mu.RLock and written by the
// writer under Log.mu.Lock; the writer may read them without the lock.
type segment struct {
	name string
	path string
	segmentHeader
	f File

	// offsets[i] is the file offset of the frame of op firstOp+i, for the
	// ops that are durable and visible to readers. end is the offset just
	// past the last of them, which gives the last op's frame length.
	offsets []int64 // (mu)
	end     int64   // (mu)
	// firstTS is the commit time of the segment's first op, 0 while it
	// has none. Commit times increase along the log, so the segments'
	// first times are ordered too: a time range maps to the segments it
	// overlaps without reading them. (mu)
	firstTS int64

	// staged are the offsets of ops appended but not yet synced; Sync
	// moves them to offsets. size is the current file size.
	staged []int64 // (writer)
	size   int64   // (writer)
	dirty  bool    // (writer) written since the last fsync
	writes uint64  // (writer) writes since the segment was opened
}

// ops is the number of ops in the segment, synced or not (writer only).
func (s *segment) ops() int { return len(s.offsets) + len(s.staged) }

// offsetOf is the frame offset of the i-th op of the segment (writer only).
func (s *segment) offsetOf(i int) int64 {
	if i < len(s.offsets) {
		return s.offsets[i]
	}
	return s.staged[i-len(s.offsets)]
}

// createSegment creates a new segment file holding only its header. It does
// not sync: the caller decides when the file and directory must be durable.
func createSegment(fsys FS, dir string, h segmentHeader) (*segment, error) {
	name := segmentName(h.firstOp)
	path := filepath.Join(dir, name)
	// O_EXCL: a segment is never silently replaced.
	f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log: create segment: %w", err)
	}
	if _, err := f.WriteAt(appendSegmentHeader(nil, h), 0); err != nil {
		f.Close()
		fsys.Remove(path) // nothing of it was synced, nor is it in the index
		return nil, fmt.Errorf("log: write segment header %s: %w", name, err)
	}
	return &segment{
		name:          name,
		path:          path,
		segmentHeader: h,
		f:             f,
		end:           int64(segmentHeaderSize),
		size:          int64(segmentHeaderSize),
		dirty:         true,
	}, nil
}
