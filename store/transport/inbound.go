package transport

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/kmb-db/kmb/store/wire"
)

// acceptLoop accepts peers' connections until the listener closes.
func (t *Transport) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	var delay time.Duration
	var seq uint64 // accept order, which is each peer's dial order
	for {
		c, err := ln.Accept()
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: wait and retry, as
			// net/http does, rather than spin or give up on the cluster.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Warn("replication accept failed; retrying",
				slog.String("error", err.Error()), slog.Duration("delay", delay))
			select {
			case <-t.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if !t.track(c) {
			c.Close()
			return
		}
		seq++
		t.wg.Add(1)
		go t.serveInbound(c, seq)
	}
}

// serveInbound identifies the dialler of an accepted connection and
// delivers its messages until the connection ends. Any bad frame ends it:
// the stream cannot be trusted past one.
// seq is the connection's place in accept order.
func (t *Transport) serveInbound(raw net.Conn, seq uint64) {
	defer t.wg.Done()
	defer t.closeConn(raw)
	log := t.logger.With(slog.String("remote_addr", raw.RemoteAddr().String()))
	p, c, fr, sess, err := t.acceptHandshake(raw)
	if err == nil {
		err = t.setInbound(p, c, seq)
		if errors.Is(err, errSuperseded) {
			log.Info("replication connection from peer superseded by a newer one during its handshake", slog.Uint64("peer", p.id))
			return
		}
	}
	if err != nil {
		if !t.isClosed() {
			t.rejected(log, raw, err)
		}
		return
	}
	defer t.clearInbound(p, c)
	log = log.With(slog.Uint64("peer", p.id))
	err = t.readInbound(p, c, fr, sess, log)
	switch {
	case t.isClosed():
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// The peer closed it, or redialled and so replaced it.
		log.Info("replication connection from peer closed")
	default:
		log.Warn("replication connection from peer dropped",
			slog.String("error", err.Error()), slog.String("reason", failureReason(err)))
	}
}

// rejected counts a refused handshake by reason and logs it, once per
// remote host per rejectLogEvery.
func (t *Transport) rejected(log *slog.Logger, c net.Conn, err error) {
	reason := rejectionReason(err)
	if reason == "" {
		log.Debug("replication connection closed before its handshake", slog.String("error", err.Error()))
		return
	}
	t.m.handshakeRejected(reason)
	if t.rejects.allow(hostOf(c.RemoteAddr()), time.Now()) {
		log.Warn("replication handshake rejected; connection dropped (further rejections from this host within a minute are only counted)",
			slog.String("error", err.Error()), slog.String("reason", reason))
	}
}

// acceptHandshake runs the acceptor's side of the handshake on raw, all
// within DialTimeout: TLS first in that mode, then the dialler's hello,
// which must come from a peer, be meant for this node and use this
// node's auth mode, then this node's answer and, with a secret, the
// dialler's proof. Only then is the peer's advertised address recorded.
// It returns the connection to use (raw, or TLS over it).
func (t *Transport) acceptHandshake(raw net.Conn) (*peer, net.Conn, *wire.FrameReader, *session, error) {
	setNoDelay(raw)
	raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	c := raw
	if t.serverTLS != nil {
		tc := tls.Server(raw, t.serverTLS)
		if err := tc.Handshake(); err != nil {
			return nil, nil, nil, nil, reject(rejectTLS, fmt.Errorf("TLS handshake: %w", err))
		}
		c = tc
	}
	fr := wire.NewFrameReader(c)
	fr.SetLimit(maxHelloSize) // nobody sends megabytes before saying who they are
	p, helloD, h, err := t.readHello(fr)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if tc, ok := c.(*tls.Conn); ok {
		if err := t.checkPeerCertificate(p, tc); err != nil {
			p.m.rejected.Inc()
			return nil, nil, nil, nil, err
		}
	}
	sess, err := t.answerHello(p, c, fr, helloD, h)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	// Authenticated: record the peer. Once the dialler holds the answer
	// (and, with a secret, its proof was checked), PeerAPIAddr knows it.
	p.apiAddr.Store(&h.apiAddr)
	p.touch(time.Now())
	c.SetDeadline(time.Time{})
	fr.SetLimit(wire.MaxFrameSize)
	return p, c, fr, sess, nil
}

// readHello reads the dialler's hello and checks that it comes from a
// peer, is meant for this node and uses this node's auth mode. It returns
// the hello's payload too: the transcript of a shared-secret handshake
// starts with it.
func (t *Transport) readHello(fr *wire.FrameReader) (*peer, []byte, hello, error) {
	payload, err := fr.ReadPayload()
	if err != nil {
		if errors.Is(err, wire.ErrCorruptFrame) {
			t.m.unknown.Inc()
		}
		return nil, nil, hello{}, err
	}
	h, err := decodeHello(payload)
	if err != nil {
		t.m.unknown.Inc()
		return nil, nil, hello{}, err
	}
	p := t.peerMap()[h.from]
	if p == nil {
		t.m.unknown.Inc()
		return nil, nil, hello{}, reject(rejectUnknownNode, fmt.Errorf("%w: node %d is not a peer of node %d", errProtocol, h.from, t.cfg.NodeID))
	}
	p.m.bytesReceived.Add(uint64(len(payload) + wire.FrameHeaderSize))
	if h.to != t.cfg.NodeID {
		p.m.rejected.Inc()
		return nil, nil, hello{}, reject(rejectWrongNode, fmt.Errorf("%w: node %d dialled node %d, but this is node %d", errProtocol, h.from, h.to, t.cfg.NodeID))
	}
	if mode := t.cfg.Security.mode(); h.auth != mode {
		p.m.rejected.Inc()
		return nil, nil, hello{}, reject(rejectAuthMode, fmt.Errorf("%w: node %d authenticates by %s, this node by %s", errProtocol, h.from, authName(h.auth), authName(mode)))
	}
	return p, bytes.Clone(payload), h, nil
}

