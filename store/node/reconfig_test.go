package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/status"
	"github.com/kmb-db/kmb/store/vsr"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// freeAddr is a loopback address nobody listens on yet.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runNode starts a node with cfg and stops it at the end of the test.
func runNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	return runNodeReg(t, cfg, metric.NewRegistry())
}

// A follower that failed for good is replaced by a new node on a new
// address: it joins with an empty data dir, catches up, counts in the
// quorum; the old one, started again, learns it was removed and serves
// nothing; the new member restarts from its data dir alone.
func TestReconfigureReplace(t *testing.T) {
	nodes, leader := startCluster(t)
	ctx := context.Background()
	for i := range 20 {
		if _, err := leader.Append(ctx, Write{Tenant: "acme", Entries: entries(fmt.Sprintf("k%d", i), fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	var victim, other *Node
	for _, n := range nodes {
		switch {
		case n == leader:
		case victim == nil:
			victim = n
		default:
			other = n
		}
	}
	victimCfg := victim.cfg
	victim.Stop()

	// Refused configurations change nothing.
	for _, bad := range [][]vsr.Member{
		nil,
		{{ID: leader.cfg.NodeID, Addr: leader.cfg.Replicas[leader.cfg.NodeID]}, {ID: leader.cfg.NodeID, Addr: "127.0.0.1:1"}},
		{{ID: other.cfg.NodeID, Addr: other.cfg.Replicas[other.cfg.NodeID]}},                                      // removes the leader
		{{ID: leader.cfg.NodeID, Addr: "127.0.0.1:9"}, {ID: other.cfg.NodeID, Addr: "127.0.0.1:9"}},               // an address twice
		{{ID: leader.cfg.NodeID, Addr: leader.cfg.Replicas[leader.cfg.NodeID]}, {ID: 300, Addr: "127.0.0.1:9"}},   // id out of range
		{{ID: leader.cfg.NodeID, Addr: leader.cfg.Replicas[leader.cfg.NodeID]}, {ID: 7, Addr: "no-port"}},         // not host:port
		{{ID: leader.cfg.NodeID, Addr: leader.cfg.Replicas[leader.cfg.NodeID]}, {ID: other.cfg.NodeID, Addr: ""}}, // no address
	} {
		if _, err := leader.Reconfigure(ctx, bad, "test"); !errors.Is(err, ErrBadConfig) {
			t.Fatalf("Reconfigure(%v) = %v, want ErrBadConfig", bad, err)
		}
	}
	if _, err := other.Reconfigure(ctx, []vsr.Member{{ID: other.cfg.NodeID, Addr: other.cfg.Replicas[other.cfg.NodeID]}, {ID: leader.cfg.NodeID, Addr: leader.cfg.Replicas[leader.cfg.NodeID]}}, "test"); !errors.As(err, new(*NotLeaderError)) {
		t.Fatalf("a follower reconfigured: %v", err)
	}
	if s := leader.Status(); s.Epoch != 0 || s.Reconfiguring {
		t.Fatalf("a refused change moved the epoch: %+v", s)
	}

	// Node 4 joins with the new configuration.
	replicas := map[uint64]string{
		leader.cfg.NodeID: leader.cfg.Replicas[leader.cfg.NodeID],
		other.cfg.NodeID:  other.cfg.Replicas[other.cfg.NodeID],
		4:                 freeAddr(t),
	}
	cfg4 := DefaultConfig()
	cfg4.NodeID, cfg4.DataDir, cfg4.Replicas, cfg4.Join, cfg4.APIAddr = 4, t.TempDir(), replicas, true, "127.0.0.1:17004"
	n4 := runNode(t, cfg4)
	waitFor(t, 5*time.Second, "node 4 reports joining", func() bool { return n4.Ready() != nil && n4.Status().Epoch == 0 })

	members := fromMap(replicas)
	res, err := leader.Reconfigure(ctx, members, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if res.Epoch != 1 || res.Op == 0 {
		t.Fatalf("Reconfigure = %+v", res)
	}
	waitFor(t, 20*time.Second, "node 4 is ready with the log", func() bool {
		v, err := n4.Get("acme", "k19")
		return n4.Ready() == nil && err == nil && string(v.Data) == "19"
	})
	for _, n := range []*Node{leader, other, n4} {
		waitFor(t, 10*time.Second, "every member in epoch 1", func() bool { return n.Status().Epoch == 1 })
		s := n.Status()
		var got []uint64
		for _, r := range s.Replicas.List() {
			got = append(got, r.ID)
			if r.Addr != replicas[r.ID] {
				t.Fatalf("node %d: replica %d at %s, want %s", n.cfg.NodeID, r.ID, r.Addr, replicas[r.ID])
			}
		}
		if !slices.Equal(got, memberIDsOf(members)) || s.ClusterSize != 3 {
			t.Fatalf("node %d: status replicas %v, size %d", n.cfg.NodeID, got, s.ClusterSize)
		}
		f, ok, err := readClusterFile(n.cfg.DataDir)
		if err != nil || !ok || f.Epoch != 1 || len(f.Members) != 3 {
			t.Fatalf("node %d: %s = %+v ok=%v err=%v", n.cfg.NodeID, ClusterFile, f, ok, err)
		}
	}
	// The new member counts: with the other follower down, writes commit.
	other.Stop()
	if _, err := leader.Append(ctx, Write{Tenant: "acme", Entries: entries("after", "1")}); err != nil {
		t.Fatalf("write with node 4 as the quorum's second member: %v", err)
	}
	waitFor(t, 10*time.Second, "node 4 applied the write", func() bool {
		v, err := n4.Get("acme", "after")
		return err == nil && string(v.Data) == "1"
	})

	// The old node comes back with its old flags: it learns that it was
	// removed, says so, and serves nothing.
	old := runNode(t, victimCfg)
	waitFor(t, 20*time.Second, "the replaced node is removed", func() bool { return old.Status().Status == status.StateRemoved })
	if err := old.Ready(); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("removed node ready: %v", err)
	}
	if _, err := old.Append(ctx, Write{Tenant: "acme", Entries: entries("x", "1")}); !errors.Is(err, ErrRemoved) {
		t.Fatalf("removed node took a write: %v", err)
	}
	if _, err := old.Get("acme", "k1"); !errors.Is(err, ErrRemoved) {
		t.Fatalf("removed node served a read: %v", err)
	}
	if s := old.Status(); s.ClusterSize != 0 || s.IsLeader {
		t.Fatalf("removed node's status: %+v", s)
	}

	// Node 4 restarts from its data dir, without --join and with a stale
	// replica list: the data dir's configuration wins.
	n4.Stop()
	cfg4.Join, cfg4.Replicas = false, maps.Clone(victimCfg.Replicas)
	cfg4.Replicas[4] = replicas[4]
	if _, err := os.Stat(filepath.Join(cfg4.DataDir, ClusterFile)); err != nil {
		t.Fatal(err)
	}
	n4 = runNode(t, cfg4)
	waitFor(t, 20*time.Second, "node 4 is back in epoch 1", func() bool {
		s := n4.Status()
		return s.Epoch == 1 && s.ClusterSize == 3 && n4.Ready() == nil
	})
}
