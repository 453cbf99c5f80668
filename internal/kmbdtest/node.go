package kmbdtest

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Node is a running kmbd process.
type Node struct {
	*Process
	API, Tel string // base URLs of the client API and the telemetry endpoints
}

// Launch starts kmbd on dataDir, with env added to the test's environment
// and args after its own flags, and waits until it reports its addresses.
// The kernel chooses its ports, so parallel tests never collide; the
// addresses are read back from the "kmbd starting" log line.
func Launch(t testing.TB, dataDir string, env []string, args ...string) *Node {
	t.Helper()
	return launch(t, "kmbd", dataDir, env, args)
}

func launch(t testing.TB, name, dataDir string, env, args []string) *Node {
	t.Helper()
	args = append([]string{"--data-dir", dataDir, "--api-listen", "127.0.0.1:0", "--telemetry-listen", "127.0.0.1:0"}, args...)
	n := &Node{Process: Start(t, name, env, Binary(t), args...)}
	WaitFor(t, "the kmbd starting line", 20*time.Second, func() bool {
		for _, l := range n.Output.LogLines(t) {
			if l["message"] == "kmbd starting" {
				f := l["fields"].(map[string]any)
				n.API, n.Tel = "http://"+f["api_listen"].(string), "http://"+f["telemetry_listen"].(string)
				if u, ok := f["api_url"].(string); ok {
					n.API = u // https with TLS
				}
				if u, ok := f["telemetry_url"].(string); ok {
					n.Tel = u
				}
				return true
			}
		}
		if n.Exited() {
			t.Fatalf("%s exited early: %v\n%s", name, n.Cmd.ProcessState, n.Output.String())
		}
		return false
	})
	return n
}

// StartNode is Launch, then waiting up to 20s for the node to be ready.
func StartNode(t testing.TB, dataDir string, env []string, args ...string) *Node {
	t.Helper()
	n := Launch(t, dataDir, env, args...)
	n.WaitReady(t, 20*time.Second)
	return n
}

// WaitReady waits until /health/ready answers 200. A node that exits fails
// the test at once rather than at the timeout.
func (n *Node) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	WaitFor(t, n.Name+" ready", timeout, func() bool {
		if n.Exited() {
			t.Fatalf("%s exited: %v\n%s", n.Name, n.Cmd.ProcessState, n.Output.String())
		}
		code, _ := HTTPDo(t, "GET", n.Tel+"/health/ready", "")
		return code == 200
	})
}

// Stop sends SIGTERM and requires a clean exit, status 0, within 30s.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if err := n.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30s of SIGTERM", n.Name)
	}
	if code := n.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exit code %d after SIGTERM\n%s", n.Name, code, n.Output.String())
	}
}

// Status returns the node's /status.
func (n *Node) Status(t testing.TB) map[string]any {
	t.Helper()
	code, m := JSONDo(t, "GET", n.Tel+"/status", "")
	if code != 200 {
		t.Fatalf("/status: %d", code)
	}
	return m
}

// Metric returns the value of one series in the node's /metrics, series
// being the name with its labels as exposed.
func (n *Node) Metric(t testing.TB, series string) string {
	t.Helper()
	_, b := HTTPDo(t, "GET", n.Tel+"/metrics", "")
	for _, line := range strings.Split(string(b), "\n") {
		if value, ok := strings.CutPrefix(line, series+" "); ok {
			return value
		}
	}
	t.Fatalf("series %s not in /metrics", series)
	return ""
}

// Cluster is kmbd nodes replicating over loopback: ids 1 to 3 at the
// start, more with Join.
type Cluster struct {
	Nodes map[uint64]*Node // the running nodes by id; Kill removes one

	t        testing.TB
	env      []string
	args     []string // every node's, after --node-id and --replicas
	replicas string
	dirs     map[uint64]string // kept across Kill, for Restart
	joined   map[uint64]string // --replicas of the nodes started by Join
}

// StartCluster launches three nodes, each with env and args, and waits up
// to 30s for each to be ready. The replication ports must be known before
// any node starts, so they come from FreeAddrs.
func StartCluster(t testing.TB, env []string, args ...string) *Cluster {
	t.Helper()
	c := &Cluster{Nodes: map[uint64]*Node{}, t: t, env: env, args: args, dirs: map[uint64]string{}, joined: map[uint64]string{}}
	var peers []string
	for i, addr := range FreeAddrs(t, 3) {
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, addr))
	}
	c.replicas = strings.Join(peers, ",")
	for id := uint64(1); id <= 3; id++ {
		c.dirs[id] = t.TempDir()
		c.launch(id)
	}
	for _, n := range c.Nodes {
		n.WaitReady(t, 30*time.Second)
	}
	return c
}

func (c *Cluster) launch(id uint64) {
	c.t.Helper()
	args := append([]string{"--node-id", strconv.FormatUint(id, 10), "--replicas", c.replicas}, c.args...)
	if r, ok := c.joined[id]; ok {
		args = append([]string{"--node-id", strconv.FormatUint(id, 10), "--replicas", r, "--join"}, c.args...)
	}
	c.Nodes[id] = launch(c.t, fmt.Sprintf("kmbd node %d", id), c.dirs[id], c.env, args)
}

// Replicas is the --replicas list the cluster started with.
func (c *Cluster) Replicas() string { return c.replicas }

// Join starts a new node id, with an empty data dir, --join and replicas
// (the configuration that will add it), without waiting for it to be
// ready: it is not, until a reconfiguration adds it.
func (c *Cluster) Join(id uint64, replicas string) *Node {
	c.t.Helper()
	c.dirs[id], c.joined[id] = c.t.TempDir(), replicas
	c.launch(id)
	return c.Nodes[id]
}

// Forget stops node id cleanly (SIGTERM) and forgets it: a node the
// configuration removed.
func (c *Cluster) Forget(id uint64) {
	c.t.Helper()
	c.Nodes[id].Stop(c.t)
	delete(c.Nodes, id)
}

// Restart starts node id again on its data directory, after Kill, and
// waits up to 30s for it to be ready.
func (c *Cluster) Restart(id uint64) {
	c.t.Helper()
	c.launch(id)
	c.Nodes[id].WaitReady(c.t, 30*time.Second)
}

// Kill kills node id with SIGKILL, as a crash would, and forgets it.
func (c *Cluster) Kill(id uint64) {
	c.t.Helper()
	c.Nodes[id].kill(c.t)
	delete(c.Nodes, id)
}

// Leader returns the node every running node agrees leads, waiting up to
// 30s for all of them to be in normal status in one view with one leader.
func (c *Cluster) Leader() uint64 {
	c.t.Helper()
	var leader uint64
	WaitFor(c.t, "one agreed leader", 30*time.Second, func() bool {
		leader = 0
		var view any
		for id, n := range c.Nodes {
			code, s := JSONDo(c.t, "GET", n.Tel+"/status", "")
			if code != 200 || s["status"] != "normal" {
				return false
			}
			if view != nil && s["view"] != view {
				return false
			}
			view = s["view"]
			if s["is_leader"] == true {
				if leader != 0 {
					return false
				}
				leader = id
			}
		}
		return leader != 0
	})
	return leader
}

// DataDir is node id's data directory.
func (c *Cluster) DataDir(id uint64) string { return c.dirs[id] }
