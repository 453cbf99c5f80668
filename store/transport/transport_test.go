package transport

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// testMessage is message number seq from one node to another; its type
// and content vary with seq so that every type crosses the wire.
func testMessage(to, seq uint64) wire.Message {
	typ := wire.Type(1 + seq%uint64(wire.MaxType))
	m := wire.Message{Type: typ, To: to, View: 3, Op: seq, Commit: seq / 2, TraceParent: fmt.Sprintf("tp-%d", seq)}
	switch typ {
	case wire.TypePrepare, wire.TypeDoViewChange, wire.TypeStartView, wire.TypeOps:
		m.Ops = []*kmblog.Op{{Op: seq, View: 3, Tenant: "t", FirstPosition: seq, Entries: []kmblog.Entry{
			{Key: fmt.Sprintf("k%d", seq), Value: []byte(`{"v":1}`)},
		}}}
	case wire.TypeRecoveryResponse:
		m.Flags = wire.FlagNormal
	case wire.TypeCheckpointChunk:
		m.Data = []byte(fmt.Sprintf("chunk-%d", seq))
	}
	return m
}

// Every pair delivers every message, in the order sent, with From set to
// the sender, and the metrics count them.
func TestDeliveryInOrderPerPair(t *testing.T) {
	const perPair = 40 * int(wire.MaxType) // every type as often
	nodes := startCluster(t, 3, nil, nil)
	waitConnected(t, nodes)

	for _, a := range nodes {
		go func() {
			for seq := uint64(1); seq <= uint64(perPair); seq++ {
				for _, b := range nodes {
					if b != a {
						a.tr.Send(testMessage(b.id, seq))
					}
				}
			}
		}()
	}
	for _, b := range nodes {
		next := map[uint64]uint64{} // sender → next expected seq
		for _, m := range recv(t, b.tr, 2*perPair) {
			if m.To != b.id || m.From == b.id || m.From < 1 || m.From > 3 {
				t.Fatalf("node %d received a message from %d to %d", b.id, m.From, m.To)
			}
			next[m.From]++
			want := testMessage(b.id, next[m.From])
			want.From = m.From
			if len(m.Raw) != len(m.Ops) {
				t.Fatalf("node %d: message with %d ops and %d raw encodings", b.id, len(m.Ops), len(m.Raw))
			}
			m.Raw = nil // the ops' encodings as received (wire's tests check them)
			if !reflect.DeepEqual(m, want) {
				t.Fatalf("node %d: message %d from node %d:\n got %+v\nwant %+v", b.id, next[m.From], m.From, m, want)
			}
		}
		recvNone(t, b.tr)
	}

	perType := float64(perPair / int(wire.MaxType))
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			for typ := wire.Type(1); typ <= wire.MaxType; typ++ {
				eventually(t, fmt.Sprintf("node %d counts %v sent to node %d", a.id, typ, b.id), func() bool {
					return a.metric("kmb_replication_messages_sent_total", b.label(), typ.String()) == perType
				})
				if got := b.metric("kmb_replication_messages_received_total", a.label(), typ.String()); got != perType {
					t.Errorf("node %d counted %v %v received from node %d, want %v", b.id, got, typ, a.id, perType)
				}
			}
			if got := a.metric("kmb_replication_send_dropped_total", b.label()); got != 0 {
				t.Errorf("node %d dropped %v messages to node %d", a.id, got, b.id)
			}
			if got := a.metric("kmb_replication_bytes_sent_total", b.label()); got < float64(perPair*20) {
				t.Errorf("node %d counted %v bytes sent to node %d", a.id, got, b.id)
			}
			if got := b.metric("kmb_replication_bytes_received_total", a.label()); got < float64(perPair*20) {
				t.Errorf("node %d counted %v bytes received from node %d", b.id, got, a.id)
			}
		}
	}
}

// Send stamps the sender's id whatever the caller put in From.
func TestSendSetsFrom(t *testing.T) {
	nodes := startCluster(t, 2, nil, nil)
	waitConnected(t, nodes)
	m := testMessage(2, 1)
	m.From = 2 // a lie
	nodes[0].tr.Send(m)
	if got := recv(t, nodes[1].tr, 1)[0]; got.From != 1 {
		t.Fatalf("From = %d, want 1", got.From)
	}
}

