package main

// End-to-end tests of a three-process cluster on 127.0.0.1.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

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

// load is writers appending to a cluster through whichever of its nodes
// are live, until stopped.
type load struct {
	live    sync.Map // node id → API base URL
	written atomic.Int64
	stop    atomic.Bool
	wg      sync.WaitGroup
	ws      []*writer
}

// startLoad starts n writers on the nodes of c.
func startLoad(ctx context.Context, t *testing.T, c *kmbdtest.Cluster, n int) *load {
	l := &load{}
	for id, p := range c.Nodes {
		l.live.Store(id, p.API)
	}
	targets := func() []string {
		var ids []uint64
		l.live.Range(func(k, _ any) bool { ids = append(ids, k.(uint64)); return true })
		slices.Sort(ids)
		var out []string
		for _, id := range ids {
			if v, ok := l.live.Load(id); ok {
				out = append(out, v.(string))
			}
		}
		return out
	}
	for i := 0; i < n; i++ {
		w := &writer{id: i, targets: targets, acked: map[string]string{}}
		l.ws = append(l.ws, w)
		l.wg.Go(func() {
			for seq := 1; !l.stop.Load(); seq++ {
				if !w.write(ctx, t, seq) {
					return
				}
				l.written.Add(1)
			}
		})
	}
	return l
}

// kill kills node id of c with SIGKILL; the writers stop using it.
func (l *load) kill(c *kmbdtest.Cluster, id uint64) {
	l.live.Delete(id)
	c.Kill(id)
}

// finish stops the writers and waits for them.
func (l *load) finish() {
	l.stop.Store(true)
	l.wg.Wait()
}

func TestE2EClusterLeaderKilledUnderLoad(t *testing.T) {
	c := kmbdtest.StartCluster(t, debugLog)
	first := c.Leader()

	// Writes go through any node: followers redirect to the leader.
	for id, p := range c.Nodes {
		req, _ := http.NewRequest("POST", p.API+"/v1/tenants/acme/entries", strings.NewReader(`{"entries":[{"key":"via","value":1}]}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("write via node %d: %v %v", id, err, resp)
		}
		resp.Body.Close()
	}
	// A follower answers a write it cannot take with 307 to the leader.
	for id, p := range c.Nodes {
		if id == first {
			continue
		}
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noFollow.Post(p.API+"/v1/tenants/acme/entries", "application/json", strings.NewReader(`{"entries":[{"key":"x","value":1}]}`))
		if err != nil || resp.StatusCode != 307 || !strings.HasPrefix(resp.Header.Get("Location"), c.Nodes[first].API+"/") {
			t.Fatalf("follower %d: %v %v location %q", id, err, resp.StatusCode, resp.Header.Get("Location"))
		}
		resp.Body.Close()
		break
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := startLoad(ctx, t, c, 8)
	ws := l.ws
	kmbdtest.WaitFor(t, "writes before the kill", 30*time.Second, func() bool { return l.written.Load() >= 200 })

	// kill -9 the leader under load.
	old := c.Nodes[first]
	_, oldStatus := kmbdtest.JSONDo(t, "GET", old.Tel+"/status", "")
	l.kill(c, first)
	before := l.written.Load()

	second := c.Leader()
	if second == first {
		t.Fatalf("leader %d survived its own kill", second)
	}
	kmbdtest.WaitFor(t, "writes after the failover", 30*time.Second, func() bool { return l.written.Load() >= before+200 })
	l.finish()
	if ctx.Err() != nil {
		t.Fatalf("writers timed out: %v", ctx.Err())
	}
	_, newStatus := kmbdtest.JSONDo(t, "GET", c.Nodes[second].Tel+"/status", "")
	if newStatus["view"].(float64) <= oldStatus["view"].(float64) {
		t.Fatalf("view did not advance: %v → %v", oldStatus["view"], newStatus["view"])
	}

	// Every acknowledged write is readable on every live node.
	total := 0
	for _, w := range ws {
		total += len(w.acked)
	}
	for id, p := range c.Nodes {
		for _, w := range ws {
			for key, value := range w.acked {
				kmbdtest.WaitFor(t, fmt.Sprintf("%s on node %d", key, id), 10*time.Second, func() bool {
					code, m := kmbdtest.JSONDo(t, "GET", p.API+"/v1/tenants/load/keys/"+key, "")
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
	c.Restart(first)
	leaderOp := func() float64 {
		_, s := kmbdtest.JSONDo(t, "GET", c.Nodes[second].Tel+"/status", "")
		return s["commit_number"].(float64)
	}
	kmbdtest.WaitFor(t, "the restarted node to catch up", 30*time.Second, func() bool {
		_, s := kmbdtest.JSONDo(t, "GET", c.Nodes[first].Tel+"/status", "")
		return s["commit_number"].(float64) == leaderOp() && s["status"] == "normal"
	})
	for key, value := range ws[0].acked {
		code, m := kmbdtest.JSONDo(t, "GET", c.Nodes[first].API+"/v1/tenants/load/keys/"+key, "")
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
	// One view for all three, the new leader's or a later one: the
	// restarted node led a view and may have sent prepares it no longer
	// holds (EarlyView), so it never leads that view again and starts a
	// view change, which completes without it if the others hear from
	// each other, and moves the cluster on if they do not (its peers'
	// connections to it back off while it was down).
	kmbdtest.WaitFor(t, "all three healthy", 20*time.Second, func() bool {
		leaders := 0
		last = last[:0]
		var view any
		for _, p := range c.Nodes {
			_, s := kmbdtest.JSONDo(t, "GET", p.Tel+"/status", "")
			last = append(last, s)
			if s["cluster_size"] != 3.0 || s["healthy_replicas"] != 3.0 || s["status"] != "normal" {
				return false
			}
			if v, ok := s["view"].(float64); !ok || v < newStatus["view"].(float64) || (view != nil && s["view"] != view) {
				return false
			}
			view = s["view"]
			if s["is_leader"] == true {
				leaders++
			}
		}
		return leaders == 1
	})
	for id, p := range c.Nodes {
		if id == first {
			continue // restarted: its counter began again
		}
		if v, _ := strconv.ParseFloat(p.Metric(t, `kmb_consensus_view_changes_total{node_id="`+strconv.FormatUint(id, 10)+`"}`), 64); v < 1 {
			t.Errorf("node %d counted %v view changes", id, v)
		}
		if got := p.Metric(t, `kmb_consensus_has_leader{node_id="`+strconv.FormatUint(id, 10)+`"}`); got != "1" {
			t.Errorf("node %d has_leader = %s", id, got)
		}
	}
	for _, p := range c.Nodes {
		p.Stop(t)
	}
}

func sumRetries(ws []*writer) int {
	n := 0
	for _, w := range ws {
		n += w.retries
	}
	return n
}
