package transport

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/kmb-db/kmb/certs"
	"github.com/kmb-db/kmb/internal/testpki"
	"github.com/kmb-db/kmb/store/wire"
)

func secretOf(b byte) []byte { return bytes.Repeat([]byte{b}, MinSecretSize) }

// handshakes reads kmb_replication_handshakes_rejected_total{reason}.
func (n *node) handshakes(reason string) float64 {
	return n.metric("kmb_replication_handshakes_rejected_total", reason)
}

// exchange checks that a and b deliver a message each way.
func exchange(t *testing.T, a, b *node, seq uint64) {
	t.Helper()
	a.tr.Send(testMessage(b.id, seq))
	if m := recv(t, b.tr, 1)[0]; m.From != a.id || m.Op != seq {
		t.Fatalf("node %d received %+v", b.id, m)
	}
	b.tr.Send(testMessage(a.id, seq+1))
	if m := recv(t, a.tr, 1)[0]; m.From != b.id || m.Op != seq+1 {
		t.Fatalf("node %d received %+v", a.id, m)
	}
}

// A cluster with a shared secret connects, exchanges messages and pings
// (every frame under a MAC), and refuses a node with another secret, a
// node without one, and a replayed handshake, while it keeps working.
func TestSharedSecret(t *testing.T) {
	nodes := startCluster(t, 2, map[uint64]string{3: deadAddr(t)}, func(c *Config) {
		c.Security.Secret = secretOf(1)
		fastPings(c)
	})
	waitConnected(t, nodes)
	a, b := nodes[0], nodes[1]
	exchange(t, a, b, 1)
	eventually(t, "RTT samples over MAC'd pings and pongs", func() bool { return a.metric("kmb_replication_peer_rtt_seconds", "2") >= 3 })

	// Node 3 with another secret, then with none, dials node 1.
	for _, tt := range []struct {
		name   string
		secret []byte
		reason string
	}{{"wrong secret", secretOf(2), rejectBadProof}, {"no secret", nil, rejectAuthMode}} {
		t.Run(tt.name, func(t *testing.T) {
			before := a.handshakes(tt.reason)
			cfg := testConfig(3)
			cfg.Peers = map[uint64]string{1: a.cfg.Listen}
			cfg.Security.Secret = tt.secret
			intruder := startNode(t, cfg, listen(t))
			eventually(t, "node 1 rejects node 3 as "+tt.reason, func() bool { return a.handshakes(tt.reason) > before })
			if intruder.metric("kmb_replication_connected", "1") == 1 {
				t.Fatal("node 3 connected")
			}
			intruder.tr.Close()
			recvNone(t, a.tr)
			exchange(t, a, b, 10)
		})
	}

	// A handshake recorded from a genuine dialler, replayed: node 1's
	// fresh nonce makes the old proof worthless.
	c := dialRaw(t, a)
	mine := hello{auth: authSecret, from: 3, to: 1, apiAddr: "raw:1"}
	rand.Read(mine.nonce[:])
	helloD := appendHello(nil, mine)
	if _, err := c.Write(frame(helloD)); err != nil {
		t.Fatal(err)
	}
	fr := wire.NewFrameReader(c)
	helloA, err := fr.ReadPayload()
	if err != nil {
		t.Fatal(err)
	}
	helloA = bytes.Clone(helloA) // the reader reuses its buffer
	proof := frame(appendProof(nil, keyed(secretOf(1), labelDiallerProof, append(append([]byte{}, helloD...), helloA...))))
	if _, err := c.Write(proof); err != nil {
		t.Fatal(err)
	}
	if _, err := fr.ReadPayload(); err != nil { // node 1's proof, after ours
		t.Fatal(err)
	}
	sess := newSession(secretOf(1), append(append([]byte{}, helloD...), helloA...), true)
	buf, start := wire.StartFrame(nil)
	buf = append(buf, kindMessage)
	m := wire.Message{Type: wire.TypeCommit, From: 3, To: 1, Op: 42}
	buf = wire.AppendMessage(buf, &m)
	buf, _ = wire.FinishFrame(sess.seal(buf, start+wire.FrameHeaderSize), start)
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, a.tr, 1)[0]; got.Op != 42 {
		t.Fatalf("the genuine raw dialler's message: %+v", got)
	}
	// The same frame again: its counter is spent.
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, c)
	recvNone(t, a.tr)

	before := a.handshakes(rejectBadProof)
	replay := dialRaw(t, a)
	if _, err := replay.Write(bytesOf(frame(helloD), proof)); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, replay)
	if got := a.handshakes(rejectBadProof); got != before+1 {
		t.Errorf("a replayed handshake: bad_proof %v, want %v", got, before+1)
	}
	recvNone(t, a.tr)
	exchange(t, a, b, 20)
}

