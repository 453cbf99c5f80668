package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// transferConfigs is the configuration of three replicas with small
// segments and frequent checkpoints, so that a few MiB of writes leave
// whole segments below a checkpoint.
func transferConfigs(t *testing.T) map[uint64]Config {
	replicas := map[uint64]string{1: freeAddr(t), 2: freeAddr(t), 3: freeAddr(t)}
	cfgs := map[uint64]Config{}
	for id := range replicas {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.DataDir, cfg.Replicas = id, t.TempDir(), replicas
		cfg.APIAddr = freeAddr(t)
		cfg.SegmentSizeBytes = kmblog.MinSegmentSizeBytes
		cfg.CheckpointIntervalBytes = MinCheckpointIntervalBytes
		cfgs[id] = cfg
	}
	return cfgs
}

// runNodeReg starts a node with cfg and registry reg (logging to logs[0]
// when given) and stops it at the end of the test; it does not wait.
func runNodeReg(t testing.TB, cfg Config, reg *metric.Registry, logs ...*logBuffer) *Node {
	t.Helper()
	deps := Deps{Metrics: reg}
	if len(logs) > 0 {
		logger := slog.New(slog.NewJSONHandler(logs[0], nil))
		deps.Logger = func(string) *slog.Logger { return logger }
	}
	n, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	go n.Run()
	t.Cleanup(n.Stop)
	return n
}

// writeMiB appends about mib MiB to the cluster through whichever node
// leads, keys prefix-0, prefix-1, ...
func writeMiB(t *testing.T, nodes map[uint64]*Node, prefix string, mib int) int {
	t.Helper()
	return writeMiBFrom(t, nodes, prefix, 0, mib) * 16
}

