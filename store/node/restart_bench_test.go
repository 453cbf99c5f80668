package node

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// restartFixtures are data dirs built once per process for
// BenchmarkRestart (building 10M entries takes a while), removed by
// TestMain.
var restartFixtures struct {
	sync.Mutex
	dirs map[int]string
	keys map[int]int // distinct keys of each
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range restartFixtures.dirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// restartFixture returns a single node's data dir holding entries
// entries in kmbd bench's shape (10 tenants, keys k0000..k9999 each,
// 100-byte values, 100 entries per op), all committed, and the
// checkpoint the node writes when it first starts on it: the state of a
// node that ran the workload and stopped.
func restartFixture(b *testing.B, entries int) string {
	restartFixtures.Lock()
	defer restartFixtures.Unlock()
	if d, ok := restartFixtures.dirs[entries]; ok {
		return d
	}
	dir, err := os.MkdirTemp("", "kmb-restart-bench-")
	if err != nil {
		b.Fatal(err)
	}
	l, _, err := kmblog.Open(kmblog.Config{Dir: filepath.Join(dir, "log")}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	rng := rand.New(rand.NewPCG(1, uint64(entries)))
	keys := map[[2]uint64]bool{}
	var prev kmblog.Chain
	var c kmblog.Chainer
	pos, ts := uint64(1), time.Now().Add(-time.Hour).UnixNano()
	batch := make([]*kmblog.Op, 0, 64)
	for op, i := uint64(1), 0; i < entries; op++ {
		o := &kmblog.Op{Op: op, Timestamp: ts + int64(op), Tenant: fmt.Sprintf("tenant-%d", op%10), FirstPosition: pos}
		o.Entries = make([]kmblog.Entry, 0, 100)
		for j := 0; j < 100 && i < entries; j++ {
			k := rng.Uint64N(10000)
			keys[[2]uint64{op % 10, k}] = true
			o.Entries = append(o.Entries, kmblog.Entry{Key: fmt.Sprintf("k%04d", k), Value: value})
			i++
		}
		pos += uint64(len(o.Entries))
		o.Chain = c.Op(prev, o)
		prev = o.Chain
		if batch = append(batch, o); len(batch) == cap(batch) || i == entries {
			if err := l.Append(batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	// The first start replays it all and checkpoints at once.
	n := benchNode(b, dir)
	deadline := time.Now().Add(10 * time.Minute)
	for n.Status().Checkpoint.Op != n.Status().CommitNumber {
		if time.Now().After(deadline) {
			b.Fatal("no checkpoint of the whole log")
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.Stop()
	if restartFixtures.dirs == nil {
		restartFixtures.dirs, restartFixtures.keys = map[int]string{}, map[int]int{}
	}
	restartFixtures.dirs[entries] = dir
	restartFixtures.keys[entries] = len(keys)
	return dir
}

// benchNode starts a node on dir, with default settings, and waits until
// it is ready.
func benchNode(b *testing.B, dir string) *Node {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	n, err := New(cfg, Deps{Metrics: metric.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- n.Run() }()
	for n.Ready() != nil {
		select {
		case err := <-errc:
			b.Fatalf("Run: %v", err)
		default:
		}
		time.Sleep(100 * time.Microsecond)
	}
	return n
}

// BenchmarkRestart is restart-to-ready time of a single node whose log
// holds 1M and 10M entries: from New to Ready, with the newest checkpoint
// at the log's end (the node stopped after checkpointing). Open reads the
// last segment only; the checkpoint holds the 100,000 keys and the
// tenants' op indexes. Also reported: the log's size and the heap the
// node holds once ready, per key.
//
//	go test ./store/node -run '^$' -bench Restart -benchtime 10x -count 5
func BenchmarkRestart(b *testing.B) {
	for _, entries := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("entries=%d", entries), func(b *testing.B) {
			dir := restartFixture(b, entries)
			var heap uint64
			for b.Loop() {
				n := benchNode(b, dir)
				b.StopTimer()
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				heap = ms.HeapAlloc
				n.Stop()
				b.StartTimer()
			}
			b.ReportMetric(float64(heap)/float64(restartFixtures.keys[entries]), "heap-B/key")
			b.ReportMetric(float64(dirBytes(filepath.Join(dir, "log"))), "log-bytes")
		})
	}
}

func dirBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