// checkPeerCertificate checks that the dialler's certificate, which TLS
// verified against the cluster CA, names the host the configuration gives
// the node it claims to be: a certificate of one replica cannot speak for
// another.
func (t *Transport) checkPeerCertificate(p *peer, tc *tls.Conn) error {
	certs := tc.ConnectionState().PeerCertificates
	host, _, _ := net.SplitHostPort(p.addr)
	if len(certs) == 0 {
		return reject(rejectTLS, fmt.Errorf("%w: node %d presented no certificate", errProtocol, p.id))
	}
	if err := certs[0].VerifyHostname(host); err != nil {
		return reject(rejectCertIdentity, fmt.Errorf("%w: node %d's certificate (CN %q) does not name its address %s: %v", errProtocol, p.id, certs[0].Subject.CommonName, p.addr, err))
	}
	return nil
}

// answerHello sends this node's hello to the dialler p. With a secret it
// then checks the dialler's proof and only then sends its own, so that
// this node computes nothing under the secret for a stranger; it returns
// the session that authenticates the frames from then on.
func (t *Transport) answerHello(p *peer, c net.Conn, fr *wire.FrameReader, helloD []byte, h hello) (*session, error) {
	mine := hello{auth: t.cfg.Security.mode(), from: t.cfg.NodeID, to: p.id, apiAddr: t.cfg.APIAddr}
	if mine.auth == authSecret {
		rand.Read(mine.nonce[:])
	}
	helloA := appendHello(make([]byte, 0, maxHelloSize), mine)
	frame := controlFrame(make([]byte, 0, wire.FrameHeaderSize+maxHelloSize), func(b []byte) []byte { return append(b, helloA...) })
	if _, err := c.Write(frame); err != nil {
		return nil, err
	}
	p.m.bytesSent.Add(uint64(len(frame)))
	if mine.auth != authSecret {
		return nil, nil
	}
	transcript := append(helloD, helloA...)
	if err := t.checkProof(p, fr, labelDiallerProof, transcript); err != nil {
		return nil, err
	}
	if err := t.sendProof(p, c, labelAcceptorProof, transcript); err != nil {
		return nil, err
	}
	return newSession(t.cfg.Security.Secret, transcript, false), nil
}

// readInbound delivers p's messages and answers its pings until the
// connection fails, breaks the protocol, stays silent for deadIntervals
// pings, or the transport closes.
func (t *Transport) readInbound(p *peer, c net.Conn, fr *wire.FrameReader, sess *session, log *slog.Logger) error {
	silence := deadIntervals * t.cfg.PingInterval
	// The read deadline is pushed back at most every quarter of the
	// silence allowed rather than before every frame, which would cost a
	// timer update per message under load.
	now := time.Now()
	c.SetReadDeadline(now.Add(silence))
	renewAt := now.Add(silence / 4)
	var pong [wire.FrameHeaderSize + timestampFrameSize + tagSize]byte
	warned := false // a message with a forged sender was logged
	for {
		payload, err := fr.ReadPayload()
		if err == nil {
			payload, err = sess.open(payload)
		}
		if err != nil {
			if errors.Is(err, wire.ErrCorruptFrame) {
				p.m.rejected.Inc()
			}
			return err
		}
		now = time.Now()
		p.touch(now)
		p.m.bytesReceived.Add(uint64(len(payload) + sess.overhead() + wire.FrameHeaderSize))
		if now.After(renewAt) {
			c.SetReadDeadline(now.Add(silence))
			renewAt = now.Add(silence / 4)
		}

		switch payload[0] {
		case kindMessage:
			m, err := wire.DecodeMessage(payload[1:])
			if err != nil {
				p.m.rejected.Inc()
				return fmt.Errorf("%w: %w", wire.ErrCorruptFrame, err)
			}
			// The handshake says who is at the other end; a message
			// claiming another sender, or another receiver, is a bug
			// or a forgery, and is dropped without harming the rest.
			if m.From != p.id || m.To != t.cfg.NodeID {
				p.m.rejected.Inc()
				if !warned {
					warned = true
					log.Warn("replication message with a wrong sender or receiver dropped; further ones on this connection are only counted",
						slog.Uint64("from", m.From), slog.Uint64("to", m.To), slog.String("type", m.Type.String()))
				}
				continue
			}
			p.m.received[m.Type].Inc()
			select {
			case t.recv <- m:
			case <-t.done:
				return net.ErrClosed
			}
		case kindPing:
			ts, err := decodeTimestamp(payload, kindPing)
			if err != nil {
				p.m.rejected.Inc()
				return err
			}
			frame, start := wire.StartFrame(pong[:0])
			frame = sess.seal(appendTimestamp(frame, kindPong, ts), start+wire.FrameHeaderSize)
			frame, _ = wire.FinishFrame(frame, start) // never out of range
			c.SetWriteDeadline(now.Add(silence))
			if _, err := c.Write(frame); err != nil {
				return err
			}
			p.m.bytesSent.Add(uint64(len(frame)))
		default:
			p.m.rejected.Inc()
			return fmt.Errorf("%w: unexpected frame kind %d from a dialler", errProtocol, payload[0])
		}
	}
}
