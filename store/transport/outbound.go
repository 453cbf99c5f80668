package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/kmb-db/kmb/store/wire"
)

const (
	// deadIntervals is how many ping intervals a connection may stay
	// silent before it is presumed dead: long enough to ride out a GC
	// pause or a busy event loop, short enough that a half-open connection
	// (a peer host that vanished without a RST) is redialled within
	// seconds rather than at the kernel's TCP timeout.
	deadIntervals = 6

	// maxBatchBytes is where the writer stops adding queued messages to a
	// batch and writes it; bigger batches save few syscalls and delay the
	// first message in them.
	maxBatchBytes = 256 << 10

	// retainBatchBytes is the largest batch buffer the writer keeps for
	// reuse, so that one huge message does not pin its buffer.
	retainBatchBytes = 4 << 20
)

// runPeer owns the outbound side of one peer: it dials, shakes hands,
// writes the peer's queue in batches, and redials with backoff when the
// connection fails. Messages queued while the peer is unreachable are
// dropped and counted.
func (t *Transport) runPeer(p *peer) {
	defer t.wg.Done()
	bo := backoff{min: t.cfg.MinBackoff, max: t.cfg.MaxBackoff}
	log := t.logger.With(slog.Uint64("peer", p.id), slog.String("addr", p.addr))
	warned := false // the current outage was logged at WARN
	var buf []byte
	for {
		msg := "cannot connect to replication peer; retrying"
		c, fr, sess, err := t.dial(p)
		if err == nil {
			bo.reset()
			warned = false
			p.m.connects.Inc()
			p.m.connected.Store(true)
			log.Info("replication connection established", slog.String("auth", authName(t.cfg.Security.mode())))
			buf, err = t.serveOutbound(p, c, fr, sess, buf)
			p.m.connected.Store(false)
			t.closeConn(c)
			msg = "replication connection to peer lost; redialling"
		} else if reason := rejectionReason(err); reason != "" && reason != rejectTimeout && !t.isClosed() {
			t.m.handshakeRejected(reason)
			msg = "replication peer's handshake rejected; retrying"
		}
		if t.isClosed() || p.ctx.Err() != nil {
			return
		}
		// Log the first failure of an outage at WARN and the retries at
		// DEBUG: a peer down for an hour is one line, not thousands.
		level := slog.LevelDebug
		if !warned {
			level, warned = slog.LevelWarn, true
		}
		log.Log(context.Background(), level, msg,
			slog.String("error", err.Error()), slog.String("reason", failureReason(err)))
		if !t.dropFor(p, bo.next()) {
			return
		}
	}
}

// failureReason classifies a connection error for logs.
func failureReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, wire.ErrCorruptFrame), errors.Is(err, errProtocol):
		return "rejected frame"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "network"
	}
}

// dropFor waits d, dropping (and counting) whatever is queued for p in the
// meantime. It reports false when the transport closes or p is removed.
func (t *Transport) dropFor(p *peer, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-p.queue:
			p.m.dropped.Inc()
		}
	}
}

// dial connects to p and shakes hands, all within DialTimeout: TLS first
// in that mode, which verifies that p's certificate chains to the cluster
// CA and names p's host. It returns the connection with its reader,
// positioned after the peer's hello (and proof), and the session that
// authenticates frames after a shared-secret handshake.
func (t *Transport) dial(p *peer) (net.Conn, *wire.FrameReader, *session, error) {
	ctx, cancel := context.WithTimeout(p.ctx, t.cfg.DialTimeout)
	defer cancel()
	raw, err := t.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, nil, nil, err
	}
	if !t.track(raw) {
		raw.Close()
		return nil, nil, nil, net.ErrClosed
	}
	setNoDelay(raw)
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	c := raw
	if t.cfg.Security.TLS != nil {
		host, _, _ := net.SplitHostPort(p.addr)
		tc := tls.Client(raw, t.cfg.Security.TLS.ClientConfig(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			t.closeConn(raw)
			return nil, nil, nil, reject(rejectTLS, fmt.Errorf("TLS handshake with node %d at %s: %w", p.id, p.addr, err))
		}
		c = tc
	}
	fr, sess, err := t.handshake(p, c)
	if err != nil {
		t.closeConn(raw)
		return nil, nil, nil, err
	}
	c.SetDeadline(time.Time{})
	return c, fr, sess, nil
}

