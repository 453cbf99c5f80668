package transport

import (
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kmb-db/kmb/store/wire"
	"github.com/kmb-db/kmb/telemetry/metric"
)

var (
	update  = flag.Bool("update", false, "rewrite golden files and fuzz seed corpora in testdata")
	verbose = flag.Bool("transport.log", false, "print the transports' logs")
)

// waitFor bounds every poll in these tests. It is generous because the
// race detector and a loaded machine slow everything down; a passing test
// never waits for it.
const waitFor = 10 * time.Second

// eventually polls cond until it holds, failing the test with what after
// waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", waitFor, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// node is one transport of a test cluster.
type node struct {
	id  uint64
	tr  *Transport
	reg *metric.Registry
	cfg Config // as given to New, Listen set
}

// testConfig is the configuration of node id in tests: fast backoff, so
// that a lost connection is repaired within milliseconds, and slow pings,
// so that a loaded machine (the race detector, parallel packages) never
// makes a live connection look dead and lose messages that a test counts.
// Tests about pings use fastPings.
func testConfig(id uint64) Config {
	return Config{
		NodeID:       id,
		APIAddr:      fmt.Sprintf("127.0.0.1:%d", 7000+id),
		DialTimeout:  2 * time.Second,
		MinBackoff:   5 * time.Millisecond,
		MaxBackoff:   50 * time.Millisecond,
		PingInterval: 2 * time.Second,
	}
}

// fastPings pings every 20ms, so that RTT samples and silence detection
// take milliseconds.
func fastPings(c *Config) { c.PingInterval = 20 * time.Millisecond }

// testLogger discards logs unless -transport.log is given.
func testLogger(id uint64) *slog.Logger {
	if !*verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With(slog.Uint64("test_node", id))
}

// listen binds a loopback port.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// deadAddr is a loopback address nobody listens on.
func deadAddr(t testing.TB) string {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startCluster starts n transports with ids 1..n on loopback. extra adds
// peers that are not started (ids above n), e.g. for a raw client to
// impersonate; tweak adjusts each configuration. Cleanup closes them all.
func startCluster(t testing.TB, n int, extra map[uint64]string, tweak func(*Config)) []*node {
	t.Helper()
	lns := make([]net.Listener, n)
	addrs := map[uint64]string{}
	for i := range lns {
		lns[i] = listen(t)
		addrs[uint64(i+1)] = lns[i].Addr().String()
	}
	for id, addr := range extra {
		addrs[id] = addr
	}
	nodes := make([]*node, n)
	for i := range nodes {
		id := uint64(i + 1)
		cfg := testConfig(id)
		cfg.Peers = map[uint64]string{}
		for pid, addr := range addrs {
			if pid != id {
				cfg.Peers[pid] = addr
			}
		}
		if tweak != nil {
			tweak(&cfg)
		}
		nodes[i] = startNode(t, cfg, lns[i])
	}
	return nodes
}

// startNode starts one transport on ln, or on cfg.Listen when ln is nil.
func startNode(t testing.TB, cfg Config, ln net.Listener) *node {
	t.Helper()
	reg := metric.NewRegistry()
	m := NewMetrics(reg, cfg.NodeID, slices.Collect(maps.Keys(cfg.Peers)))
	var tr *Transport
	var err error
	if ln != nil {
		tr, err = NewWithListener(cfg, ln, testLogger(cfg.NodeID), m)
		cfg.Listen = ln.Addr().String()
	} else {
		tr, err = New(cfg, testLogger(cfg.NodeID), m)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return &node{id: cfg.NodeID, tr: tr, reg: reg, cfg: cfg}
}

// waitConnected waits until every node's outbound connection to every
// other started node has completed its handshake.
func waitConnected(t testing.TB, nodes []*node) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				eventually(t, fmt.Sprintf("node %d is connected to node %d", a.id, b.id), func() bool {
					return a.metric("kmb_replication_connected", b.label()) == 1
				})
			}
		}
	}
}

// label is the node's peer label value.
func (n *node) label() string { return strconv.FormatUint(n.id, 10) }

// metric reads a counter or gauge series, or a histogram's count, from
// the node's registry; -1 if the series does not exist.
func (n *node) metric(name string, labelValues ...string) float64 {
	for _, f := range n.reg.Gather() {
		if f.Name != name {
			continue
		}
		for _, s := range f.Series {
			if slices.Equal(s.LabelValues, labelValues) {
				if s.Histogram != nil {
					return float64(s.Histogram.Count)
				}
				return s.Value
			}
		}
	}
	return -1
}

// recv receives n messages from tr, failing after waitFor.
func recv(t testing.TB, tr *Transport, n int) []wire.Message {
	t.Helper()
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	msgs := make([]wire.Message, 0, n)
	for len(msgs) < n {
		select {
		case m, ok := <-tr.Recv():
			if !ok {
				t.Fatalf("Recv closed after %d of %d messages", len(msgs), n)
			}
			msgs = append(msgs, m)
		case <-timeout.C:
			t.Fatalf("received %d of %d messages within %v", len(msgs), n, waitFor)
		}
	}
	return msgs
}

// recvNone fails if a message is waiting in tr's Recv.
func recvNone(t testing.TB, tr *Transport) {
	t.Helper()
	select {
	case m := <-tr.Recv():
		t.Fatalf("unexpected message %+v", m)
	default:
	}
}
