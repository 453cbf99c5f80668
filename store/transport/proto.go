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
	kindProof   byte = 5 // both ways, shared-secret handshakes only: an HMAC of the hellos
)

// Authentication modes, the hello's auth byte. Both ends must use the
// same one.
const (
	authNone   byte = 0 // nothing: loopback, or cluster.allow_insecure
	authTLS    byte = 1 // mutual TLS under the connection
	authSecret byte = 2 // HMAC challenge and response, then a MAC on every frame
)

// nonceSize is the size of the hello's nonce in shared-secret mode, and
// proofSize of a proof's MAC (HMAC-SHA256).
const (
	nonceSize = 32
	proofSize = 32
	// tagSize is the truncated HMAC-SHA256 that ends every frame payload
	// after a shared-secret handshake.
	tagSize = 16
	// proofFrameSize is the payload size of a proof.
	proofFrameSize = 1 + proofSize
)

const (
	// protocolVersion is the hello's version byte. An acceptor refuses a
	// dialler of another version rather than guess at its frames. Version
	// 2 added the auth byte, the nonce, proofs and frame MACs.
	protocolVersion = 2

	// maxAPIAddrLen bounds the advertised API address.
	maxAPIAddrLen = 255

	// maxHelloSize bounds a hello payload: kind, magic, version, auth,
	// two 10-byte uvarints, a 2-byte length, the address and a nonce. The
	// reader refuses larger frames before the peer has identified itself.
	maxHelloSize = 1 + 4 + 1 + 1 + 10 + 10 + 2 + maxAPIAddrLen + nonceSize

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
	auth    byte            // authNone, authTLS or authSecret
	from    uint64          // the sender's node id
	to      uint64          // the node id the sender believes it is talking to
	apiAddr string          // the sender's client API address
	nonce   [nonceSize]byte // fresh per hello; only with authSecret
}

// appendHello appends the payload of a hello frame.
func appendHello(dst []byte, h hello) []byte {
	dst = append(dst, kindHello)
	dst = append(dst, helloMagic[:]...)
	dst = append(dst, protocolVersion, h.auth)
	dst = binary.AppendUvarint(dst, h.from)
	dst = binary.AppendUvarint(dst, h.to)
	dst = binary.AppendUvarint(dst, uint64(len(h.apiAddr)))
	dst = append(dst, h.apiAddr...)
	if h.auth == authSecret {
		dst = append(dst, h.nonce[:]...)
	}
	return dst
}

// decodeHello decodes a hello payload strictly: exact magic and version,
// a known auth mode, minimal varints, a nonce exactly when the mode has
// one, no trailing bytes.
func decodeHello(p []byte) (hello, error) {
	if len(p) < 6 || p[0] != kindHello {
		return hello{}, fmt.Errorf("%w: expected a hello frame", errProtocol)
	}
	if [4]byte(p[1:5]) != helloMagic {
		return hello{}, fmt.Errorf("%w: bad hello magic %q", errProtocol, p[1:5])
	}
	if p[5] != protocolVersion {
		return hello{}, fmt.Errorf("%w: %w %d, this node speaks %d", errProtocol, errVersion, p[5], protocolVersion)
	}
	if len(p) < 7 || p[6] > authSecret {
		return hello{}, fmt.Errorf("%w: bad hello auth mode", errProtocol)
	}
	var h hello
	h.auth = p[6]
	p = p[7:]
	var n uint64
	var ok bool
	if h.from, p, ok = uvarint(p); !ok {
		return hello{}, fmt.Errorf("%w: bad hello node id", errProtocol)
	}
	if h.to, p, ok = uvarint(p); !ok {
		return hello{}, fmt.Errorf("%w: bad hello target id", errProtocol)
	}
	tail := uint64(0)
	if h.auth == authSecret {
		tail = nonceSize
	}
	if n, p, ok = uvarint(p); !ok || n > maxAPIAddrLen || n+tail != uint64(len(p)) {
		return hello{}, fmt.Errorf("%w: bad hello API address length", errProtocol)
	}
	h.apiAddr = string(p[:n])
	copy(h.nonce[:], p[n:])
	return h, nil
}

// errVersion is wrapped by the error about a hello of another protocol
// version.
var errVersion = errors.New("protocol version")

// appendProof appends the payload of a proof frame.
func appendProof(dst []byte, mac []byte) []byte {
	return append(append(dst, kindProof), mac...)
}

// decodeProof decodes a proof payload: the kind and exactly one MAC.
func decodeProof(p []byte) ([]byte, error) {
	if len(p) != proofFrameSize || p[0] != kindProof {
		return nil, fmt.Errorf("%w: expected a proof frame of %d bytes, got %d", errProtocol, proofFrameSize, len(p))
	}
	return p[1:], nil
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
