package transport

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kmb-db/kmb/store/wire"
)

// dialRaw opens a plain TCP connection to n's replication address.
func dialRaw(t testing.TB, n *node) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", n.tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// frame frames payload correctly.
func frame(payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, payload...)
}

func helloFrame(from, to uint64) []byte {
	return frame(appendHello(nil, hello{from: from, to: to, apiAddr: "raw:1"}))
}

func messageFrame(m wire.Message) []byte {
	return frame(wire.AppendMessage([]byte{kindMessage}, &m))
}

// expectDropped fails unless the server closes c within waitFor.
func expectDropped(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitFor))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was not dropped within %v", waitFor)
	}
}

// Garbage, truncated frames and protocol violations drop the offending
// connection, and only it: the cluster's own connections keep working.
func TestBadFramesDropTheConnection(t *testing.T) {
	// Node 3 is configured but not started: raw clients play it.
	nodes := startCluster(t, 2, map[uint64]string{3: deadAddr(t)}, func(c *Config) { c.DialTimeout = 500 * time.Millisecond })
	waitConnected(t, nodes)
	a, b := nodes[0], nodes[1]

	asPeer3 := helloFrame(3, 1)
	good := frame(appendHello(nil, hello{from: 3, to: 1}))
	badCRC := append([]byte(nil), good...)
	badCRC[4] ^= 1
	tests := []struct {
		name      string
		send      []byte
		halfClose bool   // then close the write side
		rejected  string // peer label counted as rejected, "" for none
	}{
		{name: "http request", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), rejected: unknownPeer},
		{name: "zero length", send: make([]byte, 8), rejected: unknownPeer},
		{name: "oversized hello", send: frame(make([]byte, maxHelloSize+1)), rejected: unknownPeer},
		{name: "hello with bad checksum", send: badCRC, rejected: unknownPeer},
		{name: "bad magic", send: frame([]byte{kindHello, 'N', 'O', 'P', 'E', protocolVersion, authNone, 3, 1, 0}), rejected: unknownPeer},
		{name: "other protocol version", send: frame([]byte{kindHello, 'K', 'M', 'B', 'R', 1, 3, 1, 0}), rejected: unknownPeer},
		{name: "message before hello", send: messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 1}), rejected: unknownPeer},
		{name: "unknown node", send: helloFrame(9, 1), rejected: unknownPeer},
		{name: "hello meant for another node", send: helloFrame(3, 2), rejected: "3"},
		{name: "truncated hello", send: asPeer3[:len(asPeer3)-1], halfClose: true},
		{name: "silent until the handshake times out", send: nil},
		{name: "bad checksum", send: bytesOf(asPeer3, badCRC), rejected: "3"},
		{name: "length above MaxFrameSize", send: bytesOf(asPeer3, binary.LittleEndian.AppendUint32(nil, wire.MaxFrameSize+1), make([]byte, 4)), rejected: "3"},
		{name: "undecodable message", send: bytesOf(asPeer3, frame([]byte{kindMessage, wire.Version, 0})), rejected: "3"},
		{name: "unknown frame kind", send: bytesOf(asPeer3, frame([]byte{9})), rejected: "3"},
		{name: "second hello", send: bytesOf(asPeer3, asPeer3), rejected: "3"},
		{name: "pong from the dialler", send: bytesOf(asPeer3, frame(appendTimestamp(nil, kindPong, 1))), rejected: "3"},
		{name: "short ping", send: bytesOf(asPeer3, frame([]byte{kindPing, 1, 2})), rejected: "3"},
		{name: "truncated frame", send: bytesOf(asPeer3, messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 1})[:12]), halfClose: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string]float64{}
			for _, l := range []string{"2", "3", unknownPeer} {
				before[l] = a.metric("kmb_replication_frames_rejected_total", l)
			}
			c := dialRaw(t, a)
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.halfClose {
				c.(*net.TCPConn).CloseWrite()
			}
			expectDropped(t, c)
			for l, was := range before {
				want := was
				if l == tt.rejected {
					want++
				}
				// The counter moves before the connection closes.
				if got := a.metric("kmb_replication_frames_rejected_total", l); got != want {
					t.Errorf("frames_rejected_total{peer=%q} = %v, want %v", l, got, want)
				}
			}
			recvNone(t, a.tr)
		})
	}

	// The cluster's own connections were never disturbed.
	for _, n := range nodes {
		if got := n.metric("kmb_replication_connects_total", map[uint64]string{1: "2", 2: "1"}[n.id]); got != 1 {
			t.Errorf("node %d connected %v times; a bad client disturbed it", n.id, got)
		}
	}
	b.tr.Send(testMessage(1, 1))
	recv(t, a.tr, 1)
	a.tr.Send(testMessage(2, 2))
	recv(t, b.tr, 1)
}

