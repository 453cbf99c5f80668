package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kmb-db/kmb/store/internal/strictbin"
	kmblog "github.com/kmb-db/kmb/store/log"
)

const (
	// Version is the first byte of every encoded message. A decoder that
	// meets another version refuses the message rather than guessing.
	Version = 2

	// MaxTraceParentLen bounds TraceParent. A W3C traceparent is 55 bytes;
	// the slack leaves room for future versions of the header.
	MaxTraceParentLen = 256

	// MaxOps bounds the number of ops in one message. Without it a 64 MiB
	// frame of empty ops would decode into some 400 MiB of Op structs.
	// Senders with more ops to ship split them over several messages.
	MaxOps = 1 << 16
	// MaxDataLen bounds a message's Data: one checkpoint chunk.
	MaxDataLen = 8 << 20
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
	case len(m.Data) > MaxDataLen:
		return fmt.Errorf("%w: %d data bytes exceed %d", ErrInvalidMessage, len(m.Data), MaxDataLen)
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
	n := 2 + strictbin.UvarintLen(m.From) + strictbin.UvarintLen(m.To) +
		strictbin.UvarintLen(m.Epoch) + strictbin.UvarintLen(m.View) + strictbin.UvarintLen(m.LogView) +
		strictbin.UvarintLen(m.Op) + strictbin.UvarintLen(m.Commit) +
		strictbin.UvarintLen(m.Nonce) + 1 +
		strictbin.UvarintLen(uint64(len(m.TraceParent))) + len(m.TraceParent) +
		strictbin.UvarintLen(uint64(len(m.Ops)))
	for _, op := range m.Ops {
		s := kmblog.EncodedSize(op)
		n += strictbin.UvarintLen(uint64(s)) + s
	}
	return n + strictbin.UvarintLen(uint64(len(m.Data))) + len(m.Data)
}

// AppendMessage appends the encoding of m (without framing) to dst. It does
// not check m: a message that fails Validate encodes, but DecodeMessage
// rejects it. It does not allocate when dst has room for EncodedSize(m)
// more bytes. It panics if an op is nil.
func AppendMessage(dst []byte, m *Message) []byte {
	dst = append(dst, Version, byte(m.Type))
	dst = binary.AppendUvarint(dst, m.From)
	dst = binary.AppendUvarint(dst, m.To)
	dst = binary.AppendUvarint(dst, m.Epoch)
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
	dst = binary.AppendUvarint(dst, uint64(len(m.Data)))
	return append(dst, m.Data...)
}

// DecodeMessage decodes one message encoded by AppendMessage; b must hold
// exactly that message. The result does not alias b. Ops is nil when the
// message has none. Every error wraps ErrMalformedMessage; errors from
// kmblog.DecodeOp also wrap kmblog.ErrMalformedOp.
func DecodeMessage(b []byte) (Message, error) {
	d := newDecoder(b)
	if v := d.Byte("version"); d.Err() == nil && v != Version {
		return Message{}, fmt.Errorf("%w: unknown version %d", ErrMalformedMessage, v)
	}
	var m Message
	m.Type = Type(d.Byte("type"))
	if d.Err() == nil && (m.Type == 0 || m.Type > MaxType) {
		return Message{}, fmt.Errorf("%w: unknown type %d", ErrMalformedMessage, m.Type)
	}
	m.From = d.Uvarint("from")
	m.To = d.Uvarint("to")
	m.Epoch = d.Uvarint("epoch")
	m.View = d.Uvarint("view")
	m.LogView = d.Uvarint("log view")
	m.Op = d.Uvarint("op")
	m.Commit = d.Uvarint("commit")
	m.Nonce = d.Uvarint("nonce")
	m.Flags = d.Byte("flags")
	if d.Err() == nil && m.Flags&^knownFlags != 0 {
		return Message{}, fmt.Errorf("%w: unknown flags %#x", ErrMalformedMessage, m.Flags)
	}
	trace := d.LimitedBytes("trace parent length", MaxTraceParentLen)
	count := d.Uvarint("op count")
	if d.Err() == nil {
		// Every op takes its length byte and at least minOpSize bytes.
		if count > MaxOps {
			d.Fail("op count %d exceeds %d", count, MaxOps)
		} else if count > uint64(d.Remaining()/(1+minOpSize)) {
			d.Fail("op count %d exceeds message", count)
		}
	}
	// Check every op's length before allocating anything for the ops, so
	// that a count backed by no bytes costs nothing.
	opsAt := d.Offset()
	for i := uint64(0); i < count && d.Err() == nil; i++ {
		d.LimitedBytes("op length", MaxFrameSize)
	}
	data := d.LimitedBytes("data length", MaxDataLen)
	if err := d.Err(); err != nil {
		return Message{}, err
	}
	if d.Offset() != len(b) {
		return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformedMessage, len(b)-d.Offset())
	}

	m.TraceParent = string(trace)
	if len(data) > 0 {
		m.Data = bytes.Clone(data)
	}
	if count == 0 {
		return m, nil
	}
	ops := make([]kmblog.Op, count)
	m.Ops = make([]*kmblog.Op, count)
	m.Raw = make([][]byte, count)
	d.Rewind(opsAt)
	// A copy of each op's bytes keeps its encoding (Raw), which nothing
	// changes: the op's values are slices of it. One copy per op, not one
	// for the message, so that a value kept (the projection keeps the
	// latest of each key) keeps no more than its own op's bytes alive.
	for i := range ops {
		raw := bytes.Clone(d.LimitedBytes("op length", MaxFrameSize))
		m.Raw[i] = raw[:len(raw):len(raw)]
		op, err := kmblog.DecodeOpSharing(m.Raw[i])
		if err != nil {
			return Message{}, fmt.Errorf("%w: op %d: %w", ErrMalformedMessage, i, err)
		}
		ops[i] = op
		m.Ops[i] = &ops[i]
	}
	return m, nil
}
