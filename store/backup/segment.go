package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	kmblog "github.com/kmb-db/kmb/store/log"
)

const (
	// segmentsPrefix is the folder of segment objects.
	segmentsPrefix = "segments/"
	// snapshotsPrefix is the folder of snapshots, one folder each.
	snapshotsPrefix = "snapshots/"
	// segmentSuffix ends every segment object's key.
	segmentSuffix = ".kseg.zst"
	// recordHeaderSize is the [u32 length][u32 CRC32C] before each payload.
	recordHeaderSize = 8

	// maxDecoderWindow bounds the zstd window a segment object may ask
	// for. The writer's window is at most 8 MiB; the bound leaves room
	// for a future writer and keeps a damaged frame header from making
	// the reader allocate gigabytes.
	maxDecoderWindow = 64 << 20
)

// ErrCorruptSegment is wrapped by every error about a segment object
// whose bytes fail verification: zstd, record length, checksum, op
// decoding, or op and position continuity.
var ErrCorruptSegment = errors.New("backup: corrupt segment")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SegmentKey is the key of the segment object holding ops first..last:
// segments/<first op, 20 digits>-<last op, 20 digits>.kseg.zst. Keys sort
// in op order.
func SegmentKey(first, last uint64) string {
	return fmt.Sprintf("%s%020d-%020d%s", segmentsPrefix, first, last, segmentSuffix)
}

// SnapshotID is the ID of the snapshot of ops 1..op, and the folder of
// its parts: snapshots/<op, 20 digits>.
func SnapshotID(op uint64) string { return fmt.Sprintf("%s%020d", snapshotsPrefix, op) }

// PartKey is the key of the part of snapshot SnapshotID(snapOp) that
// holds ops first..last: <snapshot id>/<first, 20 digits>-<last, 20
// digits>.kseg.zst. The part's content is a segment object's.
func PartKey(snapOp, first, last uint64) string {
	return fmt.Sprintf("%s/%020d-%020d%s", SnapshotID(snapOp), first, last, segmentSuffix)
}

// ParseSegmentKey returns the op range a segment key names, and false
// for any key that SegmentKey could not have produced.
func ParseSegmentKey(key string) (first, last uint64, ok bool) {
	s, ok := strings.CutPrefix(key, segmentsPrefix)
	if !ok {
		return 0, 0, false
	}
	if s, ok = strings.CutSuffix(s, segmentSuffix); !ok || len(s) != 41 || s[20] != '-' {
		return 0, 0, false
	}
	first, err1 := strconv.ParseUint(s[:20], 10, 64)
	last, err2 := strconv.ParseUint(s[21:], 10, 64)
	if err1 != nil || err2 != nil || first == 0 || last < first || SegmentKey(first, last) != key {
		return 0, 0, false
	}
	return first, last, true
}

// encoder compresses segment objects. EncodeAll on one encoder is safe
// concurrently, and with fixed options its output depends only on its
// input, so a retried write of the same ops produces the same bytes. The
// fastest level: on log records it compresses about as well as the
// default (4.2 against 4.1 in BenchmarkAppendSegment) at almost twice the
// speed, and the backup task shares the CPU with the write path.
var encoder = sync.OnceValue(func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(true))
	if err != nil {
		panic(err) // only for invalid options
	}
	return e
})

// encodeSegment returns the stored object for ops and its manifest entry.
// ops must be non-empty and contiguous; the caller checks.
func encodeSegment(ops []*kmblog.Op) ([]byte, SegmentInfo, error) {
	size := 0
	for _, op := range ops {
		size += recordHeaderSize + kmblog.EncodedSize(op)
	}
	f := kmblog.Frames{Data: make([]byte, 0, size), Ops: len(ops), First: *ops[0], Last: *ops[len(ops)-1]}
	for _, op := range ops {
		if n := kmblog.EncodedSize(op); n > kmblog.MaxRecordSize {
			return nil, SegmentInfo{}, fmt.Errorf("backup: op %d encodes to %d bytes, more than the %d a record holds", op.Op, n, kmblog.MaxRecordSize)
		}
		var err error
		if f.Data, err = kmblog.AppendFrame(f.Data, op); err != nil {
			return nil, SegmentInfo{}, err
		}
	}
	stored, info := encodeFrames(f), infoOf(f)
	sealInfo(&info, stored)
	return stored, info, nil
}

// infoOf is the manifest entry of a segment holding f, all but its
// stored size and digest.
func infoOf(f kmblog.Frames) SegmentInfo {
	return SegmentInfo{
		Name:                   SegmentKey(f.First.Op, f.Last.Op),
		FirstOp:                f.First.Op,
		LastOp:                 f.Last.Op,
		FirstPosition:          f.First.FirstPosition,
		LastPosition:           f.Last.LastPosition(),
		FirstTimestampUnixNano: f.First.Timestamp,
		LastTimestampUnixNano:  f.Last.Timestamp,
		Entries:                f.Last.LastPosition() + 1 - f.First.FirstPosition,
		RawBytes:               uint64(len(f.Data)),
	}
}

