package transport

import (
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
func (t *Transport) serveInbound(c net.Conn, seq uint64) {
	defer t.wg.Done()
	defer t.closeConn(c)
	log := t.logger.With(slog.String("remote_addr", c.RemoteAddr().String()))
	p, fr, err := t.readHello(c)
	if err == nil {
		if !t.setInbound(p, c, seq) {
			log.Info("replication connection from peer superseded by a newer one during its handshake", slog.Uint64("peer", p.id))
			return
		}
		defer t.clearInbound(p, c)
		err = t.answerHello(p, c, fr)
	}
	if err != nil {
		if !t.isClosed() {
			log.Warn("replication handshake failed; connection dropped",
				slog.String("error", err.Error()), slog.String("reason", failureReason(err)))
		}
		return
	}
	log = log.With(slog.Uint64("peer", p.id))
	err = t.readInbound(p, c, fr, log)
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

// readHello reads the dialler's hello and checks that it comes from a peer
// and is meant for this node. The whole handshake, answerHello included,
// must complete within DialTimeout.
func (t *Transport) readHello(c net.Conn) (*peer, *wire.FrameReader, error) {
	setNoDelay(c)
	c.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	fr := wire.NewFrameReader(c)
	fr.SetLimit(maxHelloSize) // nobody sends megabytes before saying who they are
	payload, err := fr.ReadPayload()
	if err != nil {
		if errors.Is(err, wire.ErrCorruptFrame) {
			t.m.unknown.Inc()
		}
		return nil, nil, err
	}
	h, err := decodeHello(payload)
	if err != nil {
		t.m.unknown.Inc()
		return nil, nil, err
	}
	p := t.peers[h.from]
	if p == nil {
		t.m.unknown.Inc()
		return nil, nil, fmt.Errorf("%w: node %d is not a peer of node %d", errProtocol, h.from, t.cfg.NodeID)
	}
	p.m.bytesReceived.Add(uint64(len(payload) + wire.FrameHeaderSize))
	if h.to != t.cfg.NodeID {
		p.m.rejected.Inc()
		return nil, nil, fmt.Errorf("%w: node %d dialled node %d, but this is node %d", errProtocol, h.from, h.to, t.cfg.NodeID)
	}
	// Record the peer before answering: once the dialler holds the
	// answer, PeerAPIAddr must already know it.
	p.apiAddr.Store(&h.apiAddr)
	p.touch(time.Now())
	return p, fr, nil
}

// answerHello sends this node's hello to the dialler p, ending the
// handshake.
func (t *Transport) answerHello(p *peer, c net.Conn, fr *wire.FrameReader) error {
	frame := controlFrame(make([]byte, 0, wire.FrameHeaderSize+maxHelloSize), func(b []byte) []byte {
		return appendHello(b, hello{from: t.cfg.NodeID, to: p.id, apiAddr: t.cfg.APIAddr})
	})
	if _, err := c.Write(frame); err != nil {
		return err
	}
	p.m.bytesSent.Add(uint64(len(frame)))
	c.SetDeadline(time.Time{})
	fr.SetLimit(wire.MaxFrameSize)
	return nil
}

// readInbound delivers p's messages and answers its pings until the
// connection fails, breaks the protocol, stays silent for deadIntervals
// pings, or the transport closes.
func (t *Transport) readInbound(p *peer, c net.Conn, fr *wire.FrameReader, log *slog.Logger) error {
	silence := deadIntervals * t.cfg.PingInterval
	// The read deadline is pushed back at most every quarter of the
	// silence allowed rather than before every frame, which would cost a
	// timer update per message under load.
	now := time.Now()
	c.SetReadDeadline(now.Add(silence))
	renewAt := now.Add(silence / 4)
	var pong [wire.FrameHeaderSize + timestampFrameSize]byte
	warned := false // a message with a forged sender was logged
	for {
		payload, err := fr.ReadPayload()
		if err != nil {
			if errors.Is(err, wire.ErrCorruptFrame) {
				p.m.rejected.Inc()
			}
			return err
		}
		now = time.Now()
		p.touch(now)
		p.m.bytesReceived.Add(uint64(len(payload) + wire.FrameHeaderSize))
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
			frame, _ = wire.FinishFrame(appendTimestamp(frame, kindPong, ts), start) // never out of range
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
