package client_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/kmb-db/kmb/store/api"
	"github.com/kmb-db/kmb/store/node"
)

// testCluster is a cluster of real nodes in this process, each serving the
// client API on 127.0.0.1, for the examples and the end-to-end tests.
type testCluster struct {
	addrs   []string // client API addresses, by node id - 1
	nodes   []*node.Node
	servers []*http.Server
	stop    func()
}

// kill stops node i and its API at once, as a crash would look to clients.
func (c *testCluster) kill(i int) {
	c.servers[i].Close()
	c.nodes[i].Stop()
}

// startNodes starts a cluster of n nodes (1 or 3) and returns once every
// node is ready and one leads.
func startNodes(n int) (*testCluster, error) {
	dir, err := os.MkdirTemp("", "kmb-client-test-")
	if err != nil {
		return nil, err
	}
	c := &testCluster{}
	c.stop = func() {
		for _, s := range c.servers {
			s.Close()
		}
		for _, nd := range c.nodes {
			nd.Stop()
		}
		os.RemoveAll(dir)
	}
	fail := func(err error) (*testCluster, error) {
		c.stop()
		return nil, err
	}
	replicas := map[uint64]string{}
	var apiLns []net.Listener
	for id := uint64(1); id <= uint64(n); id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		apiLns = append(apiLns, ln)
		c.addrs = append(c.addrs, ln.Addr().String())
		if n > 1 {
			rl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fail(err)
			}
			replicas[id] = rl.Addr().String()
			rl.Close()
		}
	}
	for id := uint64(1); id <= uint64(n); id++ {
		cfg := node.DefaultConfig()
		cfg.NodeID, cfg.DataDir, cfg.Replicas = id, fmt.Sprintf("%s/%d", dir, id), replicas
		cfg.APIAddr = c.addrs[id-1]
		cfg.TickInterval = 10 * time.Millisecond
		nd, err := node.New(cfg, node.Deps{})
		if err != nil {
			return fail(err)
		}
		c.nodes = append(c.nodes, nd)
		go nd.Run()
		h, err := api.New(api.DefaultConfig(), nd, nil, nil, nil)
		if err != nil {
			return fail(err)
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		c.servers = append(c.servers, s)
		go s.Serve(apiLns[id-1])
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ready, leader := 0, false
		for _, nd := range c.nodes {
			if nd.Ready() == nil {
				ready++
				leader = leader || nd.Status().IsLeader
			}
		}
		if ready == n && leader {
			return c, nil
		}
		if time.Now().After(deadline) {
			return fail(errors.New("no leader within 30s"))
		}
	}
}

// leader returns the index of the leading node, and followers the others'.
func (c *testCluster) leader() int {
	for i, nd := range c.nodes {
		if nd.Status().IsLeader {
			return i
		}
	}
	return -1
}

func (c *testCluster) followers() []string {
	var out []string
	for i, a := range c.addrs {
		if i != c.leader() {
			out = append(out, a)
		}
	}
	return out
}

// mustStart is startNodes for examples, which cannot fail a test.
func mustStart(n int) *testCluster {
	c, err := startNodes(n)
	if err != nil {
		panic(err)
	}
	return c
}
