package main

// End-to-end tests of a three-process cluster on 127.0.0.1.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type cluster struct {
	t        *testing.T
	replicas string
	dirs     map[uint64]string
	procs    map[uint64]*proc
}

// freeAddrs reserves n loopback addresses for replication listeners.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func startCluster(t *testing.T) *cluster {
	addrs := freeAddrs(t, 3)
	c := &cluster{t: t, dirs: map[uint64]string{}, procs: map[uint64]*proc{}}
	var parts []string
	for i, a := range addrs {
		parts = append(parts, fmt.Sprintf("%d=%s", i+1, a))
	}
	c.replicas = strings.Join(parts, ",")
	for id := uint64(1); id <= 3; id++ {
		c.dirs[id] = t.TempDir()
		c.start(id, false)
	}
	for id := range c.procs {
		c.waitReady(id)
	}
	return c
}

func (c *cluster) start(id uint64, wait bool) {
	p := launchKmbd(c.t, c.dirs[id], "--node-id", strconv.FormatUint(id, 10), "--replicas", c.replicas)
	c.procs[id] = p
	if wait {
		c.waitReady(id)
	}
}

func (c *cluster) waitReady(id uint64) {
	p := c.procs[id]
	waitFor(c.t, fmt.Sprintf("node %d ready", id), 30*time.Second, func() bool {
		code, _ := httpDo(c.t, "GET", p.tel+"/health/ready", "")
		return code == 200
	})
}

