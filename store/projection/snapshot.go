package projection

import (
	"errors"
	"iter"
	"slices"
)

// ErrSnapshotOut is returned by Snapshot while an earlier snapshot is
// still out or still thawing.
var ErrSnapshotOut = errors.New("projection: a snapshot is already out")

// Snapshot is the projection as it stood after one op, frozen for a
// reader on another goroutine (a checkpoint writer) while the loop goes
// on applying.
//
// Taking one copies nothing but the list of tenants: the tenants' key
// maps are frozen instead, and writes made meanwhile go to a per-tenant
// delta that reads consult first. Release hands the maps back; the
// deltas then drain into them, a bounded number of keys at a time (Thaw),
// so that neither taking a snapshot nor ending one stalls the loop for
// longer than a few thousand map writes.
type Snapshot struct {
	p               *Projection
	appliedOp       uint64
	appliedPosition uint64
	tenants         []snapTenant
}

type snapTenant struct {
	id   string
	keys map[string]Value // frozen: nobody writes it until Release
	ops  []OpRef          // a prefix the loop only appends after
}

// Snapshot freezes the projection. Loop only, and one at a time: it fails
// with ErrSnapshotOut until the previous one was released and has thawed.
func (p *Projection) Snapshot() (*Snapshot, error) {
	if p.snapshot || len(p.thawing) > 0 {
		return nil, ErrSnapshotOut
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &Snapshot{p: p, appliedOp: p.appliedOp.Load(), appliedPosition: p.appliedPosition.Load(),
		tenants: make([]snapTenant, 0, len(p.tenants))}
	for _, t := range p.tenants {
		t.frozen = true
		s.tenants = append(s.tenants, snapTenant{id: t.id, keys: t.keys, ops: t.ops[:len(t.ops):len(t.ops)]})
	}
	slices.SortFunc(s.tenants, func(a, b snapTenant) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	p.snapshot = true
	return s, nil
}

// AppliedOp and AppliedPosition are the op and position the snapshot is
// the state after.
func (s *Snapshot) AppliedOp() uint64       { return s.appliedOp }
func (s *Snapshot) AppliedPosition() uint64 { return s.appliedPosition }

// Tenants yields every tenant of the snapshot, in id order, with its keys
// (unordered) and its ops (in log order). Safe on any goroutine until
// Release.
func (s *Snapshot) Tenants() iter.Seq[SnapshotTenant] {
	return func(yield func(SnapshotTenant) bool) {
		for i := range s.tenants {
			if !yield(SnapshotTenant{&s.tenants[i]}) {
				return
			}
		}
	}
}

// SnapshotTenant is one tenant of a Snapshot.
type SnapshotTenant struct{ t *snapTenant }

// ID is the tenant's id.
func (t SnapshotTenant) ID() string { return t.t.id }

// Keys yields the tenant's keys and their values.
func (t SnapshotTenant) Keys() iter.Seq2[string, Value] {
	return func(yield func(string, Value) bool) {
		for k, v := range t.t.keys {
			if !yield(k, v) {
				return
			}
		}
	}
}

// Ops is the tenant's ops, in log order. The caller must not change it.
func (t SnapshotTenant) Ops() []OpRef { return t.t.ops }

// Release ends the snapshot: the frozen maps become writable again, and
// their deltas start draining (Thaw). Loop only; the reader must be done.
func (s *Snapshot) Release() {
	p := s.p
	if !p.snapshot {
		return
	}
	p.mu.Lock()
	for _, t := range p.tenants {
		if t.frozen {
			t.frozen = false
			if t.delta != nil {
				p.thawing = append(p.thawing, t)
			}
		}
	}
	p.snapshot = false
	p.mu.Unlock()
}

// Thaw moves up to n keys from the deltas left by a released snapshot
// into the tenants' maps, and reports whether any remain. Loop only.
func (p *Projection) Thaw(n int) bool {
	if len(p.thawing) == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for n > 0 && len(p.thawing) > 0 {
		t := p.thawing[0]
		for k, v := range t.delta {
			if n == 0 {
				break
			}
			t.keys[k] = v
			delete(t.delta, k)
			n--
		}
		if len(t.delta) == 0 {
			t.delta = nil
			p.thawing[0] = nil
			p.thawing = p.thawing[1:]
		}
	}
	return len(p.thawing) > 0
}

// Builder fills a projection from a checkpoint: Tenant, then its keys and
// ops, then the next tenant. Install puts the result in place.
type Builder struct {
	p       *Projection
	tenants map[string]*tenant
	cur     *tenant
}

// NewBuilder returns a builder of p's next state.
func (p *Projection) NewBuilder() *Builder {
	return &Builder{p: p, tenants: map[string]*tenant{}}
}

// Tenant starts tenant id; it must not have been started before.
func (b *Builder) Tenant(id string) error {
	if b.tenants[id] != nil {
		return errors.New("projection: tenant " + id + " twice")
	}
	b.cur = &tenant{id: id, keys: map[string]Value{}}
	b.tenants[id] = b.cur
	return nil
}

// Key sets a key of the current tenant.
func (b *Builder) Key(key string, v Value) { b.cur.keys[key] = v }

// Op appends an op of the current tenant.
func (b *Builder) Op(r OpRef) { b.cur.ops = append(b.cur.ops, r) }

// Install replaces the projection's state with the built one, as the
// state after op appliedOp and position appliedPosition. Loop only, with
// no snapshot out. The tenants' entry counters resume from the entries
// their ops hold.
func (b *Builder) Install(appliedOp, appliedPosition uint64) {
	p := b.p
	for id, t := range b.tenants {
		if len(t.ops) == 0 && len(t.keys) == 0 {
			delete(b.tenants, id)
			continue
		}
		if p.metrics.TenantEntries != nil {
			t.entries = p.metrics.TenantEntries.With(id)
			var n uint64
			for _, r := range t.ops {
				n += r.Count
			}
			// A counter only rises: installed over a projection that
			// counted some of these entries already (a state transfer),
			// it counts only those it did not.
			if have := t.entries.Total(); n > have {
				t.entries.Add(n - have)
			}
		}
	}
	p.mu.Lock()
	p.tenants = b.tenants
	p.thawing = nil
	p.mu.Unlock()
	p.tenantCount.Store(int64(len(b.tenants)))
	p.appliedPosition.Store(appliedPosition)
	p.appliedOp.Store(appliedOp)
}