// handshake sends this node's hello on a dialled connection and checks the
// peer's answer: the node that answers must be the one the configuration
// puts at that address, with the same auth mode, and with a secret the
// two proofs must verify, the dialler's first.
func (t *Transport) handshake(p *peer, c net.Conn) (*wire.FrameReader, *session, error) {
	mine := hello{auth: t.cfg.Security.mode(), from: t.cfg.NodeID, to: p.id, apiAddr: t.cfg.APIAddr}
	if mine.auth == authSecret {
		rand.Read(mine.nonce[:])
	}
	helloD := appendHello(make([]byte, 0, maxHelloSize), mine)
	frame := controlFrame(make([]byte, 0, wire.FrameHeaderSize+maxHelloSize), func(b []byte) []byte { return append(b, helloD...) })
	if _, err := c.Write(frame); err != nil {
		return nil, nil, err
	}
	p.m.bytesSent.Add(uint64(len(frame)))
	fr := wire.NewFrameReader(c)
	fr.SetLimit(maxHelloSize)
	payload, err := fr.ReadPayload()
	if err != nil {
		if errors.Is(err, wire.ErrCorruptFrame) {
			p.m.rejected.Inc()
		}
		return nil, nil, err
	}
	p.m.bytesReceived.Add(uint64(len(payload) + wire.FrameHeaderSize))
	h, err := decodeHello(payload)
	switch {
	case err != nil:
	case h.from != p.id || h.to != t.cfg.NodeID:
		err = reject(rejectWrongNode, fmt.Errorf("%w: the node at %s is node %d answering node %d; expected node %d answering node %d",
			errProtocol, p.addr, h.from, h.to, p.id, t.cfg.NodeID))
	case h.auth != mine.auth:
		err = reject(rejectAuthMode, fmt.Errorf("%w: node %d authenticates by %s, this node by %s", errProtocol, p.id, authName(h.auth), authName(mine.auth)))
	}
	if err != nil {
		p.m.rejected.Inc()
		return nil, nil, err
	}
	var sess *session
	if mine.auth == authSecret {
		if sess, err = t.proveDialler(p, c, fr, append(helloD, payload...)); err != nil {
			return nil, nil, err
		}
	}
	p.apiAddr.Store(&h.apiAddr)
	p.touch(time.Now())
	// From now on the acceptor sends only pongs.
	fr.SetLimit(timestampFrameSize + sess.overhead())
	return fr, sess, nil
}

// proveDialler sends the dialler's proof of the transcript, then checks
// the acceptor's.
func (t *Transport) proveDialler(p *peer, c net.Conn, fr *wire.FrameReader, transcript []byte) (*session, error) {
	if err := t.sendProof(p, c, labelDiallerProof, transcript); err != nil {
		return nil, err
	}
	if err := t.checkProof(p, fr, labelAcceptorProof, transcript); err != nil {
		return nil, err
	}
	return newSession(t.cfg.Security.Secret, transcript, true), nil
}

// serveOutbound writes p's queue to c until the connection fails or the
// transport closes, pinging every PingInterval. buf is the batch buffer,
// returned for reuse by the next connection.
func (t *Transport) serveOutbound(p *peer, c net.Conn, fr *wire.FrameReader, sess *session, buf []byte) ([]byte, error) {
	readerDone := make(chan struct{})
	var readErr error
	go func() {
		defer close(readerDone)
		readErr = t.readPongs(p, c, fr, sess)
		c.Close() // unblocks a Write stuck on a peer that stopped reading
	}()
	defer func() {
		c.Close() // unblocks the pong reader
		<-readerDone
	}()

	ping := time.NewTicker(t.cfg.PingInterval)
	defer ping.Stop()
	var counts [wire.MaxType + 1]uint64 // messages in the batch, by type
	buf = t.appendPing(buf[:0], sess)   // measure the RTT at once
	for {
		if len(buf) > 0 {
			if _, err := c.Write(buf); err != nil {
				p.m.dropped.Add(sum(counts[:]))
				if errors.Is(err, net.ErrClosed) {
					// The pong reader closed the connection: report why.
					<-readerDone
					err = readErr
				}
				return buf[:0], err
			}
			p.m.bytesSent.Add(uint64(len(buf)))
			for typ, n := range counts {
				if n > 0 {
					p.m.sent[typ].Add(n)
					counts[typ] = 0
				}
			}
			if cap(buf) > retainBatchBytes {
				buf = nil
			}
			buf = buf[:0]
		}
		select {
		case <-p.ctx.Done():
			return buf, nil
		case <-readerDone:
			return buf, readErr
		case m := <-p.queue:
			buf = t.appendBatch(p, buf, &m, &counts, sess)
		case <-ping.C:
			buf = t.appendPing(buf, sess)
		}
	}
}

