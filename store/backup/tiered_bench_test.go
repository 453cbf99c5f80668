package backup

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// BenchmarkTieredRead reads one op of 100 entries (100-byte values) from
// a log on disk (pread, CRC, decode) and from a directory repository
// through Tiered: from its cache, and with a cache too small to keep an
// object, so that every read fetches, checks and decodes one 4 MiB
// segment object.
//
//	go test ./store/backup -run '^$' -bench TieredRead -count 5
func BenchmarkTieredRead(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	be, err := NewDirBackend(dir)
	if err != nil {
		b.Fatal(err)
	}
	r, err := Init(ctx, be)
	if err != nil {
		b.Fatal(err)
	}
	l, _, err := kmblog.Open(kmblog.Config{Dir: filepath.Join(b.TempDir(), "log")}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	var prev kmblog.Chain
	pos := uint64(1)
	const ops, perObject = 2000, 400
	var batch []*kmblog.Op
	for op := uint64(1); op <= ops; op++ {
		o := &kmblog.Op{Op: op, Timestamp: int64(op), Tenant: "acme", FirstPosition: pos}
		for j := range 100 {
			o.Entries = append(o.Entries, kmblog.Entry{Key: "k" + strings.Repeat("x", j%7), Value: value})
		}
		pos += 100
		o.Chain = kmblog.ChainHash(prev, o)
		prev = o.Chain
		batch = append(batch, o)
		if len(batch) == perObject {
			if err := r.AppendSegment(ctx, batch); err != nil {
				b.Fatal(err)
			}
			if err := l.Append(batch...); err != nil {
				b.Fatal(err)
			}
			batch = nil
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	b.Run("local", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := l.Read(uint64(i%ops) + 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tiered-cached", func(b *testing.B) {
		t := NewTiered(be, 64<<20, nil)
		for i := 0; b.Loop(); i++ {
			if _, err := t.ReadOp(ctx, uint64(i%ops)+1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tiered-uncached", func(b *testing.B) {
		t := NewTiered(be, 1, nil)
		for i := 0; b.Loop(); i++ {
			if _, err := t.ReadOp(ctx, uint64(i%ops)+1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