// writeMiBFrom writes mib MiB more after the first from writes of 16
// keys, and returns how many writes there are then.
func writeMiBFrom(t *testing.T, nodes map[uint64]*Node, prefix string, from, mib int) int {
	t.Helper()
	value := fmt.Sprintf("%q", strings.Repeat("v", 4000))
	writes := from + mib*16
	for i := from; i < writes; i++ {
		var es []kmblog.Entry
		for j := 0; j < 16; j++ {
			es = append(es, kmblog.Entry{Key: fmt.Sprintf("%s-%d", prefix, i*16+j), Value: []byte(value)})
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			var err error
			for _, n := range nodes {
				if n.Status().IsLeader {
					_, err = n.Append(context.Background(), Write{Tenant: "acme", Entries: es, ClientID: 7, RequestID: uint64(time.Now().UnixNano())})
					break
				}
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("write %s %d: %v", prefix, i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return writes
}

// writeUntil writes a MiB at a time (keys prefix-0, ...) until cond
// holds, and returns the number of keys written. A checkpoint comes once
// as much log as the last one's size was written, which grows with the
// keys: how much that takes is not known in advance.
func writeUntil(t *testing.T, nodes map[uint64]*Node, prefix, what string, cond func() bool) int {
	t.Helper()
	writes := 0
	for range 40 {
		writes = writeMiBFrom(t, nodes, prefix, writes, 1)
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if cond() {
				return writes * 16
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Fatalf("%s: not after 40 MiB", what)
	return 0
}

func waitLeader(t *testing.T, nodes map[uint64]*Node) *Node {
	t.Helper()
	var leader *Node
	waitFor(t, 30*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.Ready() == nil && n.Status().IsLeader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// A replica whose log ends below the start of its peers' logs (they
// deleted the segments a checkpoint covers) installs a peer's checkpoint,
// fetches the log after it, and serves everything; it restarts from what
// it installed.
func TestStateTransferFromCheckpoint(t *testing.T) { testStateTransfer(t, false) }

// The same for a replica that lost its disk: it recovers from the
// cluster, whose logs no longer start at op 1, through a checkpoint.
func TestStateTransferLostDisk(t *testing.T) { testStateTransfer(t, true) }

func testStateTransfer(t *testing.T, wipe bool) {
	cfgs := transferConfigs(t)
	nodes := map[uint64]*Node{}
	for id, cfg := range cfgs {
		nodes[id] = runNodeReg(t, cfg, metric.NewRegistry())
	}
	waitLeader(t, nodes)
	before := writeMiB(t, nodes, "before", 2)
	// Replica 3 stops; the others go on past a checkpoint and a few
	// segments more.
	behind := nodes[3].Status().OpNumber
	nodes[3].Stop()
	delete(nodes, 3)
	after := writeUntil(t, nodes, "after", "checkpoints past replica 3's log", func() bool {
		for _, n := range nodes {
			if n.Status().Checkpoint.Op <= behind+16 {
				return false
			}
		}
		return true
	})
	// Retention, offline: each deletes the segments its checkpoint covers.
	for id, n := range nodes {
		ck := n.Status().Checkpoint.Op
		n.Stop()
		l, _, err := kmblog.Open(cfgs[id].logConfig(), slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		segs, _, err := l.RemoveBefore(ck + 1)
		if err != nil || segs == 0 {
			t.Fatalf("replica %d: removed %d segments below op %d: %v", id, segs, ck+1, err)
		}
		if start := l.Start().Op; start <= behind+1 {
			t.Fatalf("replica %d's log starts at op %d, not past replica 3's last op %d", id, start, behind)
		}
		l.Close()
	}
	if wipe {
		if err := os.RemoveAll(cfgs[3].DataDir); err != nil {
			t.Fatal(err)
		}
	}
	reg3, logs3 := metric.NewRegistry(), &logBuffer{}
	nodes = map[uint64]*Node{1: runNodeReg(t, cfgs[1], metric.NewRegistry()), 2: runNodeReg(t, cfgs[2], metric.NewRegistry()), 3: runNodeReg(t, cfgs[3], reg3, logs3)}
	leader := waitLeader(t, nodes)
	waitFor(t, 30*time.Second, "replica 3 caught up", func() bool {
		s := nodes[3].Status()
		_, err := nodes[3].Get("acme", fmt.Sprintf("after-%d", after-1))
		return nodes[3].Ready() == nil && s.CommitNumber >= leader.Status().CommitNumber && err == nil
	})
	if got := counterValue(t, reg3, "kmb_consensus_state_transfers_total"); got < 1 {
		t.Fatalf("kmb_consensus_state_transfers_total = %v on replica 3, want >= 1", got)
	}
	if ck := nodes[3].Status().Checkpoint.Op; ck <= behind {
		t.Fatalf("replica 3's checkpoint is of op %d, not past its old log end %d", ck, behind)
	}
	installed := logs3.lines("checkpoint from a peer installed; fetching the log after it")
	if len(installed) == 0 || installed[0]["checkpoint_op"].(float64) <= float64(behind) || installed[0]["bytes"].(float64) <= transferChunkBytes {
		t.Fatalf("installed %v: want one checkpoint past op %d, of more than one chunk", installed, behind)
	}
	checkKeys := func(n *Node) {
		t.Helper()
		for _, k := range []string{"before-0", fmt.Sprintf("before-%d", before-1), "after-0", fmt.Sprintf("after-%d", after-1)} {
			if _, err := n.Get("acme", k); err != nil {
				t.Fatalf("replica %d: %s: %v", n.cfg.NodeID, k, err)
			}
		}
	}
	checkKeys(nodes[3])
	// Writes go on, and replica 3 restarts from the installed checkpoint
	// and the log after it.
	installedOp := nodes[3].Status().Checkpoint.Op
	writeUntil(t, nodes, "later", "replica 3 checkpoints again after the install", func() bool {
		return nodes[3].Status().Checkpoint.Op > installedOp
	})
	defer func() {
		if t.Failed() {
			s := nodes[3].Status()
			t.Logf("replica 3: op %d commit %d checkpoint %+v log %+v; leader op %d", s.OpNumber, s.CommitNumber, s.Checkpoint, s.Log, leader.Status().OpNumber)
			for _, l := range logs3.lines("projection checkpoint failed; the next one is tried after as much log again") {
				t.Logf("%v", l)
			}
		}
	}()
	waitFor(t, 20*time.Second, "replica 3 checkpoints again after the install", func() bool {
		return nodes[3].Status().Checkpoint.Op > installedOp
	})
	nodes[3].Stop()
	nodes[3] = runNodeReg(t, cfgs[3], metric.NewRegistry())
	waitFor(t, 30*time.Second, "replica 3 ready after its restart", func() bool { return nodes[3].Ready() == nil })
	checkKeys(nodes[3])
	if wipe {
		return
	}

	// A new member joins in place of the follower of 1 and 2: the others'
	// logs start past op 1, so it too starts from a checkpoint (of the
	// epoch before the one that adds it) and fetches the rest, config op
	// included.
	leader = waitLeader(t, nodes)
	gone := uint64(1)
	if leader == nodes[1] {
		gone = 2
	}
	replicas := map[uint64]string{4: freeAddr(t)}
	for id := range cfgs {
		if id != gone {
			replicas[id] = cfgs[id].Replicas[id]
		}
	}
	cfg4 := cfgs[3]
	cfg4.NodeID, cfg4.DataDir, cfg4.Replicas, cfg4.Join, cfg4.APIAddr = 4, t.TempDir(), replicas, true, freeAddr(t)
	reg4, logs4 := metric.NewRegistry(), &logBuffer{}
	n4 := runNodeReg(t, cfg4, reg4, logs4)
	if _, err := leader.Reconfigure(context.Background(), fromMap(replicas), "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "replica 4 ready with everything", func() bool {
		_, err := n4.Get("acme", "later-0")
		return n4.Ready() == nil && n4.Status().Epoch == 1 && err == nil
	})
	if got := counterValue(t, reg4, "kmb_consensus_state_transfers_total"); got < 1 {
		t.Fatalf("kmb_consensus_state_transfers_total = %v on replica 4, want >= 1", got)
	}
	nodes[4] = n4
	checkKeys(n4)
	nodes[gone].Stop()
	delete(nodes, gone)
	writeMiB(t, nodes, "members", 1)
	waitFor(t, 10*time.Second, "replica 4 applies new writes", func() bool {
		_, err := n4.Get("acme", "members-0")
		return err == nil
	})
}
