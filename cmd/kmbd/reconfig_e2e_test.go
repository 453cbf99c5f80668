package main

// End to end: membership changes of a real cluster under write load.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

// reconfigure runs `kmbd cluster reconfigure` against node at and returns
// its exit code, stdout and stderr.
func reconfigure(t *testing.T, at *kmbdtest.Node, replicas string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(kmbdtest.Binary(t), "cluster", "reconfigure", "--addr", strings.TrimPrefix(at.API, "http://"), "--replicas", replicas, "--timeout", "30s")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// replicaList renders ids with their addresses as --replicas takes them.
func replicaList(addrs map[uint64]string, ids ...uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d=%s", id, addrs[id])
	}
	return strings.Join(parts, ",")
}

// TestE2EReconfigure: kill -9 node 3 and delete its data dir; replace it
// with node 4 on a new address; grow to five; shrink back to three. Writes
// go on all along, and no acknowledged write is lost.
func TestE2EReconfigure(t *testing.T) {
	c := kmbdtest.StartCluster(t, debugLog)
	addrs := map[uint64]string{}
	for _, part := range strings.Split(c.Replicas(), ",") {
		id, addr, _ := strings.Cut(part, "=")
		n, _ := strconv.ParseUint(id, 10, 64)
		addrs[n] = addr
	}
	more := kmbdtest.FreeAddrs(t, 3)
	addrs[4], addrs[5], addrs[6] = more[0], more[1], more[2]

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := startLoad(ctx, t, c, 4)
	progress := func(what string, n int64) {
		t.Helper()
		from := l.written.Load()
		kmbdtest.WaitFor(t, what, 60*time.Second, func() bool { return l.written.Load() >= from+n })
	}
	progress("writes before the failure", 100)

	// Node 3 fails for good: killed, its disk gone.
	l.kill(c, 3)
	if err := os.RemoveAll(c.DataDir(3)); err != nil {
		t.Fatal(err)
	}
	progress("writes with two of three", 50)

	// Refused changes, through any node, change nothing.
	leader := c.Leader()
	var follower uint64
	for id := range c.Nodes {
		if id != leader {
			follower = id
		}
	}
	others := []uint64{}
	for id := range c.Nodes {
		if id != leader {
			others = append(others, id)
		}
	}
	for _, bad := range []struct{ replicas, want string }{
		{replicaList(addrs, others...) + ",4=" + addrs[4], "bad_config"}, // removes the leader
		{replicaList(addrs, 1, 2) + ",2=" + addrs[4], "bad_config"},      // node 2 twice
		{replicaList(addrs, 1, 2) + ",4=" + addrs[1], "bad_config"},      // an address twice
	} {
		code, _, stderr := reconfigure(t, c.Nodes[follower], bad.replicas)
		if code != 1 || !strings.Contains(stderr, bad.want) {
			t.Fatalf("reconfigure --replicas %s: exit %d, %s", bad.replicas, code, stderr)
		}
	}
	if s := c.Nodes[leader].Status(t); s["epoch"].(float64) != 0 {
		t.Fatalf("a refused change moved the epoch: %v", s["epoch"])
	}

	// Replace: node 4 joins on a new address; the change goes through a
	// follower, which redirects to the leader.
	n4 := c.Join(4, replicaList(addrs, 1, 2, 4))
	if s := n4.Status(t); s["status"] == "normal" {
		t.Fatalf("a joining node is normal before it was added: %v", s)
	}
	code, out, stderr := reconfigure(t, c.Nodes[follower], replicaList(addrs, 1, 2, 4))
	if code != 0 {
		t.Fatalf("reconfigure to {1,2,4}: exit %d\n%s", code, stderr)
	}
	var res struct {
		Epoch    uint64
		Replicas []struct{ ID uint64 }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Epoch != 1 || len(res.Replicas) != 3 {
		t.Fatalf("reconfigure printed %q (%v)", out, err)
	}
	n4.WaitReady(t, 60*time.Second)
	l.live.Store(uint64(4), n4.API)
	progress("writes in epoch 1", 100)
	checkMembers(t, c, 1, 1, 2, 4)

	// Grow to five.
	n5, n6 := c.Join(5, replicaList(addrs, 1, 2, 4, 5, 6)), c.Join(6, replicaList(addrs, 1, 2, 4, 5, 6))
	if code, _, stderr := reconfigure(t, c.Nodes[1], replicaList(addrs, 1, 2, 4, 5, 6)); code != 0 {
		t.Fatalf("grow to five: exit %d\n%s", code, stderr)
	}
	n5.WaitReady(t, 60*time.Second)
	n6.WaitReady(t, 60*time.Second)
	l.live.Store(uint64(5), n5.API)
	l.live.Store(uint64(6), n6.API)
	progress("writes in epoch 2", 100)
	checkMembers(t, c, 2, 1, 2, 4, 5, 6)

	// Shrink back to three: the leader and two others stay.
	leader = c.Leader()
	keep := []uint64{leader}
	for _, id := range []uint64{1, 2, 4, 5, 6} {
		if id != leader && len(keep) < 3 {
			keep = append(keep, id)
		}
	}
	slices.Sort(keep)
	var gone []uint64
	for _, id := range []uint64{1, 2, 4, 5, 6} {
		if !slices.Contains(keep, id) {
			gone = append(gone, id)
			l.live.Delete(id)
		}
	}
	if code, _, stderr := reconfigure(t, c.Nodes[keep[1]], replicaList(addrs, keep...)); code != 0 {
		t.Fatalf("shrink to %v: exit %d\n%s", keep, code, stderr)
	}
	for _, id := range gone {
		n := c.Nodes[id]
		kmbdtest.WaitFor(t, fmt.Sprintf("node %d says it was removed", id), 30*time.Second, func() bool {
			return n.Status(t)["status"] == "removed"
		})
		code, body := kmbdtest.HTTPDo(t, "GET", n.Tel+"/health/ready", "")
		if code != 503 || !strings.Contains(string(body), "removed") {
			t.Fatalf("node %d ready: %d %s", id, code, body)
		}
		if code, m := kmbdtest.JSONDo(t, "GET", n.API+"/v1/tenants/load/keys/w0-k1", ""); code != 503 || m["code"] != "removed" {
			t.Fatalf("removed node %d served a read: %d %v", id, code, m)
		}
		logged := false
		for _, line := range n.Output.LogLines(t) {
			logged = logged || (line["level"] == "ERROR" && strings.Contains(fmt.Sprint(line["message"]), "removed from the cluster"))
		}
		if !logged {
			t.Fatalf("node %d logged no ERROR line about its removal", id)
		}
		c.Forget(id)
	}
	progress("writes in epoch 3", 100)
	l.finish()
	if ctx.Err() != nil {
		t.Fatalf("writers timed out: %v", ctx.Err())
	}
	checkMembers(t, c, 3, keep...)

	// Every acknowledged write, from before the failure on, is on every
	// member: node 4 fetched what it never saw.
	total := 0
	for id, n := range c.Nodes {
		for _, w := range l.ws {
			for key, value := range w.acked {
				if id == keep[0] {
					total++
				}
				kmbdtest.WaitFor(t, fmt.Sprintf("%s on node %d", key, id), 10*time.Second, func() bool {
					code, m := kmbdtest.JSONDo(t, "GET", n.API+"/v1/tenants/load/keys/"+key, "")
					got, _ := json.Marshal(m["value"])
					return code == 200 && string(got) == value
				})
			}
		}
	}
	lid := c.Leader()
	l0, label := c.Nodes[lid], fmt.Sprintf(`{node_id="%d"}`, lid)
	if got := l0.Metric(t, "kmb_consensus_epoch"+label); got != "3" {
		t.Fatalf("kmb_consensus_epoch = %s", got)
	}
	if got := l0.Metric(t, "kmb_consensus_cluster_size"+label); got != "3" {
		t.Fatalf("kmb_consensus_cluster_size = %s", got)
	}
	if got, _ := strconv.Atoi(l0.Metric(t, "kmb_consensus_reconfigurations_total"+label)); got < 2 {
		t.Fatalf("kmb_consensus_reconfigurations_total = %d on the leader", got)
	}
	t.Logf("%d acknowledged writes (%d retries) on every member of %v after replace, grow and shrink", total, sumRetries(l.ws), keep)
}

// checkMembers waits until every running node of c is in epoch with the
// members ids, in order, ready.
func checkMembers(t *testing.T, c *kmbdtest.Cluster, epoch float64, ids ...uint64) {
	t.Helper()
	for id, n := range c.Nodes {
		kmbdtest.WaitFor(t, fmt.Sprintf("node %d in epoch %v with %v", id, epoch, ids), 30*time.Second, func() bool {
			s := n.Status(t)
			reps, _ := s["replicas"].([]any)
			if s["epoch"] != epoch || s["cluster_size"] != float64(len(ids)) || len(reps) != len(ids) {
				return false
			}
			for i, r := range reps {
				if r.(map[string]any)["id"] != float64(ids[i]) {
					return false
				}
			}
			code, _ := kmbdtest.HTTPDo(t, "GET", n.Tel+"/health/ready", "")
			return code == 200
		})
	}
}
