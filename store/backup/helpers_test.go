package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
)

var update = flag.Bool("update", false, "rewrite golden files and fuzz seed corpora in testdata")

// baseTS is the commit time of op 1 in generated logs.
const baseTS = int64(1_760_000_000_000_000_000)

// opTimestamp is the commit time genOps gives op n: ops come in groups of
// three that share one timestamp, as a group commit does, so that time
// targets meet ties.
func opTimestamp(n uint64) int64 { return baseTS + int64((n-1)/3)*1_000_000 }

// genOps returns n deterministic ops continuing a log whose next op is
// first at position pos. Every fifth op has no entries, so that position
// targets meet them too.
func genOps(first, pos uint64, n int, seed uint64) []*kmblog.Op {
	rng := rand.New(rand.NewPCG(seed, first))
	ops := make([]*kmblog.Op, n)
	for i := range ops {
		num := first + uint64(i)
		op := &kmblog.Op{
			Op:            num,
			View:          1 + num/50,
			Timestamp:     opTimestamp(num),
			Tenant:        fmt.Sprintf("tenant-%d", rng.IntN(3)),
			FirstPosition: pos,
			ClientID:      rng.Uint64N(1000),
			RequestID:     rng.Uint64(),
		}
		if num%5 != 0 {
			op.Entries = make([]kmblog.Entry, 1+rng.IntN(4))
			for j := range op.Entries {
				op.Entries[j] = kmblog.Entry{
					Key:   fmt.Sprintf("key-%d", rng.IntN(100)),
					Value: fmt.Appendf(nil, `{"seed":%d,"n":%d,"pad":"%s"}`, seed, rng.IntN(1e6), strings.Repeat("x", rng.IntN(60))),
				}
			}
		}
		pos += uint64(len(op.Entries))
		ops[i] = op
	}
	chain(ops)
	return ops
}

// chain sets the chain hashes of ops, as the log's writer does. A run that
// does not start at op 1 chains from the zero hash: only runs starting at
// op 1 are restored.
func chain(ops []*kmblog.Op) []*kmblog.Op {
	var prev kmblog.Chain
	for _, op := range ops {
		op.Chain = kmblog.ChainHash(prev, op)
		prev = op.Chain
	}
	return ops
}

// normalized is op in the shape DecodeOp returns: nil rather than empty
// entries and values.
func normalized(op *kmblog.Op) kmblog.Op {
	o := *op
	if len(o.Entries) == 0 {
		o.Entries = nil
		return o
	}
	o.Entries = append([]kmblog.Entry(nil), o.Entries...)
	for i := range o.Entries {
		if len(o.Entries[i].Value) == 0 {
			o.Entries[i].Value = nil
		}
	}
	return o
}

// assertOps fails unless got holds exactly the ops of want, field by
// field.
func assertOps(t testing.TB, got []kmblog.Op, want []*kmblog.Op) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d ops, want %d", len(got), len(want))
	}
	for i := range want {
		if w := normalized(want[i]); !reflect.DeepEqual(got[i], w) {
			t.Fatalf("op #%d differs:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
}

// sourceLog writes ops to a new log and reads them back: what the backup
// task would ship.
func sourceLog(t testing.TB, ops []*kmblog.Op) []*kmblog.Op {
	t.Helper()
	l, _, err := kmblog.Open(kmblog.Config{Dir: filepath.Join(t.TempDir(), "log")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(ops...); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	var out []*kmblog.Op
	if err := l.Scan(0, func(op *kmblog.Op) error { out = append(out, op); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// readLog opens the log in dir, as a node would, and returns its ops.
func readLog(t testing.TB, dir string) []kmblog.Op {
	t.Helper()
	l, rep, err := kmblog.Open(kmblog.Config{Dir: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rep.TruncatedBytes != 0 {
		t.Fatalf("log %s needed repair: %+v", dir, rep)
	}
	var out []kmblog.Op
	if err := l.Scan(0, func(op *kmblog.Op) error { out = append(out, *op); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// newRepo returns a new repository in a temporary directory.
func newRepo(t testing.TB) (*Repository, *DirBackend) {
	t.Helper()
	b, err := NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return r, b
}

// backUp appends ops to r in segments of the given sizes, cycling
// through them.
func backUp(t testing.TB, r *Repository, ops []*kmblog.Op, sizes ...int) {
	t.Helper()
	for i, k := 0, 0; i < len(ops); k++ {
		n := min(sizes[k%len(sizes)], len(ops)-i)
		if err := r.AppendSegment(context.Background(), ops[i:i+n]); err != nil {
			t.Fatal(err)
		}
		i += n
	}
}

// backedUpRepo is a repository holding nOps generated ops in segments of
// the given sizes, with the source ops.
func backedUpRepo(t testing.TB, nOps int, sizes ...int) (*Repository, *DirBackend, []*kmblog.Op) {
	t.Helper()
	ops := sourceLog(t, genOps(1, 1, nOps, 7))
	r, b := newRepo(t)
	backUp(t, r, ops, sizes...)
	return r, b, ops
}

// flipByte flips one bit of the object at key, at offset off from its
// start (or from its end when off is negative).
func flipByte(t testing.TB, b *DirBackend, key string, off int) {
	t.Helper()
	p := filepath.Join(b.Root(), filepath.FromSlash(key))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += len(data)
	}
	data[off] ^= 0x10
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// faultBackend wraps a Backend and fails chosen calls.
type faultBackend struct {
	Backend
	mu sync.Mutex
	// putFault, if set, is asked before every Put; a non-nil error fails
	// it. With after set, the Put is done and then the error returned,
	// as when a write lands but its acknowledgement is lost.
	putFault func(key string) (err error, after bool)
	puts     []string
}

var errInjected = errors.New("injected fault")

func (f *faultBackend) Put(ctx context.Context, key string, data []byte) error {
	f.mu.Lock()
	fault := f.putFault
	f.puts = append(f.puts, key)
	f.mu.Unlock()
	if fault != nil {
		if err, after := fault(key); err != nil {
			if after {
				if perr := f.Backend.Put(ctx, key, data); perr != nil {
					return perr
				}
			}
			return err
		}
	}
	return f.Backend.Put(ctx, key, data)
}

// failOnce returns a putFault that fails the first Put of key.
func failOnce(key string, after bool) func(string) (error, bool) {
	done := false
	return func(k string) (error, bool) {
		if k == key && !done {
			done = true
			return errInjected, after
		}
		return nil, false
	}
}

// rawRecord frames payload as a segment record.
func rawRecord(payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// rawRecords frames every op.
func rawRecords(ops ...*kmblog.Op) []byte {
	var b []byte
	for _, op := range ops {
		b = append(b, rawRecord(kmblog.AppendOp(nil, op))...)
	}
	return b
}

// decodeAll reads every op of a stored segment object.
func decodeAll(data []byte) ([]kmblog.Op, error) {
	d, err := newSegmentDecoder()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return decodeWith(d, data)
}

// decodeWith is decodeAll with a decoder that is reused.
func decodeWith(d *segmentDecoder, data []byte) ([]kmblog.Op, error) {
	if err := d.reset(data); err != nil {
		return nil, err
	}
	var out []kmblog.Op
	for {
		op, err := d.nextOp()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, op)
	}
}

// Swap goes through the fault-injecting Put.
func (f *faultBackend) Swap(ctx context.Context, key string, old, data []byte) error {
	cur, err := f.Backend.Get(ctx, key)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, old) {
		return fmt.Errorf("%w: %s", errSwapConflict, key)
	}
	return f.Put(ctx, key, data)
}