// encodeFrames compresses the log's frames into a segment object: the
// records of a segment object are the log's frames, byte for byte.
func encodeFrames(f kmblog.Frames) []byte {
	return encoder().EncodeAll(f.Data, make([]byte, 0, len(f.Data)/2+64))
}

// sealInfo completes info with the stored object's size and digest.
func sealInfo(info *SegmentInfo, stored []byte) {
	sum := sha256.Sum256(stored)
	info.StoredBytes = uint64(len(stored))
	info.SHA256 = hex.EncodeToString(sum[:])
}

// segmentDecoder reads the ops of segment objects one at a time, so that
// memory stays bounded by the largest record whatever the segment's size.
// One decoder reads any number of objects, one after the other; it is not
// safe for concurrent use.
type segmentDecoder struct {
	zr  *zstd.Decoder
	br  *bufio.Reader
	buf []byte

	// Of the object being read:
	off      uint64 // decompressed bytes consumed, for error offsets
	ops      uint64 // records read
	next     uint64 // op number the next record must hold, 0 before the first
	nextPos  uint64 // first position the next record must have
	entries  uint64
	firstOp  kmblog.Op // scalar fields of the first op read
	lastOp   kmblog.Op // scalar fields of the last op read
	lastSize int       // frame size of the last record read
}

func newSegmentDecoder() (*segmentDecoder, error) {
	zr, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1), // synchronous: no goroutines to leak or race
		zstd.WithDecoderMaxWindow(maxDecoderWindow),
		zstd.WithDecoderMaxMemory(maxDecoderWindow+2*kmblog.MaxRecordSize))
	if err != nil {
		return nil, err
	}
	return &segmentDecoder{zr: zr, br: bufio.NewReaderSize(nil, 256<<10)}, nil
}

// Close releases the zstd decoder.
func (d *segmentDecoder) Close() { d.zr.Close() }

// reset starts reading the stored object data.
func (d *segmentDecoder) reset(data []byte) error {
	if err := d.zr.Reset(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("%w: zstd: %v", ErrCorruptSegment, err)
	}
	d.br.Reset(d.zr)
	d.off, d.ops, d.next, d.nextPos, d.entries, d.lastSize = 0, 0, 0, 0, 0, 0
	d.firstOp, d.lastOp = kmblog.Op{}, kmblog.Op{}
	return nil
}

// next returns the next op of the object, or io.EOF after the last one.
// Every other error wraps ErrCorruptSegment and gives the offset of the
// bad record in the decompressed stream. An object without any record is
// corrupt: the writer never stores one.
func (d *segmentDecoder) nextOp() (kmblog.Op, error) {
	var hdr [recordHeaderSize]byte
	n, err := io.ReadFull(d.br, hdr[:])
	if err == io.EOF {
		if d.ops == 0 {
			return kmblog.Op{}, fmt.Errorf("%w: no records", ErrCorruptSegment)
		}
		return kmblog.Op{}, io.EOF
	}
	if err != nil {
		return kmblog.Op{}, d.corrupt(readFailure(err, n, "record header"))
	}
	size := binary.LittleEndian.Uint32(hdr[0:])
	sum := binary.LittleEndian.Uint32(hdr[4:])
	if size == 0 || size > kmblog.MaxRecordSize {
		return kmblog.Op{}, d.corrupt(fmt.Sprintf("record length %d outside 1..%d", size, kmblog.MaxRecordSize))
	}
	if cap(d.buf) < int(size) {
		d.buf = make([]byte, size)
	}
	payload := d.buf[:size]
	if n, err := io.ReadFull(d.br, payload); err != nil {
		return kmblog.Op{}, d.corrupt(readFailure(err, n, "record payload"))
	}
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return kmblog.Op{}, d.corrupt(fmt.Sprintf("record checksum mismatch (stored %08x, computed %08x)", sum, got))
	}
	op, err := decodeAnyOp(payload)
	if err != nil {
		return kmblog.Op{}, d.corrupt(err.Error())
	}
	if d.ops > 0 {
		if op.Op != d.next {
			return kmblog.Op{}, d.corrupt(fmt.Sprintf("record holds op %d, want op %d", op.Op, d.next))
		}
		if op.FirstPosition != d.nextPos {
			return kmblog.Op{}, d.corrupt(fmt.Sprintf("op %d starts at position %d, want %d", op.Op, op.FirstPosition, d.nextPos))
		}
	} else {
		if op.Op == 0 || op.FirstPosition == 0 {
			return kmblog.Op{}, d.corrupt(fmt.Sprintf("op %d at position %d: op numbers and positions start at 1", op.Op, op.FirstPosition))
		}
		d.firstOp = scalars(op)
	}
	d.lastOp = scalars(op)
	d.ops++
	d.next = op.Op + 1
	d.nextPos = op.LastPosition() + 1
	d.entries += uint64(len(op.Entries))
	d.lastSize = recordHeaderSize + int(size)
	d.off += uint64(d.lastSize)
	return op, nil
}

