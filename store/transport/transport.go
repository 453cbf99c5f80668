package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmb-db/kmb/store/wire"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// Transport carries replication messages between this replica and its
// peers over TCP. Create it with New or NewWithListener, then Start it.
// Send, Recv, PeerAPIAddr and LastContact are safe for concurrent use.
type Transport struct {
	cfg    Config
	logger *slog.Logger
	m      *Metrics
	peers  atomic.Pointer[map[uint64]*peer] // replaced whole by SetPeers, under mu
	recv   chan wire.Message
	epoch  time.Time // origin of ping timestamps; carries a monotonic reading
	dialer net.Dialer

	serverTLS *tls.Config // the acceptor's, with cluster TLS; nil otherwise
	rejects   rejectLog

	ctx    context.Context // cancelled by Close, which aborts dials
	cancel context.CancelFunc
	done   chan struct{} // closed by Close

	mu      sync.Mutex
	ln      net.Listener
	started bool
	closed  bool
	conns   map[net.Conn]struct{} // every open connection, for Close

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// peer is the state of one other replica.
type peer struct {
	id          uint64
	addr        string
	queue       chan wire.Message
	m           *peerMetrics
	apiAddr     atomic.Pointer[string]
	lastContact atomic.Int64 // Unix nanoseconds of the last frame from the peer; 0 if none
	inbound     net.Conn     // the accepted connection from the peer; guarded by Transport.mu
	inboundSeq  uint64       // its place in accept order; guarded by Transport.mu

	// ctx is cancelled when the peer is removed (SetPeers) or the
	// transport closes: its writer stops.
	ctx    context.Context
	cancel context.CancelFunc
}

// peerMap returns the current peers; the map must not be modified.
func (t *Transport) peerMap() map[uint64]*peer { return *t.peers.Load() }

// newPeer makes the state of peer id at addr (its writer not started).
func (t *Transport) newPeer(id uint64, addr string) *peer {
	p := &peer{id: id, addr: addr, queue: make(chan wire.Message, t.cfg.QueueDepth), m: t.m.peer(id)}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	return p
}

// touch records that a frame arrived from the peer.
func (p *peer) touch(now time.Time) { p.lastContact.Store(now.UnixNano()) }

// New returns a Transport for cfg, with defaults applied and validated.
// logger may be nil (nothing is logged); m may be nil (metrics go to a
// private registry), otherwise it must have been made for cfg's peers.
// Start binds cfg.Listen.
func New(cfg Config, logger *slog.Logger, m *Metrics) (*Transport, error) {
	return newTransport(cfg, nil, logger, m)
}

// NewWithListener is New with the replication listener already bound,
// which lets tests learn every replica's address (port 0) before any
// configuration names it. cfg.Listen is set to ln's address. The
// Transport owns ln from now on, even if New fails.
func NewWithListener(cfg Config, ln net.Listener, logger *slog.Logger, m *Metrics) (*Transport, error) {
	cfg.Listen = ln.Addr().String()
	t, err := newTransport(cfg, ln, logger, m)
	if err != nil {
		ln.Close()
	}
	return t, err
}

func newTransport(cfg Config, ln net.Listener, logger *slog.Logger, m *Metrics) (*Transport, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(metric.NewRegistry(), cfg.NodeID, slices.Collect(maps.Keys(cfg.Peers)))
	}
	t := &Transport{
		cfg:    cfg,
		logger: logger,
		m:      m,
		recv:   make(chan wire.Message, cfg.QueueDepth),
		epoch:  time.Now(),
		done:   make(chan struct{}),
		ln:     ln,
		conns:  map[net.Conn]struct{}{},
	}
	if cfg.Security.TLS != nil {
		t.serverTLS = cfg.Security.TLS.ServerConfig(tls.RequireAndVerifyClientCert)
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	peers := make(map[uint64]*peer, len(cfg.Peers))
	for id, addr := range cfg.Peers {
		peers[id] = t.newPeer(id, addr)
	}
	t.peers.Store(&peers)
	return t, nil
}

// SetPeers replaces the set of peers (a reconfiguration): new ones are
// dialled, removed ones disconnected and their queued messages dropped, and
// a peer whose address changed is redialled at the new one. Peers that
// stay keep their connections. It fails, changing nothing, when an
// address is not host:port or names this node.
func (t *Transport) SetPeers(addrs map[uint64]string) error {
	for id, addr := range addrs {
		if id == 0 || id == t.cfg.NodeID {
			return fmt.Errorf("transport: SetPeers: node id %d cannot be a peer of node %d", id, t.cfg.NodeID)
		}
		if err := validAddr(addr, false); err != nil {
			return fmt.Errorf("transport: SetPeers: node %d: %w", id, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("transport: SetPeers after Close")
	}
	old := t.peerMap()
	next := make(map[uint64]*peer, len(addrs))
	var added, removed []*peer
	for id, addr := range addrs {
		if p := old[id]; p != nil && p.addr == addr {
			next[id] = p
			continue
		}
		p := t.newPeer(id, addr)
		next[id], added = p, append(added, p)
	}
	for id, p := range old {
		if next[id] != p {
			removed = append(removed, p)
		}
	}
	t.peers.Store(&next)
	for _, p := range removed {
		p.cancel()
		if p.inbound != nil {
			p.inbound.Close()
		}
		t.logger.Info("replication peer removed", slog.Uint64("peer", p.id), slog.String("addr", p.addr))
	}
	for _, p := range added {
		t.logger.Info("replication peer added", slog.Uint64("peer", p.id), slog.String("addr", p.addr))
		if t.started {
			t.wg.Add(1)
			go t.runPeer(p)
		}
	}
	return nil
}

// Start binds the listen address unless a listener was given, so that a
// taken port fails here rather than later, then starts accepting peers'
// connections and one writer per peer, which dials it.
func (t *Transport) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return errors.New("transport: Start after Close")
	case t.started:
		return errors.New("transport: already started")
	}
	if t.ln == nil {
		ln, err := net.Listen("tcp", t.cfg.Listen)
		if err != nil {
			return fmt.Errorf("transport: cluster.replicas: listen on this node's address %s: %w", t.cfg.Listen, err)
		}
		t.ln = ln
	}
	t.started = true
	peers := t.peerMap()
	t.wg.Add(1 + len(peers))
	go t.acceptLoop(t.ln)
	for _, p := range peers {
		go t.runPeer(p)
	}
	t.logger.Info("replication transport started",
		slog.Uint64("node_id", t.cfg.NodeID),
		slog.String("listen", t.ln.Addr().String()),
		slog.Int("peers", len(peers)))
	return nil
}

// Addr is the replication listener's address, nil before it is bound.
func (t *Transport) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Send queues m for m.To and returns at once. It sets m.From to this
// node's id. When the queue is full, or the peer is unreachable, the
// message is dropped and counted: consensus tolerates loss and retries.
// The transport reads m and its ops after Send returns, so the caller must
// not modify them. A message to a node that is not a peer is dropped with
// a warning.
func (t *Transport) Send(m wire.Message) {
	p := t.peerMap()[m.To]
	if p == nil {
		t.logger.Warn("replication message to a node that is not a peer dropped",
			slog.Uint64("to", m.To), slog.String("type", m.Type.String()))
		return
	}
	m.From = t.cfg.NodeID
	select {
	case p.queue <- m:
	default:
		p.m.dropped.Inc()
	}
}

// Recv delivers every message received from the peers, in order per peer.
// Each message's From is the id its connection authenticated in the
// handshake. Close closes the channel.
func (t *Transport) Recv() <-chan wire.Message { return t.recv }

// PeerAPIAddr is the client API address peer id advertised in its last
// handshake, "" if it has not shaken hands or is not a peer.
func (t *Transport) PeerAPIAddr(id uint64) string {
	if p := t.peerMap()[id]; p != nil {
		if s := p.apiAddr.Load(); s != nil {
			return *s
		}
	}
	return ""
}

// LastContact is when the last frame of any kind (a pong included) arrived
// from peer id; the zero Time if none did or id is not a peer.
func (t *Transport) LastContact(id uint64) time.Time {
	if p := t.peerMap()[id]; p != nil {
		if ns := p.lastContact.Load(); ns != 0 {
			return time.Unix(0, ns)
		}
	}
	return time.Time{}
}

// Close stops the transport: it closes the listener and every connection,
// waits for all its goroutines, and closes Recv. Messages still queued are
// abandoned. Close is idempotent.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.cancel()
		close(t.done)
		t.mu.Lock()
		t.closed = true
		ln := t.ln
		for c := range t.conns {
			c.Close()
		}
		t.mu.Unlock()
		if ln != nil {
			ln.Close()
		}
		t.wg.Wait()
		close(t.recv)
	})
	return nil
}

