package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"time"

	"github.com/kmb-db/kmb/store/wire"
)

// TLSConfigs supplies the configurations of mutual TLS between replicas,
// rebuilt as certificates rotate. *certs.Reloader implements it.
type TLSConfigs interface {
	// ServerConfig is the acceptor's; it must verify client
	// certificates against the cluster CA when asked to.
	ServerConfig(clientAuth tls.ClientAuthType) *tls.Config
	// ClientConfig is the dialler's for one connection to serverName.
	ClientConfig(serverName string) *tls.Config
}

// Security is how replicas authenticate each other. The zero value
// authenticates nothing (kmbd allows that on loopback only, unless told
// otherwise).
type Security struct {
	// TLS runs every connection over mutual TLS: both ends present a
	// certificate that chains to the cluster CA and names the address the
	// configuration gives that node (its host, as in cluster.replicas).
	TLS TLSConfigs
	// Secret, without TLS, authenticates the handshake by HMAC challenge
	// and response and then every frame by a MAC under a key of that
	// session. At least MinSecretSize bytes, the same on every replica.
	Secret []byte
}

// MinSecretSize is the shortest Security.Secret accepted.
const MinSecretSize = 32

func (s Security) mode() byte {
	switch {
	case s.TLS != nil:
		return authTLS
	case s.Secret != nil:
		return authSecret
	}
	return authNone
}

// authName names an auth mode in errors and logs.
func authName(mode byte) string {
	switch mode {
	case authTLS:
		return "mutual TLS"
	case authSecret:
		return "shared secret"
	}
	return "none"
}

// Reasons of kmb_replication_handshakes_rejected_total: a fixed set.
const (
	rejectMalformed    = "malformed"            // garbage, a bad frame, not a hello
	rejectVersion      = "version"              // another protocol version
	rejectUnknownNode  = "unknown_node"         // a node id not in cluster.replicas
	rejectWrongNode    = "wrong_node"           // a hello meant for another node, or the wrong node answering
	rejectAuthMode     = "auth_mode"            // the other end authenticates differently
	rejectBadProof     = "bad_proof"            // the HMAC does not verify: another secret, or a replay
	rejectTLS          = "tls"                  // the TLS handshake failed: no certificate, or one of another CA
	rejectCertIdentity = "certificate_identity" // a valid certificate that does not name the node it claims to be
	rejectDuplicate    = "duplicate_id"         // the node id is connected from another host already
	rejectTimeout      = "timeout"              // the handshake did not complete in time
)

var rejectReasons = []string{rejectMalformed, rejectVersion, rejectUnknownNode, rejectWrongNode, rejectAuthMode,
	rejectBadProof, rejectTLS, rejectCertIdentity, rejectDuplicate, rejectTimeout}

// rejection is a handshake refused for reason.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

func reject(reason string, err error) error { return &rejection{reason: reason, err: err} }

// rejectionReason classifies a handshake error: "" for one that is no
// refusal (the other end went away before saying anything).
func rejectionReason(err error) string {
	var r *rejection
	var ne net.Error
	switch {
	case errors.As(err, &r):
		return r.reason
	case errors.As(err, &ne) && ne.Timeout():
		return rejectTimeout
	case errors.Is(err, errVersion):
		return rejectVersion
	case errors.Is(err, errProtocol), errors.Is(err, wire.ErrCorruptFrame), errors.Is(err, io.ErrUnexpectedEOF):
		return rejectMalformed
	}
	return ""
}

// Labels of the values HMAC'd under the secret; each ends in a NUL so
// that none is a prefix of another's input.
const (
	labelAcceptorProof = "kmb replication v2 acceptor proof\x00"
	labelDiallerProof  = "kmb replication v2 dialler proof\x00"
	labelDiallerKey    = "kmb replication v2 dialler to acceptor\x00"
	labelAcceptorKey   = "kmb replication v2 acceptor to dialler\x00"
)

// keyed is HMAC-SHA256(secret, label || transcript): the proofs, and the
// session keys.
func keyed(secret []byte, label string, transcript []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(transcript)
	return m.Sum(nil)
}

