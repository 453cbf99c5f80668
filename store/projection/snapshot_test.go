package projection

import (
	"fmt"
	"maps"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// snapshotState reads a whole snapshot into plain maps.
func snapshotState(s *Snapshot) map[string]map[string]string {
	out := map[string]map[string]string{}
	for t := range s.Tenants() {
		m := map[string]string{}
		for k, v := range t.Keys() {
			m[k] = fmt.Sprintf("%s@%d", v.Data, v.Position)
		}
		out[t.ID()] = m
	}
	return out
}

func projState(p *Projection) map[string]map[string]string {
	out := map[string]map[string]string{}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for id, t := range p.tenants {
		m := map[string]string{}
		for k := range t.keys {
			v, _ := t.get(k)
			m[k] = fmt.Sprintf("%s@%d", v.Data, v.Position)
		}
		for k, v := range t.delta {
			m[k] = fmt.Sprintf("%s@%d", v.Data, v.Position)
		}
		out[id] = m
	}
	return out
}

// A snapshot holds the state after the op it was taken at, however the
// loop writes meanwhile; reads see the writes at once; after Release and
// Thaw the projection holds everything, and a second snapshot can be
// taken.
func TestSnapshotIsConsistent(t *testing.T) {
	p := New(Metrics{})
	p.Apply(op(1, 1, "a", "k", "1", "j", "2"))
	p.Apply(op(2, 3, "b", "k", "3"))
	before := projState(p)
	s, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snapshot(); err != ErrSnapshotOut {
		t.Fatalf("second snapshot: %v", err)
	}
	p.Apply(op(3, 4, "a", "k", "4", "new", "5"))
	p.Apply(op(4, 6, "c", "x", "6")) // a tenant born during the snapshot
	if v, _ := p.Get("a", "k"); string(v.Data) != "4" {
		t.Fatalf("read during the snapshot: %s", v.Data)
	}
	if v, ok := p.Get("a", "new"); !ok || string(v.Data) != "5" {
		t.Fatal("new key not readable during the snapshot")
	}
	if got := snapshotState(s); !maps.EqualFunc(got, before, maps.Equal) {
		t.Fatalf("snapshot %v, want %v", got, before)
	}
	if s.AppliedOp() != 2 || s.AppliedPosition() != 3 {
		t.Fatalf("snapshot at op %d position %d", s.AppliedOp(), s.AppliedPosition())
	}
	for tn := range s.Tenants() {
		if tn.ID() == "a" && len(tn.Ops()) != 1 {
			t.Fatalf("tenant a's ops in the snapshot: %v", tn.Ops())
		}
	}
	s.Release()
	p.Apply(op(5, 7, "a", "j", "7")) // while thawing
	if _, err := p.Snapshot(); err != ErrSnapshotOut {
		t.Fatal("snapshot while thawing")
	}
	for p.Thaw(1) {
	}
	want := map[string]map[string]string{
		"a": {"k": "4@4", "j": "7@7", "new": "5@5"},
		"b": {"k": "3@3"},
		"c": {"x": "6@6"},
	}
	if got := projState(p); !maps.EqualFunc(got, want, maps.Equal) {
		t.Fatalf("after thaw %v, want %v", got, want)
	}
	for _, tn := range p.tenants {
		if tn.delta != nil || tn.frozen {
			t.Fatalf("tenant %s still frozen or thawing", tn.id)
		}
	}
	if _, err := p.Snapshot(); err != nil {
		t.Fatal(err)
	}
}

// A builder installs a whole state; the entry counters resume from the
// ops' entries.
func TestBuilderInstall(t *testing.T) {
	reg := metric.NewRegistry()
	vec := reg.NewCappedLoopCounterVec("kmb_tenant_log_entries_total", "h", "tenant_id", 10)
	p := New(Metrics{TenantEntries: vec})
	p.Apply(op(1, 1, "old", "k", "1"))
	b := p.NewBuilder()
	b.Tenant("a")
	b.Key("k", Value{Data: []byte("4"), Position: 4})
	b.Op(OpRef{Op: 1, FirstPosition: 1, Count: 2})
	b.Op(OpRef{Op: 3, FirstPosition: 4, Count: 1})
	if err := b.Tenant("a"); err == nil {
		t.Fatal("a tenant twice")
	}
	b.Install(3, 4)
	if p.HasTenant("old") || !p.HasTenant("a") || p.ActiveTenants() != 1 || p.AppliedOp() != 3 || p.AppliedPosition() != 4 {
		t.Fatal("install did not replace the state")
	}
	if v, _ := p.Get("a", "k"); string(v.Data) != "4" {
		t.Fatal("key lost")
	}
	p.Apply(op(3, 4, "a", "k", "stale"))
	p.Apply(op(4, 5, "a", "k", "5"))
	if v, _ := p.Get("a", "k"); string(v.Data) != "5" || len(p.OpsFrom("a", 1, 10)) != 3 {
		t.Fatal("apply after install")
	}
	vec.PublishDirty()
	if got := vec.With("a").Value(); got != 4 {
		t.Fatalf("entries of a = %d, want 4", got)
	}
	// A later install (a state transfer) over the counted entries counts
	// only the ones the counter has not seen.
	b = p.NewBuilder()
	b.Tenant("a")
	b.Key("k", Value{Data: []byte("9"), Position: 9})
	b.Op(OpRef{Op: 1, FirstPosition: 1, Count: 2})
	b.Op(OpRef{Op: 3, FirstPosition: 4, Count: 1})
	b.Op(OpRef{Op: 4, FirstPosition: 5, Count: 1})
	b.Op(OpRef{Op: 8, FirstPosition: 6, Count: 4})
	b.Install(8, 9)
	vec.PublishDirty()
	if got := vec.With("a").Value(); got != 8 {
		t.Fatalf("entries of a after a second install = %d, want 8", got)
	}
}

// fill applies keys keys of 10 tenants (kmbd bench's shape) in ops of 100
// entries with 100-byte values.
func fill(p *Projection, keys int) {
	value := make([]byte, 100)
	pos, n := uint64(1), uint64(1)
	for i := 0; i < keys; n++ {
		o := op(n, pos, fmt.Sprintf("tenant-%d", n%10))
		for j := 0; j < 100 && i < keys; j++ {
			o.Entries = append(o.Entries, kmblogEntry(fmt.Sprintf("k%08d", i), value))
			i++
		}
		p.Apply(o)
		pos += uint64(len(o.Entries))
	}
}

var filled = map[int]*Projection{}

// BenchmarkSnapshotPause is how long the loop stops to take a snapshot
// of a projection of 1M and 10M keys: freezing (what Snapshot does),
// against cloning every tenant's map (maps.Clone, the obvious
// alternative), and ending it (Release plus thawing the writes made
// meanwhile, here 100,000 keys, in steps of 16,384).
func BenchmarkSnapshotPause(b *testing.B) {
	for _, keys := range []int{1_000_000, 10_000_000} {
		p := filled[keys]
		if p == nil {
			p = New(Metrics{})
			fill(p, keys)
			filled[keys] = p // kept for -count's later runs: filling takes long
		}
		b.Run(fmt.Sprintf("keys=%d/freeze", keys), func(b *testing.B) {
			for b.Loop() {
				s, err := p.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Release()
				for p.Thaw(1 << 20) {
				}
				b.StartTimer()
			}
		})
		b.Run(fmt.Sprintf("keys=%d/maps.Clone", keys), func(b *testing.B) {
			for b.Loop() {
				p.mu.RLock()
				for _, t := range p.tenants {
					_ = maps.Clone(t.keys)
				}
				p.mu.RUnlock()
			}
		})
		b.Run(fmt.Sprintf("keys=%d/thaw-step-16384", keys), func(b *testing.B) {
			value := make([]byte, 100)
			for b.Loop() {
				b.StopTimer()
				s, _ := p.Snapshot()
				o := op(1<<40, 1<<40, "tenant-1")
				for j := range 16384 {
					o.Entries = append(o.Entries, kmblogEntry(fmt.Sprintf("k%08d", j*10), value))
				}
				p.appliedOp.Store(0)
				p.Apply(o)
				s.Release()
				b.StartTimer()
				p.Thaw(16384)
			}
		})
	}
}

func kmblogEntry(k string, v []byte) kmblog.Entry { return kmblog.Entry{Key: k, Value: v} }

// A snapshot is read on another goroutine while the loop applies and
// readers read (run with -race).
func TestSnapshotConcurrent(t *testing.T) {
	p := New(Metrics{})
	fill(p, 20000)
	s, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() {
		n := 0
		for tn := range s.Tenants() {
			for range tn.Keys() {
				n++
			}
			_ = len(tn.Ops())
		}
		done <- n
	}()
	go func() {
		for i := range 1000 {
			p.Get("tenant-3", fmt.Sprintf("k%08d", i))
		}
	}()
	pos := p.AppliedPosition() + 1
	for i := range 200 {
		p.Apply(op(p.AppliedOp()+1, pos, fmt.Sprintf("tenant-%d", i%12), fmt.Sprintf("k%08d", i), "x"))
		pos++
	}
	if n := <-done; n != 20000 {
		t.Fatalf("snapshot held %d keys", n)
	}
	s.Release()
	for p.Thaw(7) {
	}
	if v, _ := p.Get("tenant-0", "k00000000"); string(v.Data) != "x" {
		t.Fatal("write during the snapshot lost")
	}
}
