package log

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/kmb-db/kmb/store/internal/strictbin"
)

// opVersion is the first byte of every encoded op. A decoder that meets a
// version it does not know refuses the record rather than guessing.
// Version 1 (no kind, principal or chain hash) is read only to migrate a
// log written before version 2 (see DecodeOpV1).
const (
	opVersion   = 2
	opVersionV1 = 1
)

// ChainSize is the length of an op's chain hash (SHA-256).
const ChainSize = sha256.Size

// minOpSize is the smallest possible encoding of an op: the version byte,
// one byte for each of the seven uvarints and two lengths, the kind, the
// fixed 8-byte timestamp and the chain hash. Frames claiming less are
// corrupt.
const minOpSize = 1 + 1 + 1 + 8 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + ChainSize

// minOpSizeV1 is minOpSize for version 1: no kind, principal or chain.
const minOpSizeV1 = 1 + 1 + 1 + 8 + 1 + 1 + 1 + 1 + 1

// ErrMalformedOp is wrapped by every DecodeOp error.
var ErrMalformedOp = errors.New("log: malformed op")

// Entry is one key/value pair written by a client.
type Entry struct {
	Key   string
	Value []byte // raw JSON bytes as given by the client
}

// Kind says what an op is for. Only KindData ops belong to a tenant; the
// others are the cluster's own (system ops), kept in the log so that they
// are replicated, ordered and in the audit trail like everything else.
type Kind uint8

