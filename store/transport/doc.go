// Package transport carries replication messages (wire.Message) between
// kmbd replicas over TCP.
//
// # Connections
//
// Every replica dials every peer and sends its own messages only over the
// connections it dialled: node A sends to B over the connection A dialled,
// B sends to A over the one B dialled. Each direction thus has a single
// writer and a single reader, which keeps messages in order per pair and
// makes reconnection a purely local decision of the sender. The acceptor
// writes back on a connection only its hello and pongs.
//
// One writer goroutine per peer drains that peer's queue: it encodes the
// first message and every one already queued behind it (up to 256 KiB)
// into one reused buffer and writes them with a single Write, so that load
// turns into batches rather than syscalls. Send never blocks: when the
// queue (Config.QueueDepth) is full, or the peer is unreachable, the
// message is dropped and counted, which Viewstamped Replication tolerates
// by retrying. A failed connection is redialled after an exponential
// backoff (Config.MinBackoff doubling to Config.MaxBackoff, with the wait
// drawn from the upper half of the current step).
//
// Recv is a buffered channel (Config.QueueDepth) that applies
// backpressure: while it is full, readers stop reading, TCP pushes back on
// the peers' writers, and their queues fill and drop. A consumer that stops
// reading for 6 ping intervals also stops pongs, so the peers drop and
// redial their connections.
//
// Anything wrong on a connection (a bad length or checksum, a frame that
// does not decode, a failed handshake, an unknown peer, an unexpected
// frame kind) drops that connection, logged at WARN and counted in
// kmb_replication_frames_rejected_total, and nothing else. A message whose
// From is not the peer that shook hands (or whose To is not this node) is
// dropped and counted, and the connection kept.
//
// # Authentication
//
// Config.Security sets one of three modes, which every replica must share
// (a hello of another mode is refused):
//
//   - mutual TLS (cluster.tls_*): each connection runs TLS 1.2 or later
//     under the stream below. Both ends present a certificate that chains
//     to the cluster CA; the dialler checks that the acceptor's names the
//     host it dialled, and the acceptor that the dialler's names the host
//     cluster.replicas gives the node id its hello claims, so one
//     replica's certificate cannot speak for another. TLS protects every
//     frame; nothing below changes.
//   - shared secret (cluster.secret_file): both hellos carry a fresh
//     32-byte random nonce. With T the dialler's hello payload followed by
//     the acceptor's, the dialler sends a proof HMAC-SHA256(S, "kmb
//     replication v2 dialler proof\x00" || T), which the acceptor checks
//     before it answers with its own under "... acceptor proof\x00". A
//     recorded handshake is worthless: the other end's nonce is new each
//     time. Each direction then has its own key, HMAC-SHA256(S, "kmb
//     replication v2 dialler to acceptor\x00" || T) and "... acceptor to
//     dialler\x00", and every later frame payload ends in a 16-byte tag,
//     HMAC-SHA256(key, u64 LE frame counter || payload) truncated, the
//     counter starting at 0 in each direction. A frame that is forged,
//     replayed, reordered, dropped or reflected fails the next tag and
//     drops the connection.
//   - none: loopback, or cluster.allow_insecure.
//
// A handshake is also refused for a node id that is not in
// cluster.replicas, a hello meant for another node, another protocol
// version, garbage, a timeout, and a node id already connected from
// another host (a redial from the same host replaces its old connection as
// above). Each refusal is counted in
// kmb_replication_handshakes_rejected_total{reason} and logged at WARN at
// most once per remote host per minute. An acceptor records a peer's API
// address and last contact only once its handshake is authenticated.
//
// # Stream format
//
// A connection carries wire frames ([u32 LE length][u32 LE CRC32C]
// [payload], see package wire) whose payload starts with a kind byte:
//
//	kind 1  hello    both ways, first frame only
//	kind 2  message  dialler → acceptor
//	kind 3  ping     dialler → acceptor
//	kind 4  pong     acceptor → dialler
//	kind 5  proof    both ways, shared-secret mode only, after the hellos
//
// A hello payload (protocol version 2) is at most 316 bytes:
//
//	u8        kind (1)
//	[4]byte   magic "KMBR"
//	u8        protocol version (2)
//	u8        auth mode: 0 none, 1 mutual TLS, 2 shared secret
//	uvarint   sender's node id
//	uvarint   node id the sender means to talk to
//	uvarint   len(API address), at most 255, then the address bytes
//	[32]byte  nonce, in shared-secret mode only
//
// with minimal varints and no trailing bytes. A proof payload is the kind
// byte (5) and a 32-byte HMAC-SHA256. The dialler sends its hello
// first; the acceptor checks the version, the auth mode, that the sender
// is one of its peers and that the hello is meant for it, and answers
// with its own hello, which the dialler checks names the node it dialled.
// Both record the API address the other advertised (PeerAPIAddr). The
// handshake, TLS and proofs included, must complete within
// Config.DialTimeout. An acceptor keeps one connection per peer: a newer
// connection from the same peer (in accept order, which is the peer's
// dial order) closes the older one, and an older one that finishes its
// handshake late is closed instead.
//
// Version 1 had no auth byte, nonce, proofs or tags; a version 1 replica
// and a version 2 one refuse each other, so a cluster moves to version 2
// by restarting all its replicas together.
//
// A message payload is the kind byte (2) followed by the message encoded
// by wire.AppendMessage (and, in shared-secret mode, the tag); the
// largest message is thus one byte (17 with the tag) short of
// wire.MaxFrameSize.
//
// A ping or pong payload is 9 bytes (25 with the tag):
//
//	u8       kind (3 ping, 4 pong)
//	u64 LE   the dialler's monotonic clock, nanoseconds since its
//	         transport started
//
// The dialler pings on connecting and every Config.PingInterval; the
// acceptor echoes the timestamp in a pong, and the dialler records the
// difference in kmb_replication_peer_rtt_seconds. A connection that
// carries no frame for 6 ping intervals, in either direction, is presumed
// dead (a peer host that vanished leaves it half-open) and dropped, and
// the dialler redials. LastContact reports the last frame received from a
// peer on either connection.
//
// # Metrics
//
// NewMetrics registers the kmb_replication_* families and resolves every
// labelled child up front (peer × message type), so that sending and
// receiving record with atomic adds only. The peer label is the node id,
// plus "unknown" for frames rejected before a peer identified itself.
package transport
