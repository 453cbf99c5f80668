package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/kmb-db/kmb/store/internal/strictbin"
)

// opVersion is the first byte of every encoded op. A decoder that meets a
// version it does not know refuses the record rather than guessing.
const opVersion = 1

// minOpSize is the smallest possible encoding of an op: the version byte,
// one byte for each of the six uvarints, the entry count, and the fixed
// 8-byte timestamp. Frames claiming less are corrupt.
const minOpSize = 1 + 1 + 1 + 8 + 1 + 1 + 1 + 1 + 1

// ErrMalformedOp is wrapped by every DecodeOp error.
var ErrMalformedOp = errors.New("log: malformed op")

// Entry is one key/value pair written by a client.
type Entry struct {
	Key   string
	Value []byte // raw JSON bytes as given by the client
}

// Op is one VSR operation: a batch of entries of a single tenant, the unit
// of replication and the unit of a log record.
type Op struct {
	Op            uint64 // op number: 1-based, contiguous in the log
	View          uint64 // view in which the op was prepared
	Timestamp     int64  // commit timestamp, Unix nanoseconds, assigned by the leader
	Tenant        string
	FirstPosition uint64 // log position of Entries[0]; global, 1-based, contiguous across ops
	ClientID      uint64 // for the at-most-once client table (may be 0)
	RequestID     uint64
	Entries       []Entry
}

// LastPosition is the position of the op's last entry. For an op without
// entries it is FirstPosition-1, so that the next op still starts at
// LastPosition()+1.
func (o *Op) LastPosition() uint64 {
	return o.FirstPosition + uint64(len(o.Entries)) - 1
}

// EncodedSize is len(AppendOp(nil, op)).
func EncodedSize(op *Op) int {
	n := 1 + strictbin.UvarintLen(op.Op) + strictbin.UvarintLen(op.View) + 8 +
		strictbin.UvarintLen(uint64(len(op.Tenant))) + len(op.Tenant) +
		strictbin.UvarintLen(op.FirstPosition) + strictbin.UvarintLen(op.ClientID) +
		strictbin.UvarintLen(op.RequestID) + strictbin.UvarintLen(uint64(len(op.Entries)))
	for i := range op.Entries {
		e := &op.Entries[i]
		n += strictbin.UvarintLen(uint64(len(e.Key))) + len(e.Key) +
			strictbin.UvarintLen(uint64(len(e.Value))) + len(e.Value)
	}
	return n
}

// AppendOp appends the version-1 encoding of op to dst:
//
//	u8       version (1)
//	uvarint  Op
//	uvarint  View
//	u64 LE   Timestamp (two's complement)
//	uvarint  len(Tenant), Tenant bytes
//	uvarint  FirstPosition
//	uvarint  ClientID
//	uvarint  RequestID
//	uvarint  len(Entries), then per entry:
//	         uvarint len(Key), Key bytes, uvarint len(Value), Value bytes
//
// It does not allocate when dst has room for EncodedSize(op) more bytes.
func AppendOp(dst []byte, op *Op) []byte {
	dst = append(dst, opVersion)
	dst = binary.AppendUvarint(dst, op.Op)
	dst = binary.AppendUvarint(dst, op.View)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(op.Timestamp))
	dst = binary.AppendUvarint(dst, uint64(len(op.Tenant)))
	dst = append(dst, op.Tenant...)
	dst = binary.AppendUvarint(dst, op.FirstPosition)
	dst = binary.AppendUvarint(dst, op.ClientID)
	dst = binary.AppendUvarint(dst, op.RequestID)
	dst = binary.AppendUvarint(dst, uint64(len(op.Entries)))
	for i := range op.Entries {
		e := &op.Entries[i]
		dst = binary.AppendUvarint(dst, uint64(len(e.Key)))
		dst = append(dst, e.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(e.Value)))
		dst = append(dst, e.Value...)
	}
	return dst
}