func TestPeerAPIAddrAndLastContact(t *testing.T) {
	start := time.Now()
	nodes := startCluster(t, 3, nil, fastPings)
	waitConnected(t, nodes)
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			if got := a.tr.PeerAPIAddr(b.id); got != b.cfg.APIAddr {
				t.Errorf("node %d: PeerAPIAddr(%d) = %q, want %q", a.id, b.id, got, b.cfg.APIAddr)
			}
			if got := a.tr.LastContact(b.id); got.Before(start.Add(-time.Second)) || got.After(time.Now()) {
				t.Errorf("node %d: LastContact(%d) = %v, not since the test started", a.id, b.id, got)
			}
		}
		if got := a.tr.PeerAPIAddr(42); got != "" {
			t.Errorf("PeerAPIAddr of a stranger = %q", got)
		}
		if got := a.tr.LastContact(42); !got.IsZero() {
			t.Errorf("LastContact of a stranger = %v", got)
		}
	}
	// Pings keep LastContact fresh on an idle cluster.
	before := nodes[0].tr.LastContact(2)
	eventually(t, "LastContact advances on an idle connection", func() bool {
		return nodes[0].tr.LastContact(2).After(before)
	})
}

func TestRTTObserved(t *testing.T) {
	nodes := startCluster(t, 3, nil, fastPings)
	waitConnected(t, nodes)
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				eventually(t, fmt.Sprintf("node %d has RTT samples for node %d", a.id, b.id), func() bool {
					return a.metric("kmb_replication_peer_rtt_seconds", b.label()) >= 3
				})
			}
		}
	}
}

// A peer that restarts is redialled, in both directions.
func TestReconnectAfterPeerRestart(t *testing.T) {
	nodes := startCluster(t, 2, nil, nil)
	waitConnected(t, nodes)
	a, b := nodes[0], nodes[1]
	a.tr.Send(testMessage(2, 1))
	recv(t, b.tr, 1)

	b.tr.Close()
	eventually(t, "node 1 notices node 2 is gone", func() bool {
		return a.metric("kmb_replication_connected", "2") == 0
	})
	cfg := b.cfg // same address, bound by Start this time
	b = startNode(t, cfg, nil)
	waitConnected(t, []*node{a, b})

	// Messages sent while node 2 was down may be lost; once the
	// connection is back, they flow again.
	a.tr.Send(testMessage(2, 2))
	if got := recv(t, b.tr, 1)[0]; got.Op != 2 || got.From != 1 {
		t.Fatalf("after the restart node 2 received %+v", got)
	}
	b.tr.Send(testMessage(1, 3))
	if got := recv(t, a.tr, 1)[0]; got.Op != 3 || got.From != 2 {
		t.Fatalf("after the restart node 1 received %+v", got)
	}
	if got := a.metric("kmb_replication_connects_total", "2"); got < 2 {
		t.Errorf("node 1 counted %v connections to node 2, want at least 2", got)
	}
}

// Every family exists with its labels, resolved for every peer and type
// before any traffic.
func TestMetricFamilies(t *testing.T) {
	nodes := startCluster(t, 2, map[uint64]string{3: deadAddr(t)}, nil)
	a := nodes[0]
	want := map[string][]string{
		"kmb_replication_messages_sent_total":       {"peer", "type"},
		"kmb_replication_messages_received_total":   {"peer", "type"},
		"kmb_replication_bytes_sent_total":          {"peer"},
		"kmb_replication_bytes_received_total":      {"peer"},
		"kmb_replication_send_dropped_total":        {"peer"},
		"kmb_replication_connects_total":            {"peer"},
		"kmb_replication_connected":                 {"peer"},
		"kmb_replication_peer_rtt_seconds":          {"peer"},
		"kmb_replication_frames_rejected_total":     {"peer"},
		"kmb_replication_handshakes_rejected_total": {"reason"},
	}
	for _, f := range a.reg.Gather() {
		labels, ok := want[f.Name]
		if !ok {
			t.Errorf("unexpected family %s", f.Name)
			continue
		}
		delete(want, f.Name)
		if !reflect.DeepEqual(f.LabelNames, labels) {
			t.Errorf("%s labels %v, want %v", f.Name, f.LabelNames, labels)
		}
		series := 2 // peers 2 and 3
		switch {
		case len(labels) == 2:
			series *= int(wire.MaxType)
		case f.Name == "kmb_replication_frames_rejected_total":
			series++ // "unknown"
		case f.Name == "kmb_replication_handshakes_rejected_total":
			series = len(rejectReasons)
		}
		if len(f.Series) != series {
			t.Errorf("%s has %d series, want %d", f.Name, len(f.Series), series)
		}
	}
	for name := range want {
		t.Errorf("family %s missing", name)
	}
	waitConnected(t, nodes)
	if got := a.metric("kmb_replication_connected", "3"); got != 0 {
		t.Errorf("connected to a dead peer = %v", got)
	}
}