// isClosed reports whether Close has begun.
func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// track registers c so that Close closes it; it reports false, and the
// caller must close c, once Close has begun.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// closeConn closes c and forgets it.
func (t *Transport) closeConn(c net.Conn) {
	c.Close()
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// setInbound makes c, accepted seq-th, the connection of p and closes the
// one it replaces: a peer that redials has given up on its old connection,
// which may be half-open, and one connection per direction keeps delivery
// in order. A peer dials one connection at a time, so accept order is its
// dial order: if a newer connection got here first, c is stale and
// setInbound returns errSuperseded. A connection from another host than
// the peer's live one is refused (duplicate_id): a peer redials from its
// own host, and whoever else claims its id is not it, or is a second
// process started with the same node id.
func (t *Transport) setInbound(p *peer, c net.Conn, seq uint64) error {
	t.mu.Lock()
	if seq < p.inboundSeq {
		t.mu.Unlock()
		return errSuperseded
	}
	old := p.inbound
	if old != nil && hostOf(old.RemoteAddr()) != hostOf(c.RemoteAddr()) {
		t.mu.Unlock()
		p.m.rejected.Inc()
		return reject(rejectDuplicate, fmt.Errorf("%w: node %d is connected from %s already; refused the connection from %s", errProtocol, p.id, hostOf(old.RemoteAddr()), hostOf(c.RemoteAddr())))
	}
	p.inbound, p.inboundSeq = c, seq
	t.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// errSuperseded: a newer connection from the same peer completed its
// handshake first.
var errSuperseded = errors.New("transport: superseded by a newer connection")

// clearInbound forgets c as p's accepted connection, unless it was
// replaced already.
func (t *Transport) clearInbound(p *peer, c net.Conn) {
	t.mu.Lock()
	if p.inbound == c {
		p.inbound = nil
	}
	t.mu.Unlock()
}

// setNoDelay turns Nagle's algorithm off: the writer already batches, and
// a PrepareOK held back for 40ms would stall commits.
func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}

// controlFrame frames a small control payload built by build into buf.
func controlFrame(buf []byte, build func([]byte) []byte) []byte {
	buf, start := wire.StartFrame(buf[:0])
	buf, err := wire.FinishFrame(build(buf), start)
	if err != nil {
		panic("transport: control frame out of range: " + err.Error()) // sizes are constants
	}
	return buf
}