// A message whose sender or receiver does not match the handshake is
// dropped and counted, without dropping the connection; pings are echoed.
func TestForgedSenderDropped(t *testing.T) {
	nodes := startCluster(t, 2, map[uint64]string{3: deadAddr(t)}, nil)
	a := nodes[0]
	c := dialRaw(t, a)
	fr := wire.NewFrameReader(c)
	if _, err := c.Write(helloFrame(3, 1)); err != nil {
		t.Fatal(err)
	}
	p, err := fr.ReadPayload()
	if err != nil {
		t.Fatal(err)
	}
	if h, err := decodeHello(p); err != nil || h != (hello{from: 1, to: 3, apiAddr: a.cfg.APIAddr}) {
		t.Fatalf("node 1 answered %+v, %v", h, err)
	}
	// Node 1 answers the hello before it records the peer's address.
	eventually(t, "node 1 to record the raw client's API address", func() bool { return a.tr.PeerAPIAddr(3) == "raw:1" })

	forged := bytesOf(
		messageFrame(wire.Message{Type: wire.TypeCommit, From: 2, To: 1, Op: 1}), // claims to be node 2
		messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 2, Op: 2}), // meant for node 2
		messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 1, Op: 3}), // fine
		frame(appendTimestamp(nil, kindPing, 12345)),
	)
	if _, err := c.Write(forged); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, a.tr, 1)[0]; m.From != 3 || m.Op != 3 {
		t.Fatalf("delivered %+v, want only the honest message", m)
	}
	p, err = fr.ReadPayload()
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := decodeTimestamp(p, kindPong); err != nil || ts != 12345 {
		t.Fatalf("pong = %d, %v; want the ping's timestamp echoed", ts, err)
	}
	if got := a.metric("kmb_replication_frames_rejected_total", "3"); got != 2 {
		t.Errorf("frames_rejected_total{peer=3} = %v, want 2", got)
	}
	if got := a.metric("kmb_replication_messages_received_total", "3", "commit"); got != 1 {
		t.Errorf("messages_received_total{peer=3,type=commit} = %v, want 1", got)
	}
	recvNone(t, a.tr)
}

// A peer that dials again replaces its previous connection, which is
// closed: one inbound connection per peer keeps delivery in order.
func TestRedialReplacesInboundConnection(t *testing.T) {
	nodes := startCluster(t, 2, map[uint64]string{3: deadAddr(t)}, nil)
	a := nodes[0]
	first := dialRaw(t, a)
	if _, err := first.Write(helloFrame(3, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.NewFrameReader(first).ReadPayload(); err != nil {
		t.Fatal(err)
	}
	second := dialRaw(t, a)
	if _, err := second.Write(bytesOf(helloFrame(3, 1), messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 1, Op: 7}))); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, first)
	if m := recv(t, a.tr, 1)[0]; m.Op != 7 {
		t.Fatalf("delivered %+v", m)
	}
}

// A connection that finishes its handshake after a newer one from the
// same peer is stale (the peer gave up on it) and must not displace the
// newer one.
func TestStaleConnectionDoesNotDisplaceNewer(t *testing.T) {
	nodes := startCluster(t, 2, map[uint64]string{3: deadAddr(t)}, nil)
	a := nodes[0]
	older := dialRaw(t, a)
	eventually(t, "node 1 accepts the older connection", func() bool {
		a.tr.mu.Lock()
		defer a.tr.mu.Unlock()
		return len(a.tr.conns) >= 3 // dialled to 2, accepted from 2, older
	})
	newer := dialRaw(t, a)
	if _, err := newer.Write(bytesOf(helloFrame(3, 1), messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 1, Op: 1}))); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, a.tr, 1)[0]; m.Op != 1 {
		t.Fatalf("delivered %+v", m)
	}
	if _, err := older.Write(helloFrame(3, 1)); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, older)
	if _, err := newer.Write(messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 1, Op: 2})); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, a.tr, 1)[0]; m.Op != 2 {
		t.Fatalf("delivered %+v", m)
	}
}