// Close stops every goroutine, closes every connection (including one
// stuck in its handshake) and closes Recv.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	baseline := runtime.NumGoroutine()
	nodes := startCluster(t, 3, map[uint64]string{4: deadAddr(t)}, nil)
	waitConnected(t, nodes)
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.tr.Send(testMessage(b.id, 1))
			}
		}
	}
	for _, b := range nodes {
		recv(t, b.tr, 2)
	}
	silent := dialRaw(t, nodes[0]) // never says hello
	defer silent.Close()
	eventually(t, "node 1 accepts the silent connection", func() bool {
		nodes[0].tr.mu.Lock()
		defer nodes[0].tr.mu.Unlock()
		return len(nodes[0].tr.conns) >= 5 // 2 dialled, 2 accepted, the silent one
	})

	for _, n := range nodes {
		if err := n.tr.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok := <-n.tr.Recv(); ok {
			t.Fatalf("node %d: Recv delivers after Close", n.id)
		}
		n.tr.Close() // idempotent
	}
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Close, %d before the cluster started:\n%s", runtime.NumGoroutine(), baseline, buf)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStartErrors(t *testing.T) {
	taken := listen(t)
	defer taken.Close()
	cfg := testConfig(1)
	cfg.Listen = taken.Addr().String()
	cfg.Peers = map[uint64]string{2: deadAddr(t)}
	tr, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err == nil || !strings.Contains(err.Error(), "cluster.replicas") {
		t.Fatalf("Start on a taken port: %v", err)
	}
	tr.Close()
	if err := tr.Start(); err == nil {
		t.Fatal("Start after Close succeeded")
	}

	tr, err = NewWithListener(cfg, listen(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	if tr.Addr() == nil || tr.Addr().String() == taken.Addr().String() {
		t.Fatalf("Addr = %v", tr.Addr())
	}
}

// SetPeers adds a replica (a reconfiguration), which is dialled and
// exchanges messages at once, and removes one, whose connections close and
// to which nothing is sent any more; the peers that stay keep their
// connections.
func TestSetPeers(t *testing.T) {
	nodes := startCluster(t, 2, nil, nil)
	waitConnected(t, nodes)
	a, b := nodes[0], nodes[1]
	connects := a.metric("kmb_replication_connects_total", "2")

	// Node 3 starts knowing 1 and 2; 1 learns of it.
	cfg3 := testConfig(3)
	cfg3.Peers = map[uint64]string{1: a.cfg.Listen, 2: b.cfg.Listen}
	c := startNode(t, cfg3, listen(t))
	if err := a.tr.SetPeers(map[uint64]string{2: b.cfg.Listen, 3: c.cfg.Listen}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node 1 is connected to node 3", func() bool { return a.metric("kmb_replication_connected", "3") == 1 })
	a.tr.Send(wire.Message{Type: wire.TypeCommit, To: 3, View: 4, Commit: 9})
	if got := recv(t, c.tr, 1)[0]; got.From != 1 || got.Commit != 9 {
		t.Fatalf("node 3 received %+v", got)
	}
	c.tr.Send(wire.Message{Type: wire.TypeCommit, To: 1, View: 4, Commit: 10})
	if got := recv(t, a.tr, 1)[0]; got.From != 3 || got.Commit != 10 {
		t.Fatalf("node 1 received %+v", got)
	}
	if got := a.metric("kmb_replication_connects_total", "2"); got != connects {
		t.Fatalf("the connection to node 2, which stayed, was redialled: %v connects, was %v", got, connects)
	}

	// Node 2 is removed from node 1's peers.
	if err := a.tr.SetPeers(map[uint64]string{3: c.cfg.Listen}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node 1's connection to node 2 is down", func() bool { return a.metric("kmb_replication_connected", "2") == 0 })
	if a.tr.PeerAPIAddr(2) != "" || !a.tr.LastContact(2).IsZero() {
		t.Fatal("node 2 is still a peer of node 1")
	}
	a.tr.Send(wire.Message{Type: wire.TypeCommit, To: 2, View: 4}) // dropped, with a warning
	b.tr.Send(wire.Message{Type: wire.TypeCommit, To: 1, View: 4, Commit: 11})
	a.tr.Send(wire.Message{Type: wire.TypeCommit, To: 3, View: 4, Commit: 12})
	if got := recv(t, c.tr, 1)[0]; got.Commit != 12 {
		t.Fatalf("node 3 received %+v", got)
	}
	select {
	case m := <-a.tr.Recv():
		t.Fatalf("node 1 received %+v from a node it removed", m)
	case <-time.After(100 * time.Millisecond):
	}

	// Bad input changes nothing.
	for _, bad := range []map[uint64]string{{1: "127.0.0.1:1"}, {0: "127.0.0.1:1"}, {4: "no-port"}} {
		if err := a.tr.SetPeers(bad); err == nil {
			t.Fatalf("SetPeers(%v) succeeded", bad)
		}
	}
	if a.tr.PeerAPIAddr(3) == "" {
		t.Fatal("a refused SetPeers changed the peers")
	}
}

// bytesOf concatenates frames, for raw clients.
func bytesOf(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