// leader returns the node every live node agrees leads, waiting for one.
func (c *cluster) leader() uint64 {
	var leader uint64
	waitFor(c.t, "one agreed leader", 30*time.Second, func() bool {
		leader = 0
		var view any
		for id, p := range c.procs {
			code, s := jsonDo(c.t, "GET", p.tel+"/status", "")
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

// writer appends unique keys, retrying each with the same idempotency key
// until it is acknowledged, and records what was acknowledged.
type writer struct {
	id      int
	targets func() []string
	acked   map[string]string // key → value
	retries int
}

func (w *writer) write(ctx context.Context, t *testing.T, seq int) bool {
	key := fmt.Sprintf("w%d-k%d", w.id, seq)
	value := fmt.Sprintf("%q", fmt.Sprintf("v%d-%d", w.id, seq))
	body := fmt.Sprintf(`{"entries":[{"key":%q,"value":%s}]}`, key, value)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		targets := w.targets()
		target := targets[(w.id+attempt)%len(targets)]
		req, _ := http.NewRequestWithContext(ctx, "POST", target+"/v1/tenants/load/entries", strings.NewReader(body))
		req.Header.Set("Kmb-Client-Id", strconv.Itoa(w.id+1))
		req.Header.Set("Kmb-Request-Id", strconv.Itoa(seq))
		client := &http.Client{Timeout: 3 * time.Second}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				w.acked[key] = value
				return true
			}
		}
		w.retries++
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestE2EClusterLeaderKilledUnderLoad(t *testing.T) {
	c := startCluster(t)
	first := c.leader()

	// Writes go through any node: followers redirect to the leader.
	for id, p := range c.procs {
		req, _ := http.NewRequest("POST", p.api+"/v1/tenants/acme/entries", strings.NewReader(`{"entries":[{"key":"via","value":1}]}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("write via node %d: %v %v", id, err, resp)
		}
		resp.Body.Close()
	}
	// A follower answers a write it cannot take with 307 to the leader.
	for id, p := range c.procs {
		if id == first {
			continue
		}
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noFollow.Post(p.api+"/v1/tenants/acme/entries", "application/json", strings.NewReader(`{"entries":[{"key":"x","value":1}]}`))
		if err != nil || resp.StatusCode != 307 || !strings.HasPrefix(resp.Header.Get("Location"), c.procs[first].api+"/") {
			t.Fatalf("follower %d: %v %v location %q", id, err, resp.StatusCode, resp.Header.Get("Location"))
		}
		resp.Body.Close()
		break
	}

	var live sync.Map // node id → api base URL
	for id, p := range c.procs {
		live.Store(id, p.api)
	}
	targets := func() []string {
		var out []string
		for id := uint64(1); id <= 3; id++ {
			if v, ok := live.Load(id); ok {
				out = append(out, v.(string))
			}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const writers = 8
	var (
		wg      sync.WaitGroup
		written atomic.Int64
		stop    atomic.Bool
		ws      = make([]*writer, writers)
	)
	for i := range ws {
		ws[i] = &writer{id: i, targets: targets, acked: map[string]string{}}
		wg.Add(1)
		go func(w *writer) {
			defer wg.Done()
			for seq := 1; !stop.Load(); seq++ {
				if !w.write(ctx, t, seq) {
					return
				}
				written.Add(1)
			}
		}(ws[i])
	}
	waitFor(t, "writes before the kill", 30*time.Second, func() bool { return written.Load() >= 200 })

	// kill -9 the leader under load.
	old := c.procs[first]
	_, oldStatus := jsonDo(t, "GET", old.tel+"/status", "")
	live.Delete(first)
	if err := old.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-old.exited
	delete(c.procs, first)
	before := written.Load()

	second := c.leader()
	if second == first {
		t.Fatalf("leader %d survived its own kill", second)
	}
	waitFor(t, "writes after the failover", 30*time.Second, func() bool { return written.Load() >= before+200 })
	stop.Store(true)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("writers timed out: %v", ctx.Err())
	}
	_, newStatus := jsonDo(t, "GET", c.procs[second].tel+"/status", "")
	if newStatus["view"].(float64) <= oldStatus["view"].(float64) {
		t.Fatalf("view did not advance: %v → %v", oldStatus["view"], newStatus["view"])
	}

	// Every acknowledged write is readable on every live node.
	total := 0
	for _, w := range ws {
		total += len(w.acked)
	}
	for id, p := range c.procs {
		for _, w := range ws {
			for key, value := range w.acked {
				waitFor(t, fmt.Sprintf("%s on node %d", key, id), 10*time.Second, func() bool {
					code, m := jsonDo(t, "GET", p.api+"/v1/tenants/load/keys/"+key, "")
					if code != 200 {
						return false
					}
					got, _ := json.Marshal(m["value"])
					return string(got) == value
				})
			}
		}
	}
	t.Logf("%d acknowledged writes (%d retries) readable on both survivors; leader %d → %d, view %v → %v",
		total, sumRetries(ws), first, second, oldStatus["view"], newStatus["view"])

	// The killed node restarts, catches up and becomes ready.
	c.start(first, true)
	leaderOp := func() float64 {
		_, s := jsonDo(t, "GET", c.procs[second].tel+"/status", "")
		return s["commit_number"].(float64)
	}
	waitFor(t, "the restarted node to catch up", 30*time.Second, func() bool {
		_, s := jsonDo(t, "GET", c.procs[first].tel+"/status", "")
		return s["commit_number"].(float64) == leaderOp() && s["status"] == "normal"
	})
	for key, value := range ws[0].acked {
		code, m := jsonDo(t, "GET", c.procs[first].api+"/v1/tenants/load/keys/"+key, "")
		got, _ := json.Marshal(m["value"])
		if code != 200 || string(got) != value {
			t.Fatalf("restarted node: %s = %d %s, want %s", key, code, got, value)
		}
	}

	// /status is right on every node; view changes were counted.
	var last []map[string]any
	defer func() {
		if t.Failed() {
			t.Logf("last statuses: %v", last)
		}
	}()
	waitFor(t, "all three healthy", 20*time.Second, func() bool {
		leaders := 0
		last = last[:0]
		for _, p := range c.procs {
			_, s := jsonDo(t, "GET", p.tel+"/status", "")
			last = append(last, s)
			if s["cluster_size"] != 3.0 || s["healthy_replicas"] != 3.0 || s["status"] != "normal" || s["view"] != newStatus["view"] {
				return false
			}
			if s["is_leader"] == true {
				leaders++
			}
		}
		return leaders == 1
	})
	for id, p := range c.procs {
		if id == first {
			continue // restarted: its counter began again
		}
		if v, _ := strconv.ParseFloat(p.metric(t, `kmb_consensus_view_changes_total{node_id="`+strconv.FormatUint(id, 10)+`"}`), 64); v < 1 {
			t.Errorf("node %d counted %v view changes", id, v)
		}
		if got := p.metric(t, `kmb_consensus_has_leader{node_id="`+strconv.FormatUint(id, 10)+`"}`); got != "1" {
			t.Errorf("node %d has_leader = %s", id, got)
		}
	}
	for _, p := range c.procs {
		p.stop(t)
	}
}

func sumRetries(ws []*writer) int {
	n := 0
	for _, w := range ws {
		n += w.retries
	}
	return n
}
