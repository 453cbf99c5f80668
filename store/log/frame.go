package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

const (
	// frameHeaderSize is the [u32 length][u32 CRC32C] prefix of a record.
	frameHeaderSize = 8

	// MaxRecordSize bounds the payload of one record. A frame claiming
	// more is corrupt, which keeps recovery from allocating (or skipping)
	// gigabytes on the strength of four damaged bytes.
	MaxRecordSize = 16 << 20
)

// castagnoli is CRC32C, hardware accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by errors about records or segment headers that
// fail verification.
var ErrCorrupt = errors.New("log: corrupt")

// ErrRecordTooLarge is returned by Append for an op whose encoding exceeds
// MaxRecordSize.
var ErrRecordTooLarge = errors.New("log: record too large")

// Reasons a record fails verification. They appear in RecoveryReport.Reason
// and in log lines, so they are fixed strings.
const (
	reasonShortRecord   = "short record"
	reasonBadLength     = "bad length"
	reasonChecksum      = "checksum mismatch"
	reasonDecode        = "undecodable op"
	reasonOpGap         = "non-contiguous op"
	reasonPositionGap   = "non-contiguous position"
	reasonChain         = "chain hash mismatch"
	reasonTornHeader    = "torn segment header"
	reasonShortHeader   = "short segment header"
	reasonHeaderInvalid = "segment header invalid"
)

// recordError describes why the bytes at some offset are not a valid
// record. Reason is one of the reason* constants.
type recordError struct {
	Reason string
	Err    error // optional detail
}

func (e *recordError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

// Unwrap makes every recordError match ErrCorrupt, and its detail (an
// ErrMalformedOp, say) match too.
func (e *recordError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrCorrupt}
	}
	return []error{ErrCorrupt, e.Err}
}

// appendFrame appends op as a framed record to dst. It returns dst
// unchanged and ErrRecordTooLarge if the payload would exceed
// MaxRecordSize.
func appendFrame(dst []byte, op *Op) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderSize)...)
	dst = AppendOp(dst, op)
	payload := dst[start+frameHeaderSize:]
	if len(payload) > MaxRecordSize {
		return dst[:start], fmt.Errorf("%w: op %d encodes to %d bytes, limit %d",
			ErrRecordTooLarge, op.Op, len(payload), MaxRecordSize)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst, nil
}

// appendEncodedFrame is appendFrame for an op whose encoding is enc. The
// length is checked against the op's, a cheap guard against an encoding
// of another op.
func appendEncodedFrame(dst []byte, op *Op, enc []byte) ([]byte, error) {
	if len(enc) != EncodedSize(op) {
		return dst, fmt.Errorf("log: op %d: an encoding of %d bytes, the op encodes to %d", op.Op, len(enc), EncodedSize(op))
	}
	if len(enc) > MaxRecordSize {
		return dst, fmt.Errorf("%w: op %d encodes to %d bytes, limit %d", ErrRecordTooLarge, op.Op, len(enc), MaxRecordSize)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(enc)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(enc, castagnoli))
	return append(dst, enc...), nil
}

// parseFrameHeader validates the length field of a frame header. avail is
// how many bytes follow the header in the file (or buffer); a length above
// it means the record was cut short.
func parseFrameHeader(h []byte, avail int64) (length int, sum uint32, err *recordError) {
	n := binary.LittleEndian.Uint32(h)
	sum = binary.LittleEndian.Uint32(h[4:])
	if n < minOpSize || n > MaxRecordSize {
		return 0, 0, &recordError{Reason: reasonBadLength, Err: fmt.Errorf("length %d outside [%d, %d]", n, minOpSize, MaxRecordSize)}
	}
	if int64(n) > avail {
		return 0, 0, &recordError{Reason: reasonShortRecord, Err: fmt.Errorf("length %d but only %d bytes follow", n, avail)}
	}
	return int(n), sum, nil
}

// checkPayload verifies a payload against the checksum in its frame.
func checkPayload(payload []byte, sum uint32) *recordError {
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return &recordError{Reason: reasonChecksum, Err: fmt.Errorf("crc32c %08x, header says %08x", got, sum)}
	}
	return nil
}

// decodeFrame verifies and decodes one whole frame, exactly len(b) bytes
// long.
func decodeFrame(b []byte) (Op, *recordError) {
	if len(b) < frameHeaderSize {
		return Op{}, &recordError{Reason: reasonShortRecord}
	}
	n, sum, rerr := parseFrameHeader(b, int64(len(b)-frameHeaderSize))
	if rerr != nil {
		return Op{}, rerr
	}
	if n != len(b)-frameHeaderSize {
		return Op{}, &recordError{Reason: reasonBadLength, Err: fmt.Errorf("length %d, index says %d", n, len(b)-frameHeaderSize)}
	}
	payload := b[frameHeaderSize:]
	if rerr := checkPayload(payload, sum); rerr != nil {
		return Op{}, rerr
	}
	op, err := DecodeOp(payload)
	if err != nil {
		return Op{}, &recordError{Reason: reasonDecode, Err: err}
	}
	return op, nil
}