// clusterTLS issues node certificates naming 127.0.0.1 from ca and gives
// each node a reloader of its own.
func clusterTLS(t *testing.T, ca *testpki.CA, name string, hosts ...string) *certs.Reloader {
	t.Helper()
	l := ca.Issue(t, name, name, hosts...)
	r, err := certs.New(certs.Files{CertFile: l.CertFile, KeyFile: l.KeyFile, CAFile: ca.CertFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Mutual TLS: the cluster connects; a replica whose certificate chains to
// another CA is refused, and so is one whose certificate, though from the
// cluster CA, does not name the address of the node it claims to be.
func TestMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	// Node 3 lives at 127.0.0.3 in the configuration.
	ln3, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	addr3 := ln3.Addr().String()
	ln3.Close()
	nodes := startCluster(t, 2, map[uint64]string{3: addr3}, func(c *Config) {
		c.Security.TLS = clusterTLS(t, ca, "node", "127.0.0.1")
	})
	waitConnected(t, nodes)
	a, b := nodes[0], nodes[1]
	exchange(t, a, b, 1)

	foreign := testpki.NewCA(t, "another CA")
	for _, tt := range []struct {
		name   string
		tls    *certs.Reloader
		reason string
	}{
		{"foreign CA", clusterTLS(t, foreign, "n3", "127.0.0.3"), rejectTLS},
		{"certificate of another node", clusterTLS(t, ca, "n1", "127.0.0.1"), rejectCertIdentity},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := a.handshakes(tt.reason)
			cfg := testConfig(3)
			cfg.Peers = map[uint64]string{1: a.cfg.Listen}
			cfg.Security.TLS = tt.tls
			intruder := startNode(t, cfg, listenOn(t, "127.0.0.3:0"))
			eventually(t, "node 1 rejects node 3 as "+tt.reason, func() bool { return a.handshakes(tt.reason) > before })
			intruder.tr.Close()
			recvNone(t, a.tr)
			exchange(t, a, b, 10)
		})
	}

	// A plain TCP client speaking the protocol without TLS is refused too.
	before := a.handshakes(rejectTLS)
	c := dialRaw(t, a)
	if _, err := c.Write(helloFrame(3, 1)); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, c)
	if got := a.handshakes(rejectTLS); got != before+1 {
		t.Errorf("a plaintext hello: tls rejections %v, want %v", got, before+1)
	}

	// And a TLS client without a certificate.
	tc, err := tls.Dial("tcp", a.tr.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err == nil {
		tc.Write(helloFrame(3, 1))
		expectDropped(t, tc)
		tc.Close()
	}
	exchange(t, a, b, 20)
}

// A node id connected from one host is refused from another, and the
// first connection keeps working; a redial from the same host replaces
// it as before.
func TestDuplicateIDFromElsewhere(t *testing.T) {
	nodes := startCluster(t, 2, map[uint64]string{3: deadAddr(t)}, nil)
	a := nodes[0]
	first := dialRaw(t, a)
	if _, err := first.Write(helloFrame(3, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.NewFrameReader(first).ReadPayload(); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	other, err := d.Dial("tcp", a.tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Write(bytesOf(helloFrame(3, 1), messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 1, Op: 9}))); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, other)
	if got := a.handshakes(rejectDuplicate); got != 1 {
		t.Errorf("duplicate_id rejections %v, want 1", got)
	}
	recvNone(t, a.tr)
	if _, err := first.Write(messageFrame(wire.Message{Type: wire.TypeCommit, From: 3, To: 1, Op: 1})); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, a.tr, 1)[0]; m.Op != 1 {
		t.Fatalf("delivered %+v", m)
	}
}

// Rejections are counted every time and logged once per host per minute.
func TestRejectLog(t *testing.T) {
	var l rejectLog
	now := time.Now()
	if !l.allow("10.0.0.1", now) || l.allow("10.0.0.1", now.Add(30*time.Second)) || !l.allow("10.0.0.2", now) {
		t.Fatal("not once per host")
	}
	if !l.allow("10.0.0.1", now.Add(61*time.Second)) {
		t.Fatal("not again after a minute")
	}
}

func listenOn(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