// decodeAnyOp decodes a record of a segment object. Repositories written
// before the log's format version 2 hold version-1 ops, which decode with
// the zero chain hash; a restore computes the hash.
func decodeAnyOp(payload []byte) (kmblog.Op, error) {
	if len(payload) > 0 && payload[0] == 1 {
		return kmblog.DecodeOpV1(payload)
	}
	return kmblog.DecodeOp(payload)
}

// scalars is op without its tenant and entries, kept for the summary of a
// segment.
func scalars(op kmblog.Op) kmblog.Op {
	op.Tenant, op.Principal, op.Entries = "", "", nil
	return op
}

func readFailure(err error, n int, what string) string {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Sprintf("truncated %s (%d bytes)", what, n)
	}
	return fmt.Sprintf("zstd stream broken in %s: %v", what, err)
}

func (d *segmentDecoder) corrupt(detail string) error {
	return fmt.Errorf("%w: record %d at decompressed offset %d: %s", ErrCorruptSegment, d.ops+1, d.off, detail)
}

// check compares what was read of the object so far, the whole of it
// after io.EOF, with its manifest entry, and describes each difference.
func (d *segmentDecoder) check(want SegmentInfo) []string {
	var diffs []string
	diff := func(what string, got, want any) {
		if got != want {
			diffs = append(diffs, fmt.Sprintf("%s is %v, the manifest says %v", what, got, want))
		}
	}
	diff("first op", d.firstOp.Op, want.FirstOp)
	diff("last op", d.lastOp.Op, want.LastOp)
	diff("first position", d.firstOp.FirstPosition, want.FirstPosition)
	diff("last position", d.nextPos-1, want.LastPosition)
	diff("first timestamp", d.firstOp.Timestamp, want.FirstTimestampUnixNano)
	diff("last timestamp", d.lastOp.Timestamp, want.LastTimestampUnixNano)
	diff("entry count", d.entries, want.Entries)
	diff("raw size", d.off, want.RawBytes)
	return diffs
}

// readObject reads the object s describes, checks its size and SHA-256
// against s, and calls fn with each op and its encoded size, in order,
// until fn returns false or an error. When fn saw every op, the object's
// content is checked against s too. It returns the object's size. Errors
// name the object; damage wraps ErrCorruptSegment.
func readObject(ctx context.Context, b Backend, dec *segmentDecoder, s SegmentInfo, fn func(op *kmblog.Op, size int) (bool, error)) (int, error) {
	data, err := b.Get(ctx, s.Name)
	if errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("object %s (ops %d..%d) is missing from the repository; run kmbd backup verify", s.Name, s.FirstOp, s.LastOp)
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", s.Name, err)
	}
	digest := sha256.Sum256(data)
	if got := hex.EncodeToString(digest[:]); uint64(len(data)) != s.StoredBytes || got != s.SHA256 {
		return len(data), fmt.Errorf("object %s (ops %d..%d) is corrupt: %d bytes with sha256 %s, the manifest says %d bytes with sha256 %s; run kmbd backup verify",
			s.Name, s.FirstOp, s.LastOp, len(data), got, s.StoredBytes, s.SHA256)
	}
	if err := dec.reset(data); err != nil {
		return len(data), fmt.Errorf("object %s: %w", s.Name, err)
	}
	for {
		op, err := dec.nextOp()
		if err == io.EOF {
			break
		}
		if err != nil {
			return len(data), fmt.Errorf("object %s: %w", s.Name, err)
		}
		if dec.ops == 1 && (op.Op != s.FirstOp || op.FirstPosition != s.FirstPosition) {
			return len(data), fmt.Errorf("object %s: %w: starts with op %d at position %d, the manifest says op %d at position %d",
				s.Name, ErrCorruptSegment, op.Op, op.FirstPosition, s.FirstOp, s.FirstPosition)
		}
		more, err := fn(&op, dec.lastSize)
		if err != nil || !more {
			return len(data), err
		}
	}
	if diffs := dec.check(s); len(diffs) > 0 {
		return len(data), fmt.Errorf("object %s: %w: %s", s.Name, ErrCorruptSegment, strings.Join(diffs, "; "))
	}
	return len(data), nil
}
