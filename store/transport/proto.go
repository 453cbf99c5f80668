package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Frame kinds: the first byte of every frame payload on a replication
// connection. The numbers are part of the protocol: never reuse one.
const (
	kindHello   byte = 1 // handshake, both ways, first frame only
	kindMessage byte = 2 // dialler → acceptor: a wire.Message
	kindPing    byte = 3 // dialler → acceptor: a timestamp to echo
	kindPong    byte = 4 // acceptor → dialler: the ping's timestamp, echoed
)

const (
	// protocolVersion is the hello's version byte. An acceptor refuses a
	// dialler of another version rather than guess at its frames.
	protocolVersion = 1

	// maxAPIAddrLen bounds the advertised API address.
	maxAPIAddrLen = 255

	// maxHelloSize bounds a hello payload: kind, magic, version, two
	// 10-byte uvarints, a 2-byte length and the address. The reader
	// refuses larger frames before the peer has identified itself.
	maxHelloSize = 1 + 4 + 1 + 10 + 10 + 2 + maxAPIAddrLen

	// timestampFrameSize is the payload size of a ping or a pong.
	timestampFrameSize = 1 + 8
)

// helloMagic opens every hello, so that a stray client of another protocol
// is told apart from a kmbd replica of another version.
var helloMagic = [4]byte{'K', 'M', 'B', 'R'}

// errProtocol is wrapped by errors about frames that break this protocol:
// a bad hello, an unexpected kind, a malformed ping. The connection is
// dropped.
var errProtocol = errors.New("transport: protocol violation")

// hello identifies the two ends of a connection.
type hello struct {
	from    uint64 // the sender's node id
	to      uint64 // the node id the sender believes it is talking to
	apiAddr string // the sender's client API address
}

// appendHello appends the payload of a hello frame.
func appendHello(dst []byte, h hello) []byte {
	dst = append(dst, kindHello)
	dst = append(dst, helloMagic[:]...)
	dst = append(dst, protocolVersion)
	dst = binary.AppendUvarint(dst, h.from)
	dst = binary.AppendUvarint(dst, h.to)
	dst = binary.AppendUvarint(dst, uint64(len(h.apiAddr)))
	return append(dst, h.apiAddr...)
}

// decodeHello decodes a hello payload strictly: exact magic and version,
// minimal varints, no trailing bytes.
func decodeHello(p []byte) (hello, error) {
	if len(p) < 6 || p[0] != kindHello {
		return hello{}, fmt.Errorf("%w: expected a hello frame", errProtocol)
	}
	if [4]byte(p[1:5]) != helloMagic {
		return hello{}, fmt.Errorf("%w: bad hello magic %q", errProtocol, p[1:5])
	}
	if p[5] != protocolVersion {
		return hello{}, fmt.Errorf("%w: protocol version %d, this node speaks %d", errProtocol, p[5], protocolVersion)
	}
	p = p[6:]
	var h hello
	var n uint64
	var ok bool
	if h.from, p, ok = uvarint(p); !ok {
		return hello{}, fmt.Errorf("%w: bad hello node id", errProtocol)
	}
	if h.to, p, ok = uvarint(p); !ok {
		return hello{}, fmt.Errorf("%w: bad hello target id", errProtocol)
	}
	if n, p, ok = uvarint(p); !ok || n > maxAPIAddrLen || n != uint64(len(p)) {
		return hello{}, fmt.Errorf("%w: bad hello API address length", errProtocol)
	}
	h.apiAddr = string(p)
	return h, nil
}

// uvarint reads a minimally encoded uvarint from the front of b.
func uvarint(b []byte) (uint64, []byte, bool) {
	x, n := binary.Uvarint(b)
	if n <= 0 || n != (bits.Len64(x|1)+6)/7 {
		return 0, b, false
	}
	return x, b[n:], true
}

// appendTimestamp appends the payload of a ping or pong frame: the kind,
// then the dialler's clock as u64 LE nanoseconds. Only the dialler reads
// the clock; the acceptor echoes it untouched.
func appendTimestamp(dst []byte, kind byte, ns int64) []byte {
	dst = append(dst, kind)
	return binary.LittleEndian.AppendUint64(dst, uint64(ns))
}

// decodeTimestamp decodes a ping or pong payload of the given kind.
func decodeTimestamp(p []byte, kind byte) (int64, error) {
	if len(p) != timestampFrameSize || p[0] != kind {
		return 0, fmt.Errorf("%w: bad ping or pong frame of %d bytes", errProtocol, len(p))
	}
	return int64(binary.LittleEndian.Uint64(p[1:])), nil
}
