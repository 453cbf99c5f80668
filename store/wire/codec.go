package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	kmblog "github.com/kmb-db/kmb/store/log"
)

const (
	// Version is the first byte of every encoded message. A decoder that
	// meets another version refuses the message rather than guessing.
	Version = 1

	// MaxTraceParentLen bounds TraceParent. A W3C traceparent is 55 bytes;
	// the slack leaves room for future versions of the header.
	MaxTraceParentLen = 256

	// MaxOps bounds the number of ops in one message. Without it a 64 MiB
	// frame of empty ops would decode into some 400 MiB of Op structs.
	// Senders with more ops to ship split them over several messages.
	MaxOps = 1 << 16
)

// knownFlags are the Flags bits this version defines.
const knownFlags = FlagNormal | FlagFresh

// minOpSize is the length of the shortest encoded op, one with every field
// zero. It bounds the op count by the input before anything is allocated.
var minOpSize = kmblog.EncodedSize(&kmblog.Op{})

// ErrMalformedMessage is wrapped by every DecodeMessage error.
var ErrMalformedMessage = errors.New("wire: malformed message")

// ErrInvalidMessage is wrapped by Validate's errors: the message is outside
// what DecodeMessage accepts, so sending it would only get the connection
// dropped.
var ErrInvalidMessage = errors.New("wire: invalid message")

// Validate reports whether m is within the limits DecodeMessage enforces,
// except the frame size, which FinishFrame checks once the message is
// encoded. It is O(len(m.Ops)) and does not allocate unless it fails.
func (m *Message) Validate() error {
	switch {
	case m.Type == 0 || m.Type > MaxType:
		return fmt.Errorf("%w: unknown type %d", ErrInvalidMessage, m.Type)
	case m.Flags&^knownFlags != 0:
		return fmt.Errorf("%w: unknown flags %#x", ErrInvalidMessage, m.Flags)
	case len(m.TraceParent) > MaxTraceParentLen:
		return fmt.Errorf("%w: trace parent of %d bytes exceeds %d", ErrInvalidMessage, len(m.TraceParent), MaxTraceParentLen)
	case len(m.Ops) > MaxOps:
		return fmt.Errorf("%w: %d ops exceed %d", ErrInvalidMessage, len(m.Ops), MaxOps)
	}
	for i, op := range m.Ops {
		if op == nil {
			return fmt.Errorf("%w: op %d is nil", ErrInvalidMessage, i)
		}
	}
	return nil
}

// EncodedSize is len(AppendMessage(nil, m)). Senders use it to split ops
// over messages that fit in a frame.
func EncodedSize(m *Message) int {
	n := 2 + uvarintLen(m.From) + uvarintLen(m.To) + uvarintLen(m.View) +
		uvarintLen(m.LogView) + uvarintLen(m.Op) + uvarintLen(m.Commit) +
		uvarintLen(m.Nonce) + 1 +
		uvarintLen(uint64(len(m.TraceParent))) + len(m.TraceParent) +
		uvarintLen(uint64(len(m.Ops)))
	for _, op := range m.Ops {
		s := kmblog.EncodedSize(op)
		n += uvarintLen(uint64(s)) + s
	}
	return n
}

// AppendMessage appends the encoding of m (without framing) to dst. It does
// not check m: a message that fails Validate encodes, but DecodeMessage
// rejects it. It does not allocate when dst has room for EncodedSize(m)
// more bytes. It panics if an op is nil.
func AppendMessage(dst []byte, m *Message) []byte {
	dst = append(dst, Version, byte(m.Type))
	dst = binary.AppendUvarint(dst, m.From)
	dst = binary.AppendUvarint(dst, m.To)
	dst = binary.AppendUvarint(dst, m.View)
	dst = binary.AppendUvarint(dst, m.LogView)
	dst = binary.AppendUvarint(dst, m.Op)
	dst = binary.AppendUvarint(dst, m.Commit)
	dst = binary.AppendUvarint(dst, m.Nonce)
	dst = append(dst, m.Flags)
	dst = binary.AppendUvarint(dst, uint64(len(m.TraceParent)))
	dst = append(dst, m.TraceParent...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Ops)))
	for _, op := range m.Ops {
		dst = binary.AppendUvarint(dst, uint64(kmblog.EncodedSize(op)))
		dst = kmblog.AppendOp(dst, op)
	}
	return dst
}

// DecodeMessage decodes one message encoded by AppendMessage; b must hold
// exactly that message. The result does not alias b. Ops is nil when the
// message has none. Every error wraps ErrMalformedMessage; errors from
// kmblog.DecodeOp also wrap kmblog.ErrMalformedOp.
func DecodeMessage(b []byte) (Message, error) {
	d := decoder{b: b}
	if v := d.byte("version"); d.err == nil && v != Version {
		return Message{}, fmt.Errorf("%w: unknown version %d", ErrMalformedMessage, v)
	}
	var m Message
	m.Type = Type(d.byte("type"))
	if d.err == nil && (m.Type == 0 || m.Type > MaxType) {
		return Message{}, fmt.Errorf("%w: unknown type %d", ErrMalformedMessage, m.Type)
	}
	m.From = d.uvarint("from")
	m.To = d.uvarint("to")
	m.View = d.uvarint("view")
	m.LogView = d.uvarint("log view")
	m.Op = d.uvarint("op")
	m.Commit = d.uvarint("commit")
	m.Nonce = d.uvarint("nonce")
	m.Flags = d.byte("flags")
	if d.err == nil && m.Flags&^knownFlags != 0 {
		return Message{}, fmt.Errorf("%w: unknown flags %#x", ErrMalformedMessage, m.Flags)
	}
	trace := d.bytes("trace parent length", MaxTraceParentLen)
	count := d.uvarint("op count")
	if d.err == nil {
		// Every op takes its length byte and at least minOpSize bytes.
		if count > MaxOps {
			d.fail("op count %d exceeds %d", count, MaxOps)
		} else if count > uint64(d.remaining()/(1+minOpSize)) {
			d.fail("op count %d exceeds message", count)
		}
	}
	// Check every op's length before allocating anything for the ops, so
	// that a count backed by no bytes costs nothing.
	opsAt := d.off
	for i := uint64(0); i < count && d.err == nil; i++ {
		d.bytes("op length", MaxFrameSize)
	}
	if d.err != nil {
		return Message{}, d.err
	}
	if d.off != len(b) {
		return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformedMessage, len(b)-d.off)
	}

	m.TraceParent = string(trace)
	if count == 0 {
		return m, nil
	}
	ops := make([]kmblog.Op, count)
	m.Ops = make([]*kmblog.Op, count)
	d.off = opsAt
	for i := range ops {
		op, err := kmblog.DecodeOp(d.bytes("op length", MaxFrameSize))
		if err != nil {
			return Message{}, fmt.Errorf("%w: op %d: %w", ErrMalformedMessage, i, err)
		}
		ops[i] = op
		m.Ops[i] = &ops[i]
	}
	return m, nil
}

// uvarintLen is the number of bytes binary.AppendUvarint writes for x.
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}
