package client_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmb-db/kmb/client"
)

// Against a real three-node cluster whose leader crashes under load: the
// writers carry on with the new leader, and every acknowledged append is
// in the log exactly once (retries of writes that were cut off included);
// an append that failed is there at most once.
func TestLeaderCrashUnderLoad(t *testing.T) {
	cluster, err := startNodes(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.stop)
	old := cluster.leader()
	c := newClient(t, cluster.addrs, client.Options{RequestTimeout: 20 * time.Second})

	const writers = 4
	var (
		acked, failed sync.Map // key -> true
		okCount       atomic.Int64
		wg            sync.WaitGroup
		stop          = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				_, err := c.Append(t.Context(), "acme", []client.Entry{{Key: key, Value: json.RawMessage(`1`)}})
				if err != nil {
					failed.Store(key, err)
					continue
				}
				acked.Store(key, true)
				okCount.Add(1)
			}
		})
	}
	waitCount := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); okCount.Load() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				close(stop)
				t.Fatalf("only %d appends acknowledged, waiting for %d", okCount.Load(), n)
			}
		}
	}
	waitCount(50)
	cluster.kill(old)
	crashedAt := okCount.Load()
	waitCount(crashedAt + 100) // the survivors elected a leader and take the writes
	close(stop)
	wg.Wait()

	if l := cluster.leader(); l == old || l < 0 {
		t.Fatalf("leader %d after node %d crashed", l, old)
	}
	survivor := cluster.addrs[cluster.leader()]
	reader := newClient(t, []string{survivor}, client.Options{ReadPageSize: 1000})
	count := map[string]int{}
	for e, err := range reader.Read(t.Context(), "acme", 1) {
		if err != nil {
			t.Fatal(err)
		}
		count[e.Key]++
	}
	nAcked := 0
	acked.Range(func(k, _ any) bool {
		nAcked++
		if n := count[k.(string)]; n != 1 {
			t.Errorf("acknowledged %s is in the log %d times", k, n)
		}
		return true
	})
	failed.Range(func(k, v any) bool {
		t.Logf("append of %s failed: %v", k, v)
		if n := count[k.(string)]; n > 1 {
			t.Errorf("failed %s is in the log %d times", k, n)
		}
		return true
	})
	for k, n := range count {
		if _, ok := acked.Load(k); !ok {
			if _, ok := failed.Load(k); !ok {
				t.Errorf("%s is in the log %d times but was never written", k, n)
			}
		}
	}
	t.Logf("%d appends acknowledged (%d before the crash of node %d), %d entries in the log", nAcked, crashedAt, old+1, len(count))
}
