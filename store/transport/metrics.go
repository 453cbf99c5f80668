package transport

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kmb-db/kmb/store/wire"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// unknownPeer labels frames rejected on connections whose peer has not
// identified itself (or claimed an id outside the cluster), which keeps the
// peer label bounded by the cluster size plus one.
const unknownPeer = "unknown"

// rttBuckets are upper bounds in seconds, from loopback to a congested WAN.
var rttBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
}

// Metrics are a Transport's instruments. Every labelled child is resolved
// when its peer is added (at construction, or when a reconfiguration adds
// one), so recording is an atomic add: no allocation, no lock, no map
// write. One Metrics serves one Transport.
type Metrics struct {
	mu     sync.Mutex
	peers  map[uint64]*peerMetrics // guarded by mu; a peer's children are never removed
	labels map[uint64]string       // guarded by mu
	self   uint64
	fams   peerFamilies

	unknown    *metric.Counter            // frames rejected from unidentified connections
	handshakes map[string]*metric.Counter // rejected handshakes by reason; read-only
}

// peerFamilies are the labelled families a peer's children come from.
type peerFamilies struct {
	sent, received, bytesSent, bytesReceived, dropped, connects, rejected *metric.CounterVec
	rtt                                                                   *metric.HistogramVec
}

// peer returns the instruments of peer id, resolving them the first time.
func (m *Metrics) peer(id uint64) *peerMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pm := m.peers[id]; pm != nil {
		return pm
	}
	peer := strconv.FormatUint(id, 10)
	f := m.fams
	pm := &peerMetrics{
		bytesSent:     f.bytesSent.With(peer),
		bytesReceived: f.bytesReceived.With(peer),
		dropped:       f.dropped.With(peer),
		connects:      f.connects.With(peer),
		rejected:      f.rejected.With(peer),
		rtt:           f.rtt.With(peer),
	}
	for typ := wire.Type(1); typ <= wire.MaxType; typ++ {
		pm.sent[typ] = f.sent.With(peer, typ.String())
		pm.received[typ] = f.received.With(peer, typ.String())
	}
	m.peers[id], m.labels[id] = pm, peer
	return pm
}

// handshakeRejected counts a refused handshake.
func (m *Metrics) handshakeRejected(reason string) {
	if c := m.handshakes[reason]; c != nil {
		c.Inc()
	}
}

// peerMetrics are the instruments of one peer.
type peerMetrics struct {
	sent, received [wire.MaxType + 1]*metric.Counter // indexed by wire.Type; [0] unused
	bytesSent      *metric.Counter
	bytesReceived  *metric.Counter
	dropped        *metric.Counter
	connects       *metric.Counter
	rejected       *metric.Counter
	rtt            *metric.Histogram
	connected      atomic.Bool // the outbound connection is up; read at scrape
}

// NewMetrics registers the kmb_replication_* families in r and resolves
// their children for every peer except self:
//
//	kmb_replication_messages_sent_total{peer,type}
//	kmb_replication_messages_received_total{peer,type}
//	kmb_replication_bytes_sent_total{peer}
//	kmb_replication_bytes_received_total{peer}
//	kmb_replication_send_dropped_total{peer}
//	kmb_replication_connects_total{peer}
//	kmb_replication_connected{peer}
//	kmb_replication_peer_rtt_seconds{peer}
//	kmb_replication_frames_rejected_total{peer}
//	kmb_replication_handshakes_rejected_total{reason}
//
// peer is the node id in decimal; type is wire.Type.String().
func NewMetrics(r *metric.Registry, self uint64, peers []uint64) *Metrics {
	sent := r.NewCounterVec("kmb_replication_messages_sent_total",
		"Replication messages written to a peer's connection, by message type.", "peer", "type")
	received := r.NewCounterVec("kmb_replication_messages_received_total",
		"Replication messages received from a peer and delivered to consensus, by message type.", "peer", "type")
	bytesSent := r.NewCounterVec("kmb_replication_bytes_sent_total",
		"Bytes written to a peer's replication connection, framing, handshakes and pings included.", "peer")
	bytesReceived := r.NewCounterVec("kmb_replication_bytes_received_total",
		"Bytes read from a peer's replication connections, framing, handshakes and pongs included.", "peer")
	dropped := r.NewCounterVec("kmb_replication_send_dropped_total",
		"Replication messages dropped before reaching a peer: its queue was full, it was unreachable, or the connection failed under them. Consensus retries.", "peer")
	connects := r.NewCounterVec("kmb_replication_connects_total",
		"Outbound replication connections established (handshake completed).", "peer")
	rejected := r.NewCounterVec("kmb_replication_frames_rejected_total",
		"Frames rejected as corrupt or breaking the protocol, and messages claiming a sender other than the connection's peer; peer=\"unknown\" before the peer identified itself.", "peer")
	rtt := r.NewHistogramVec("kmb_replication_peer_rtt_seconds",
		"Round-trip time of transport pings to a peer.",
		metric.HistogramOpts{Buckets: rttBuckets, Scale: 1e-9}, "peer")

	handshakes := r.NewCounterVec("kmb_replication_handshakes_rejected_total",
		"Replication handshakes refused, by reason: malformed, version, unknown_node, wrong_node, auth_mode, bad_proof, tls, certificate_identity, duplicate_id, timeout.", "reason")
	m := &Metrics{
		peers: map[uint64]*peerMetrics{}, labels: map[uint64]string{}, self: self,
		fams: peerFamilies{
			sent: sent, received: received, bytesSent: bytesSent, bytesReceived: bytesReceived,
			dropped: dropped, connects: connects, rejected: rejected, rtt: rtt,
		},
		unknown: rejected.With(unknownPeer), handshakes: map[string]*metric.Counter{},
	}
	for _, reason := range rejectReasons {
		m.handshakes[reason] = handshakes.With(reason)
	}
	for _, id := range slices.Compact(slices.Sorted(slices.Values(peers))) {
		if id != self {
			m.peer(id)
		}
	}
	r.NewGaugeVecFunc("kmb_replication_connected",
		"1 while the outbound replication connection to a peer is up, else 0.",
		[]string{"peer"}, func(emit func(float64, ...string)) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for id, pm := range m.peers {
				v := 0.0
				if pm.connected.Load() {
					v = 1
				}
				emit(v, m.labels[id])
			}
		})
	return m
}