// Op kinds. The numbers are part of the log format: never reuse one.
const (
	// KindData is a tenant's batch of entries.
	KindData Kind = 0
	// KindMarker has no entries: it commits a point in time (the backup
	// task moves its checkpoint with them while no client writes).
	KindMarker Kind = 1
	// KindAdmin records an administrative action (a token reload, a
	// backup paused or resumed, a restore): one entry whose key names the
	// action and whose value is a JSON object describing it.
	KindAdmin Kind = 2
	// KindConfig records a change of the cluster's configuration.
	KindConfig Kind = 3

	maxKind = KindConfig
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindMarker:
		return "marker"
	case KindAdmin:
		return "admin"
	case KindConfig:
		return "config"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Chain is an op's chain hash: SHA-256 over the previous op's chain hash
// and the op's own canonical encoding (see ChainHash). It makes the log
// tamper-evident: changing, dropping, inserting or reordering any op
// changes the chain hash of every op after it.
type Chain [ChainSize]byte

// Op is one VSR operation: a batch of entries of a single tenant (or a
// system op, see Kind), the unit of replication and the unit of a log
// record.
type Op struct {
	Op            uint64 // op number: 1-based, contiguous in the log
	View          uint64 // view in which the op was prepared
	Timestamp     int64  // commit timestamp, Unix nanoseconds, assigned by the leader
	Kind          Kind
	Tenant        string // empty for system ops
	FirstPosition uint64 // log position of Entries[0]; global, 1-based, contiguous across ops
	ClientID      uint64 // for the at-most-once client table (may be 0)
	RequestID     uint64
	Principal     string // who wrote it: the authenticated client's name, or empty
	Entries       []Entry
	Chain         Chain // ChainHash of the previous op's Chain and this op
}

// LastPosition is the position of the op's last entry. For an op without
// entries it is FirstPosition-1, so that the next op still starts at
// LastPosition()+1.
func (o *Op) LastPosition() uint64 {
	return o.FirstPosition + uint64(len(o.Entries)) - 1
}

// EncodedSize is len(AppendOp(nil, op)).
func EncodedSize(op *Op) int {
	n := 1 + strictbin.UvarintLen(op.Op) + strictbin.UvarintLen(op.View) + 8 + 1 +
		strictbin.UvarintLen(uint64(len(op.Tenant))) + len(op.Tenant) +
		strictbin.UvarintLen(op.FirstPosition) + strictbin.UvarintLen(op.ClientID) +
		strictbin.UvarintLen(op.RequestID) +
		strictbin.UvarintLen(uint64(len(op.Principal))) + len(op.Principal) +
		strictbin.UvarintLen(uint64(len(op.Entries))) + ChainSize
	for i := range op.Entries {
		e := &op.Entries[i]
		n += strictbin.UvarintLen(uint64(len(e.Key))) + len(e.Key) +
			strictbin.UvarintLen(uint64(len(e.Value))) + len(e.Value)
	}
	return n
}

// AppendOp appends the version-2 encoding of op to dst:
//
//	u8       version (2)
//	uvarint  Op
//	uvarint  View
//	u64 LE   Timestamp (two's complement)
//	u8       Kind
//	uvarint  len(Tenant), Tenant bytes
//	uvarint  FirstPosition
//	uvarint  ClientID
//	uvarint  RequestID
//	uvarint  len(Principal), Principal bytes
//	uvarint  len(Entries), then per entry:
//	         uvarint len(Key), Key bytes, uvarint len(Value), Value bytes
//	[32]byte Chain
//
// Everything before Chain is the op's canonical encoding, the bytes its
// chain hash covers. It does not allocate when dst has room for
// EncodedSize(op) more bytes.
func AppendOp(dst []byte, op *Op) []byte {
	dst = appendCanonical(dst, op)
	return append(dst, op.Chain[:]...)
}

// appendCanonical appends the encoding of op without its chain hash.
func appendCanonical(dst []byte, op *Op) []byte {
	dst = append(dst, opVersion)
	dst = binary.AppendUvarint(dst, op.Op)
	dst = binary.AppendUvarint(dst, op.View)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(op.Timestamp))
	dst = append(dst, byte(op.Kind))
	dst = binary.AppendUvarint(dst, uint64(len(op.Tenant)))
	dst = append(dst, op.Tenant...)
	dst = binary.AppendUvarint(dst, op.FirstPosition)
	dst = binary.AppendUvarint(dst, op.ClientID)
	dst = binary.AppendUvarint(dst, op.RequestID)
	dst = binary.AppendUvarint(dst, uint64(len(op.Principal)))
	dst = append(dst, op.Principal...)
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

// ChainHash is the chain hash of op when the op before it has chain hash
// prev (the zero Chain for op 1): SHA-256(prev || canonical encoding of
// op), where the canonical encoding is AppendOp's without the trailing
// chain hash. op.Chain itself is not read. Callers on a hot path use a
// Chainer instead, which does not allocate.
func ChainHash(prev Chain, op *Op) Chain {
	var c Chainer
	return c.Op(prev, op)
}

// Chainer computes chain hashes and reuses its buffers, so that once warm
// it does not allocate. The zero value is ready to use; a Chainer is not
// safe for concurrent use.
type Chainer struct {
	buf []byte
	h   hash.Hash
	sum Chain
}

// Op is ChainHash(prev, op).
func (c *Chainer) Op(prev Chain, op *Op) Chain {
	c.buf = appendCanonical(c.buf[:0], op)
	if cap(c.buf) > maxRetainedBuf {
		defer func() { c.buf = nil }()
	}
	return c.canonical(prev, c.buf)
}

// Payload is the chain hash of an op encoded by AppendOp, computed from
// its bytes as they are: the record's own chain hash (its last ChainSize
// bytes) is not read. payload must be at least ChainSize long.
func (c *Chainer) Payload(prev Chain, payload []byte) Chain {
	return c.canonical(prev, payload[:len(payload)-ChainSize])
}

func (c *Chainer) canonical(prev Chain, canonical []byte) Chain {
	if c.h == nil {
		c.h = sha256.New()
	}
	c.h.Reset()
	c.h.Write(prev[:])
	c.h.Write(canonical)
	c.h.Sum(c.sum[:0])
	return c.sum
}

// storedChain is the chain hash an encoded op carries.
func storedChain(payload []byte) Chain {
	return Chain(payload[len(payload)-ChainSize:])
}

// DecodeOp decodes an op encoded by AppendOp. It is strict, so that every
// accepted input re-encodes to exactly the same bytes: it rejects unknown
// versions and kinds, non-minimal varints, lengths beyond the input,
// trailing bytes, and system ops with a tenant (or a marker with entries).
// It allocates nothing for rejected input and, for accepted input, three
// objects whose sizes are bounded by len(b).
//
// The returned op does not alias b. Its strings share one allocation and
// its values share another; each Value is capped so that appending to it
// cannot overwrite a neighbour. Zero-length values decode as nil, and an op
// without entries has nil Entries.
func DecodeOp(b []byte) (Op, error) {
	p, err := parseOp(b)
	if err != nil {
		return Op{}, err
	}
	return p.decode(b, false), nil
}

// DecodeOpSharing is DecodeOp, except that the values of the returned op
// are slices of b instead of a copy of it (each still capped at its end):
// b must not change while the op is in use, and any value kept keeps all
// of b alive. The tenant, the principal and the keys are copied, as
// strings must be. It is for a caller that holds a private copy of the
// encoding anyway, as a backup does of the ops it receives.
func DecodeOpSharing(b []byte) (Op, error) {
	p, err := parseOp(b)
	if err != nil {
		return Op{}, err
	}
	return p.decode(b, true), nil
}

// DecodeOpV1 decodes an op of the version-1 encoding, which a log written
// before version 2 holds: the version-2 layout without Kind, Principal and
// Chain. The op's Kind is KindMarker when it has neither tenant nor
// entries (the only system op version 1 had), else KindData; its Chain is
// zero, for the caller to compute. Only migration calls it.
func DecodeOpV1(b []byte) (Op, error) {
	p, err := parseOpV1(b)
	if err != nil {
		return Op{}, err
	}
	return p.decode(b, false), nil
}

// decode copies the op that p validated out of b; with shareValues its
// values are slices of b instead (DecodeOpSharing).
func (p *parsedOp) decode(b []byte, shareValues bool) Op {
	op := p.op
	// The tenant, the principal and all keys go into one string...
	var sb strings.Builder
	sb.Grow(p.keyBytes)
	sb.Write(p.tenant)
	sb.Write(p.principal)
	d := newDecoder(b)
	d.Rewind(p.entriesAt)
	for range p.entries {
		sb.Write(d.Bytes("key length"))
		d.Bytes("value length")
	}
	strs := sb.String()
	op.Tenant, strs = strs[:len(p.tenant)], strs[len(p.tenant):]
	op.Principal, strs = strs[:len(p.principal)], strs[len(p.principal):]

	// ... and all values into one byte slice, unless they stay in b.
	var values []byte
	if p.valueBytes > 0 && !shareValues {
		values = make([]byte, 0, p.valueBytes)
	}
	if p.entries > 0 {
		op.Entries = make([]Entry, p.entries)
	}
	d.Rewind(p.entriesAt)
	for i := range op.Entries {
		k := len(d.Bytes("key length"))
		op.Entries[i].Key, strs = strs[:k], strs[k:]
		v := d.Bytes("value length")
		switch {
		case len(v) == 0:
		case shareValues:
			op.Entries[i].Value = v[:len(v):len(v)]
		default:
			start := len(values)
			values = append(values, v...)
			op.Entries[i].Value = values[start:len(values):len(values)]
		}
	}
	return op
}

// parsedOp is the result of validating an encoded op without copying it.
type parsedOp struct {
	op         Op     // scalar fields and Chain only; Tenant, Principal and Entries are unset
	tenant     []byte // aliases the input
	principal  []byte // aliases the input
	entries    uint64 // number of entries
	entriesAt  int    // offset of the first entry in the input
	keyBytes   int    // len(tenant) + len(principal) + total key bytes
	valueBytes int    // total value bytes
}

// parseOp validates b as an op encoded by AppendOp. It does not allocate
// unless it fails. Recovery uses it directly: it needs the op and position
// numbers of every record but none of the payload.
func parseOp(b []byte) (parsedOp, error) {
	// Checked here, so that the version byte and the chain hash are
	// always there.
	if len(b) < 1+ChainSize {
		return parsedOp{}, fmt.Errorf("%w: %d bytes, shorter than any op", ErrMalformedOp, len(b))
	}
	body := b[:len(b)-ChainSize]
	d := newDecoder(body)
	if v := d.Byte("version"); v != opVersion {
		return parsedOp{}, fmt.Errorf("%w: unknown version %d", ErrMalformedOp, v)
	}
	var p parsedOp
	p.op.Op = d.Uvarint("op")
	p.op.View = d.Uvarint("view")
	p.op.Timestamp = int64(d.Fixed64("timestamp"))
	p.op.Kind = Kind(d.Byte("kind"))
	p.tenant = d.Bytes("tenant length")
	p.op.FirstPosition = d.Uvarint("first position")
	p.op.ClientID = d.Uvarint("client id")
	p.op.RequestID = d.Uvarint("request id")
	p.principal = d.Bytes("principal length")
	if err := p.parseEntries(&d); err != nil {
		return parsedOp{}, err
	}
	switch k := p.op.Kind; {
	case k > maxKind:
		return parsedOp{}, fmt.Errorf("%w: unknown kind %d", ErrMalformedOp, k)
	case k != KindData && len(p.tenant) > 0:
		return parsedOp{}, fmt.Errorf("%w: %s op with tenant %q", ErrMalformedOp, k, p.tenant)
	case k == KindMarker && p.entries > 0:
		return parsedOp{}, fmt.Errorf("%w: marker op with %d entries", ErrMalformedOp, p.entries)
	}
	p.op.Chain = storedChain(b)
	return p, nil
}

// parseOpV1 is parseOp for the version-1 encoding.
func parseOpV1(b []byte) (parsedOp, error) {
	if len(b) == 0 {
		return parsedOp{}, fmt.Errorf("%w: empty", ErrMalformedOp)
	}
	d := newDecoder(b)
	if v := d.Byte("version"); v != opVersionV1 {
		return parsedOp{}, fmt.Errorf("%w: version %d, want version 1", ErrMalformedOp, v)
	}
	var p parsedOp
	p.op.Op = d.Uvarint("op")
	p.op.View = d.Uvarint("view")
	p.op.Timestamp = int64(d.Fixed64("timestamp"))
	p.tenant = d.Bytes("tenant length")
	p.op.FirstPosition = d.Uvarint("first position")
	p.op.ClientID = d.Uvarint("client id")
	p.op.RequestID = d.Uvarint("request id")
	if err := p.parseEntries(&d); err != nil {
		return parsedOp{}, err
	}
	if len(p.tenant) == 0 && p.entries == 0 {
		p.op.Kind = KindMarker
	}
	return p, nil
}

// parseEntries validates the entry count and the entries, which end the
// input d reads.
func (p *parsedOp) parseEntries(d *strictbin.Decoder) error {
	p.entries = d.Uvarint("entry count")
	// Every entry takes at least two bytes (two zero lengths), which
	// bounds the count by the input before anything is allocated.
	if d.Err() == nil && p.entries > uint64(d.Remaining()/2) {
		return fmt.Errorf("%w: entry count %d exceeds record", ErrMalformedOp, p.entries)
	}
	p.entriesAt = d.Offset()
	p.keyBytes = len(p.tenant) + len(p.principal)
	for i := uint64(0); i < p.entries && d.Err() == nil; i++ {
		p.keyBytes += len(d.Bytes("key length"))
		p.valueBytes += len(d.Bytes("value length"))
	}
	if err := d.Err(); err != nil {
		return err
	}
	if d.Remaining() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformedOp, d.Remaining())
	}
	return nil
}

// opErrors makes a decoder's errors wrap ErrMalformedOp.
var opErrors = &strictbin.Errors{Malformed: ErrMalformedOp, Input: "record"}

// newDecoder returns a strict decoder of an encoded op, b.
func newDecoder(b []byte) strictbin.Decoder {
	return strictbin.NewDecoder(b, opErrors)
}