// session authenticates the frames of one connection after a
// shared-secret handshake: one key per direction, derived from the secret
// and both hellos (so both nonces), and a frame counter per direction
// that the MAC covers, so a frame cannot be replayed, reordered, dropped
// or reflected without the next MAC failing.
type session struct {
	send, recv frameMAC
}

// newSession derives the keys of the connection whose hellos make
// transcript; dialler says which end this is.
func newSession(secret, transcript []byte, dialler bool) *session {
	d2a := keyed(secret, labelDiallerKey, transcript)
	a2d := keyed(secret, labelAcceptorKey, transcript)
	if !dialler {
		d2a, a2d = a2d, d2a
	}
	return &session{send: frameMAC{h: hmac.New(sha256.New, d2a)}, recv: frameMAC{h: hmac.New(sha256.New, a2d)}}
}

// frameMAC is one direction's MAC.
type frameMAC struct {
	h   hash.Hash
	seq uint64
	buf [8 + sha256.Size]byte
}

// sum is the tag of the next frame's payload.
func (m *frameMAC) sum(payload []byte) []byte {
	binary.LittleEndian.PutUint64(m.buf[:8], m.seq)
	m.seq++
	m.h.Reset()
	m.h.Write(m.buf[:8])
	m.h.Write(payload)
	return m.h.Sum(m.buf[8:8])[:tagSize]
}

// seal appends the tag of the payload that starts at dst[start].
func (s *session) seal(dst []byte, start int) []byte {
	if s == nil {
		return dst
	}
	return append(dst, s.send.sum(dst[start:])...)
}

// open verifies and strips the tag at the end of a received payload.
func (s *session) open(p []byte) ([]byte, error) {
	if s == nil {
		return p, nil
	}
	if len(p) < 1+tagSize {
		return nil, errBadMAC
	}
	body, tag := p[:len(p)-tagSize], p[len(p)-tagSize:]
	if !hmac.Equal(s.recv.sum(body), tag) {
		return nil, errBadMAC
	}
	return body, nil
}

// overhead is what the session adds to every payload.
func (s *session) overhead() int {
	if s == nil {
		return 0
	}
	return tagSize
}

// errBadMAC: a frame that is not from the peer that shook hands, or not
// the next one it sent.
var errBadMAC = fmt.Errorf("%w: the frame MAC does not verify", wire.ErrCorruptFrame)

// rejectLog limits the WARN lines of rejected handshakes to one per
// remote host per minute; the counter counts every one.
type rejectLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// rejectLogEvery is how often a host's rejections are logged.
const rejectLogEvery = time.Minute

// allow reports whether a rejection from host may be logged now.
func (l *rejectLog) allow(host string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil || len(l.last) > 4096 { // bounded however many hosts try
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[host]; ok && now.Sub(t) < rejectLogEvery {
		return false
	}
	l.last[host] = now
	return true
}

// hostOf is the host part of a connection's address.
func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// sendProof writes this end's proof of the handshake's transcript.
func (t *Transport) sendProof(p *peer, c net.Conn, label string, transcript []byte) error {
	mac := keyed(t.cfg.Security.Secret, label, transcript)
	frame := controlFrame(nil, func(b []byte) []byte { return appendProof(b, mac) })
	if _, err := c.Write(frame); err != nil {
		return err
	}
	p.m.bytesSent.Add(uint64(len(frame)))
	return nil
}

// checkProof reads the other end's proof and checks that it is the MAC of
// the transcript under label: only a holder of the secret can make it,
// and only for this handshake's nonces.
func (t *Transport) checkProof(p *peer, fr *wire.FrameReader, label string, transcript []byte) error {
	fr.SetLimit(proofFrameSize)
	payload, err := fr.ReadPayload()
	if err != nil {
		if errors.Is(err, wire.ErrCorruptFrame) {
			p.m.rejected.Inc()
		}
		return err
	}
	p.m.bytesReceived.Add(uint64(len(payload) + wire.FrameHeaderSize))
	proof, err := decodeProof(payload)
	if err == nil && !hmac.Equal(proof, keyed(t.cfg.Security.Secret, label, transcript)) {
		err = reject(rejectBadProof, fmt.Errorf("%w: node %d's proof does not verify: another cluster secret, another node at its address, or a replayed handshake", errProtocol, p.id))
	}
	if err != nil {
		p.m.rejected.Inc()
	}
	return err
}
