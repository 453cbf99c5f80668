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
// # Stream format
//
// A connection carries wire frames ([u32 LE length][u32 LE CRC32C]
// [payload], see package wire) whose payload starts with a kind byte:
//
//	kind 1  hello    both ways, first frame only
//	kind 2  message  dialler → acceptor
//	kind 3  ping     dialler → acceptor
//	kind 4  pong     acceptor → dialler
//
// A hello payload is at most 283 bytes:
//
//	u8       kind (1)
//	[4]byte  magic "KMBR"
//	u8       protocol version (1)
//	uvarint  sender's node id
//	uvarint  node id the sender means to talk to
//	uvarint  len(API address), at most 255, then the address bytes
//
// with minimal varints and no trailing bytes. The dialler sends its hello
// first; the acceptor checks the version, that the sender is one of its
// peers and that the hello is meant for it, and answers with its own hello,
// which the dialler checks names the node it dialled. Both record the API
// address the other advertised (PeerAPIAddr). The handshake must complete
// within Config.DialTimeout. An acceptor keeps one connection per peer: a
// newer connection from the same peer (in accept order, which is the
// peer's dial order) closes the older one, and an older one that finishes
// its handshake late is closed instead.
//
// A message payload is the kind byte (2) followed by the message encoded
// by wire.AppendMessage; the largest message is thus one byte short of
// wire.MaxFrameSize.
//
// A ping or pong payload is 9 bytes:
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