// DecodeOp decodes an op encoded by AppendOp. It is strict, so that every
// accepted input re-encodes to exactly the same bytes: it rejects unknown
// versions, non-minimal varints, lengths beyond the input and trailing
// bytes. It allocates nothing for rejected input and, for accepted input,
// three objects whose sizes are bounded by len(b).
//
// The returned op does not alias b. Its strings share one allocation and
// its values share another; each Value is capped so that appending to it
// cannot overwrite a neighbour. Zero-length values decode as nil, and an op
// without entries has nil Entries.
func DecodeOp(b []byte) (Op, error) {
	// Validate the whole record first, so that nothing is allocated for
	// input that is going to be rejected, then copy out of it.
	p, err := parseOp(b)
	if err != nil {
		return Op{}, err
	}
	op := p.op

	// The tenant and all keys go into one string...
	var sb strings.Builder
	sb.Grow(p.keyBytes)
	sb.Write(p.tenant)
	d := newDecoder(b)
	d.Rewind(p.entriesAt)
	for range p.entries {
		sb.Write(d.Bytes("key length"))
		d.Bytes("value length")
	}
	strs := sb.String()
	op.Tenant, strs = strs[:len(p.tenant)], strs[len(p.tenant):]

	// ... and all values into one byte slice.
	var values []byte
	if p.valueBytes > 0 {
		values = make([]byte, 0, p.valueBytes)
	}
	if p.entries > 0 {
		op.Entries = make([]Entry, p.entries)
	}
	d.Rewind(p.entriesAt)
	for i := range op.Entries {
		k := len(d.Bytes("key length"))
		op.Entries[i].Key, strs = strs[:k], strs[k:]
		if v := d.Bytes("value length"); len(v) > 0 {
			start := len(values)
			values = append(values, v...)
			op.Entries[i].Value = values[start:len(values):len(values)]
		}
	}
	return op, nil
}

// parsedOp is the result of validating an encoded op without copying it.
type parsedOp struct {
	op         Op     // scalar fields only; Tenant and Entries are unset
	tenant     []byte // aliases the input
	entries    uint64 // number of entries
	entriesAt  int    // offset of the first entry in the input
	keyBytes   int    // len(tenant) + total key bytes
	valueBytes int    // total value bytes
}

// parseOp validates b as an encoded op. It does not allocate unless it
// fails. Recovery uses it directly: it needs the op and position numbers of
// every record but none of the payload.
func parseOp(b []byte) (parsedOp, error) {
	// Checked here, so that the version byte below is always there.
	if len(b) == 0 {
		return parsedOp{}, fmt.Errorf("%w: empty", ErrMalformedOp)
	}
	d := newDecoder(b)
	if v := d.Byte("version"); v != opVersion {
		return parsedOp{}, fmt.Errorf("%w: unknown version %d", ErrMalformedOp, v)
	}
	var p parsedOp
	p.op.Op = d.Uvarint("op")
	p.op.View = d.Uvarint("view")
	p.op.Timestamp = int64(d.Fixed64("timestamp"))
	p.tenant = d.Bytes("tenant length")
	p.op.FirstPosition = d.Uvarint("first position")
	p.op.ClientID = d.Uvarint("client id")
	p.op.RequestID = d.Uvarint("request id")
	p.entries = d.Uvarint("entry count")
	// Every entry takes at least two bytes (two zero lengths), which
	// bounds the count by the input before anything is allocated.
	if d.Err() == nil && p.entries > uint64(d.Remaining()/2) {
		return parsedOp{}, fmt.Errorf("%w: entry count %d exceeds record", ErrMalformedOp, p.entries)
	}
	p.entriesAt = d.Offset()
	p.keyBytes = len(p.tenant)
	for i := uint64(0); i < p.entries && d.Err() == nil; i++ {
		p.keyBytes += len(d.Bytes("key length"))
		p.valueBytes += len(d.Bytes("value length"))
	}
	if err := d.Err(); err != nil {
		return parsedOp{}, err
	}
	if d.Offset() != len(b) {
		return parsedOp{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformedOp, len(b)-d.Offset())
	}
	return p, nil
}

// opErrors makes a decoder's errors wrap ErrMalformedOp.
var opErrors = &strictbin.Errors{Malformed: ErrMalformedOp, Input: "record"}

// newDecoder returns a strict decoder of an encoded op, b.
func newDecoder(b []byte) strictbin.Decoder {
	return strictbin.NewDecoder(b, opErrors)
}
