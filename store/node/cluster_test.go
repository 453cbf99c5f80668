package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// startCluster runs three nodes over loopback TCP and returns them once one
// leads and all are ready.
func startCluster(t testing.TB) (map[uint64]*Node, *Node) {
	return startClusterWith(t, func(uint64, *Deps) {})
}

// startClusterWith lets the caller adjust each node's Deps.
func startClusterWith(t testing.TB, adjust func(id uint64, d *Deps)) (map[uint64]*Node, *Node) {
	t.Helper()
	return startClusterConfig(t, func(uint64, *Config) {}, adjust)
}

// startClusterConfig lets the caller adjust each node's Config and Deps.
func startClusterConfig(t testing.TB, adjustConfig func(id uint64, c *Config), adjust func(id uint64, d *Deps)) (map[uint64]*Node, *Node) {
	t.Helper()
	replicas := map[uint64]string{}
	var lns []net.Listener
	for id := uint64(1); id <= 3; id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		replicas[id] = ln.Addr().String()
	}
	for _, ln := range lns {
		ln.Close()
	}
	nodes := map[uint64]*Node{}
	for id := uint64(1); id <= 3; id++ {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.DataDir, cfg.Replicas = id, t.TempDir(), replicas
		cfg.APIAddr = fmt.Sprintf("127.0.0.1:%d", 17000+id)
		adjustConfig(id, &cfg)
		deps := Deps{Metrics: metric.NewRegistry()}
		adjust(id, &deps)
		n, err := New(cfg, deps)
		if err != nil {
			t.Fatal(err)
		}
		go n.Run()
		t.Cleanup(n.Stop)
		nodes[id] = n
	}
	var leader *Node
	deadline := time.Now().Add(30 * time.Second)
	for leader == nil {
		if time.Now().After(deadline) {
			t.Fatal("no leader within 30s")
		}
		time.Sleep(10 * time.Millisecond)
		ready := 0
		for _, n := range nodes {
			if n.Ready() == nil {
				ready++
				if n.Status().IsLeader {
					leader = n
				}
			}
		}
		if ready < 3 {
			leader = nil
		}
	}
	return nodes, leader
}

func TestClusterReplicates(t *testing.T) {
	nodes, leader := startCluster(t)
	for i := 0; i < 20; i++ {
		if _, err := leader.Append(context.Background(), Write{Tenant: "acme", Entries: entries(fmt.Sprintf("k%d", i), fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for id, n := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := n.Get("acme", "k19")
			if err == nil && string(v.Data) == "19" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d never applied k19: %v", id, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A follower refuses writes, naming the leader.
	for _, n := range nodes {
		if n == leader {
			continue
		}
		_, err := n.Append(context.Background(), Write{Tenant: "acme", Entries: entries("k", "1")})
		nl, ok := err.(*NotLeaderError)
		if !ok || nl.LeaderID != leader.cfg.NodeID || nl.LeaderAPIAddr != leader.cfg.APIAddr {
			t.Fatalf("follower write: %v", err)
		}
		break
	}
	// A retried request with the same ids executes once.
	r1, err := leader.Append(context.Background(), Write{Tenant: "acme", Entries: entries("once", "1"), ClientID: 42, RequestID: 1})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := leader.Append(context.Background(), Write{Tenant: "acme", Entries: entries("once", "1"), ClientID: 42, RequestID: 1})
	if err != nil || r2 != r1 {
		t.Fatalf("retry answered %+v %v, first %+v", r2, err, r1)
	}
	if _, err := leader.Append(context.Background(), Write{Tenant: "acme", Entries: entries("once", "1"), ClientID: 42}); err == nil {
		t.Fatal("an older request id was accepted")
	}
}

// BenchmarkClusterAppend measures a three-node loopback cluster: every write
// is durable on a quorum (fsynced on two of three) and applied on the
// leader before it returns.
//
//	go test ./store/node -run '^$' -bench ClusterAppend -benchtime 3s -count 3
func BenchmarkClusterAppend(b *testing.B) {
	value := []byte(`"` + strings.Repeat("v", 98) + `"`) // 100 bytes of JSON
	for _, writers := range []int{1, 16, 64} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("writers=%d/batch=%d", writers, batch), func(b *testing.B) {
				_, leader := startCluster(b)
				runAppendBench(b, leader, writers, batch, value)
			})
		}
	}
}

// A write's deadline is enforced by the loop: without a quorum, a write
// proposed and not committed by its deadline is answered
// ErrOutcomeUnknown; one whose deadline passed before it was proposed,
// context.DeadlineExceeded, and nothing is appended.
func TestWriteDeadline(t *testing.T) {
	nodes, leader := startCluster(t)
	for _, n := range nodes {
		if n != leader {
			n.Stop()
		}
	}
	ctx := context.Background()
	start := time.Now()
	_, err := leader.Append(ctx, Write{Tenant: "acme", Entries: entries("k", "1"), Deadline: start.Add(300 * time.Millisecond)})
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Append without a quorum = %v, want ErrOutcomeUnknown", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("answered after %v, before its deadline", took)
	}
	op := leader.Status().OpNumber
	if _, err := leader.Append(ctx, Write{Tenant: "acme", Entries: entries("k", "2"), Deadline: time.Now().Add(-time.Second)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append past its deadline = %v, want context.DeadlineExceeded", err)
	}
	if got := leader.Status().OpNumber; got != op {
		t.Fatalf("a write past its deadline was proposed: op %d → %d", op, got)
	}
}
