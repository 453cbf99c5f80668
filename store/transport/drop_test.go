package transport

import (
	"net"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// A full queue drops and counts, and Send never blocks.
func TestQueueFullDropsCounted(t *testing.T) {
	// The "peer" accepts the connection and never answers the hello, so
	// the writer sits in its handshake and takes nothing from the queue.
	stuck := listen(t)
	defer stuck.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := stuck.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	cfg := testConfig(1)
	cfg.Peers = map[uint64]string{2: stuck.Addr().String()}
	cfg.QueueDepth = 1
	cfg.DialTimeout = time.Minute
	n := startNode(t, cfg, listen(t))
	var c net.Conn
	select {
	case c = <-accepted:
		defer c.Close()
	case <-time.After(waitFor):
		t.Fatal("node 1 never dialled")
	}

	start := time.Now()
	for seq := range uint64(100) {
		n.tr.Send(testMessage(2, seq))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 Sends took %v", d)
	}
	if got := n.metric("kmb_replication_send_dropped_total", "2"); got != 99 {
		t.Errorf("send_dropped_total = %v, want 99 (queue depth 1)", got)
	}
	if got := n.metric("kmb_replication_messages_sent_total", "2", "prepare"); got != 0 {
		t.Errorf("messages_sent_total = %v before any connection", got)
	}
}

// Messages for an unreachable peer are dropped and counted rather than
// kept for a reconnection that may never come.
func TestUnreachablePeerDropsCounted(t *testing.T) {
	cfg := testConfig(1)
	cfg.Peers = map[uint64]string{2: deadAddr(t)}
	n := startNode(t, cfg, listen(t))
	for seq := range uint64(10) {
		n.tr.Send(testMessage(2, seq))
	}
	eventually(t, "all 10 messages are counted as dropped", func() bool {
		return n.metric("kmb_replication_send_dropped_total", "2") == 10
	})
	if got := n.metric("kmb_replication_connected", "2"); got != 0 {
		t.Errorf("connected = %v", got)
	}
	if got := n.metric("kmb_replication_connects_total", "2"); got != 0 {
		t.Errorf("connects_total = %v", got)
	}
	n.tr.Send(testMessage(42, 1)) // not a peer: dropped, no panic
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 10 * time.Millisecond, max: 80 * time.Millisecond}
	for round := range 2 {
		for i, step := range []time.Duration{10, 20, 40, 80, 80, 80} {
			step *= time.Millisecond
			for range 50 {
				saved := b.cur
				d := b.next()
				if d < step/2 || d > step {
					t.Fatalf("round %d, attempt %d: wait %v outside [%v, %v]", round, i, d, step/2, step)
				}
				b.cur = saved
			}
			b.next()
		}
		b.reset()
	}
}

// A peer that completes the handshake and then neither reads nor answers
// pings (a hung process, a host gone without a RST) is presumed dead after
// deadIntervals pings, even with the writer blocked on a full socket, and
// is redialled.
func TestStalledPeerIsRedialled(t *testing.T) {
	stalled := listen(t)
	defer stalled.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := stalled.Accept()
			if err != nil {
				return
			}
			// Answer the hello as node 2, then go silent.
			if _, err := wire.NewFrameReader(c).ReadPayload(); err == nil {
				c.Write(helloFrame(2, 1))
			}
			accepted <- c
		}
	}()
	cfg := testConfig(1)
	fastPings(&cfg)
	cfg.Peers = map[uint64]string{2: stalled.Addr().String()}
	n := startNode(t, cfg, listen(t))
	conns = append(conns, <-accepted)
	eventually(t, "node 1 completes the handshake", func() bool { return n.metric("kmb_replication_connected", "2") == 1 })

	// Far more than loopback's socket buffers hold, so the writer blocks.
	big := wire.Message{Type: wire.TypePrepare, To: 2, View: 3, Ops: []*kmblog.Op{{Op: 10, View: 3, Tenant: "t", FirstPosition: 10,
		Entries: []kmblog.Entry{{Key: "k", Value: make([]byte, 512<<10)}}}}}
	for range 64 {
		n.tr.Send(big)
	}
	select {
	case c := <-accepted:
		conns = append(conns, c)
	case <-time.After(waitFor):
		t.Fatal("node 1 never redialled the stalled peer")
	}
	if got := n.metric("kmb_replication_send_dropped_total", "2"); got == 0 {
		t.Error("no message counted as dropped with the connection")
	}
}
