package node

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// BenchmarkRetentionDiskUse writes a sustained load into a single node
// with storage.retention_bytes = 8 MiB (1 MiB segments and checkpoint
// interval, allow_unbacked_truncation) and samples the data dir's size
// (log, checkpoints, superblock) every MiB written. Each iteration is a
// fresh node that writes written MiB as ops of 100 entries of 1 kB over
// 1000 keys. max_disk_bytes stays near retention_bytes plus the two
// checkpoints kept plus what is written between two retention passes
// (every 100ms while over the limit), whatever the volume written;
// written_bytes is the log written.
//
//	go test ./store/node -run '^$' -bench RetentionDiskUse -benchtime 1x
func BenchmarkRetentionDiskUse(b *testing.B) {
	for _, mib := range []int{32, 128} {
		b.Run(fmt.Sprintf("written=%dMiB", mib), func(b *testing.B) {
			var maxDisk, final, written int64
			for range b.N {
				m, f, w := retentionDiskUse(b, int64(mib)<<20)
				maxDisk, final, written = max(maxDisk, m), f, w
			}
			b.ReportMetric(float64(maxDisk), "max_disk_bytes")
			b.ReportMetric(float64(final), "final_disk_bytes")
			b.ReportMetric(float64(written), "written_bytes")
		})
	}
}

func retentionDiskUse(b *testing.B, volume int64) (maxDisk, final, written int64) {
	cfg := retentionConfig(b.TempDir())
	cfg.RetentionBytes = 8 << 20
	reg := metric.NewRegistry()
	n, err := New(cfg, Deps{Metrics: reg})
	if err != nil {
		b.Fatal(err)
	}
	go n.Run()
	defer n.Stop()
	for deadline := time.Now().Add(20 * time.Second); n.Ready() != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("node not ready")
		}
	}
	value := []byte(`"` + strings.Repeat("v", 998) + `"`)
	es := make([]kmblog.Entry, 100)
	sampled := int64(0)
	for req := uint64(1); written < volume; req++ {
		for i := range es {
			es[i] = kmblog.Entry{Key: fmt.Sprintf("k%03d", (int(req)*100+i)%1000), Value: value}
		}
		if _, err := n.Append(context.Background(), Write{Tenant: "t", Entries: es, ClientID: 9, RequestID: req}); err != nil {
			b.Fatal(err)
		}
		written = int64(gathered(reg, "kmb_log_bytes_total"))
		if written-sampled >= 1<<20 {
			sampled = written
			maxDisk = max(maxDisk, treeBytes(b, cfg.DataDir))
		}
	}
	return maxDisk, treeBytes(b, cfg.DataDir), written
}

// gathered is the value of a single-series family.
func gathered(reg *metric.Registry, name string) float64 {
	for _, f := range reg.Gather() {
		if f.Name == name && len(f.Series) == 1 {
			return f.Series[0].Value
		}
	}
	return 0
}

// treeBytes is the size of the regular files under dir; files removed
// while it walks are skipped.
func treeBytes(b *testing.B, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