// appendBatch appends m, then every message already queued for p, up to
// maxBatchBytes: under load one Write carries many messages, and when idle
// a message goes out alone at once.
func (t *Transport) appendBatch(p *peer, buf []byte, m *wire.Message, counts *[wire.MaxType + 1]uint64, sess *session) []byte {
	for {
		buf = t.appendMessage(p, buf, m, counts, sess)
		if len(buf) >= maxBatchBytes {
			return buf
		}
		select {
		case *m = <-p.queue:
		default:
			return buf
		}
	}
}

// appendMessage appends one message frame. A message the decoder would
// refuse is a bug in the sender: it is dropped here rather than sent to
// make the peer drop the connection.
func (t *Transport) appendMessage(p *peer, buf []byte, m *wire.Message, counts *[wire.MaxType + 1]uint64, sess *session) []byte {
	err := m.Validate()
	if err == nil {
		var start int
		buf, start = wire.StartFrame(buf)
		payload := start + wire.FrameHeaderSize
		buf = append(buf, kindMessage)
		buf = wire.AppendMessage(buf, m)
		if n := len(buf) - payload + sess.overhead(); n > wire.MaxFrameSize {
			// Refused before sealing: the MAC counts only frames sent.
			buf, err = buf[:start], fmt.Errorf("%w: %d bytes, accepted 1..%d", wire.ErrFrameTooLarge, n, wire.MaxFrameSize)
		} else if buf, err = wire.FinishFrame(sess.seal(buf, payload), start); err == nil {
			counts[m.Type]++
			return buf
		}
	}
	p.m.dropped.Inc()
	t.logger.Error("replication message cannot be encoded; dropped",
		slog.Uint64("peer", p.id), slog.String("type", m.Type.String()), slog.String("error", err.Error()))
	return buf
}

// appendPing appends a ping frame stamped with the time since t.epoch,
// which the monotonic clock measures.
func (t *Transport) appendPing(buf []byte, sess *session) []byte {
	buf, start := wire.StartFrame(buf)
	buf = appendTimestamp(buf, kindPing, int64(time.Since(t.epoch)))
	buf = sess.seal(buf, start+wire.FrameHeaderSize)
	buf, _ = wire.FinishFrame(buf, start) // a ping is never out of range
	return buf
}

// readPongs reads the acceptor's side of an outbound connection, which
// carries only pongs, and records the RTT of each. It returns when the
// connection fails, breaks the protocol, or stays silent for deadIntervals
// pings.
func (t *Transport) readPongs(p *peer, c net.Conn, fr *wire.FrameReader, sess *session) error {
	silence := deadIntervals * t.cfg.PingInterval
	for {
		c.SetReadDeadline(time.Now().Add(silence))
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
		p.touch(time.Now())
		p.m.bytesReceived.Add(uint64(len(payload) + sess.overhead() + wire.FrameHeaderSize))
		sent, err := decodeTimestamp(payload, kindPong)
		if err != nil {
			p.m.rejected.Inc()
			return err
		}
		// A pong echoing something this connection never sent is
		// ignored rather than recorded as a nonsense RTT.
		if rtt := int64(time.Since(t.epoch)) - sent; sent > 0 && rtt >= 0 {
			p.m.rtt.Observe(rtt)
		}
	}
}

func sum(xs []uint64) uint64 {
	var n uint64
	for _, x := range xs {
		n += x
	}
	return n
}
