package projection

import (
	"sort"
	"sync"
	"sync/atomic"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// Value is the latest value of a key and the log position that wrote it.
type Value struct {
	Data     []byte
	Position uint64
}

// OpRef locates a tenant's op in the log.
type OpRef struct {
	Op            uint64
	FirstPosition uint64
	Count         uint64
}

// Metrics are optional; only the applying goroutine records into them.
type Metrics struct {
	// TenantEntries counts applied entries per tenant
	// (kmb_tenant_log_entries_total).
	TenantEntries *metric.CappedLoopCounterVec
}

type tenant struct {
	id string
	// keys holds the latest value of each key, except while a snapshot
	// reads it (frozen) or just after (thawing): then delta holds the
	// values written since, which win over keys'.
	keys    map[string]Value
	delta   map[string]Value
	frozen  bool // a Snapshot reads keys: writes go to delta (loop-owned)
	ops     []OpRef
	entries *metric.LoopCounter // nil without metrics
}

// set writes key's value (loop only, under p.mu).
func (t *tenant) set(key string, v Value) {
	switch {
	case t.frozen:
		if t.delta == nil {
			t.delta = map[string]Value{}
		}
		t.delta[key] = v
	case t.delta != nil: // thawing: keys is writable again, delta drains
		t.keys[key] = v
		delete(t.delta, key)
	default:
		t.keys[key] = v
	}
}

// get reads key's value (under p.mu, for reading at least).
func (t *tenant) get(key string) (Value, bool) {
	if t.delta != nil {
		if v, ok := t.delta[key]; ok {
			return v, true
		}
	}
	v, ok := t.keys[key]
	return v, ok
}

// Projection is the per-tenant key/value state.
type Projection struct {
	metrics Metrics

	mu      sync.RWMutex
	tenants map[string]*tenant
	// thawing lists the tenants whose delta still drains into keys after
	// a snapshot (loop-owned).
	thawing []*tenant
	// snapshot is set while a Snapshot is out (loop-owned).
	snapshot bool

	appliedOp       atomic.Uint64
	appliedPosition atomic.Uint64
	tenantCount     atomic.Int64
}

// New returns an empty projection.
func New(m Metrics) *Projection {
	return &Projection{metrics: m, tenants: map[string]*tenant{}}
}

// Apply applies one committed op. Ops must arrive in log order; an op at or
// below the applied op is ignored, which makes replays after a restart or a
// state transfer idempotent.
func (p *Projection) Apply(op *kmblog.Op) {
	if op.Op <= p.appliedOp.Load() {
		return
	}
	if op.Kind != kmblog.KindData || len(op.Entries) == 0 {
		// System ops (markers, admin actions, configurations) and ops
		// without entries belong to no tenant; their entries still take
		// positions.
		if n := len(op.Entries); n > 0 {
			p.appliedPosition.Store(op.FirstPosition + uint64(n) - 1)
		}
		p.appliedOp.Store(op.Op)
		return
	}
	p.mu.Lock()
	t := p.tenants[op.Tenant]
	if t == nil {
		t = p.newTenant(op.Tenant)
		p.tenants[op.Tenant] = t
		p.tenantCount.Add(1)
	}
	for i := range op.Entries {
		e := &op.Entries[i]
		t.set(e.Key, Value{Data: e.Value, Position: op.FirstPosition + uint64(i)})
	}
	if n := uint64(len(op.Entries)); n > 0 {
		t.ops = append(t.ops, OpRef{Op: op.Op, FirstPosition: op.FirstPosition, Count: n})
	}
	p.mu.Unlock()

	if t.entries != nil {
		t.entries.Add(uint64(len(op.Entries)))
	}
	if n := len(op.Entries); n > 0 {
		p.appliedPosition.Store(op.FirstPosition + uint64(n) - 1)
	}
	p.appliedOp.Store(op.Op)
}

// Get returns the latest value of key for tenant.
func (p *Projection) Get(tenantID, key string) (Value, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	t := p.tenants[tenantID]
	if t == nil {
		return Value{}, false
	}
	return t.get(key)
}

func (p *Projection) newTenant(id string) *tenant {
	t := &tenant{id: id, keys: map[string]Value{}}
	if p.metrics.TenantEntries != nil {
		t.entries = p.metrics.TenantEntries.With(id)
	}
	return t
}

// HasTenant reports whether tenant has applied at least one op.
func (p *Projection) HasTenant(tenantID string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.tenants[tenantID] != nil
}

// OpsFrom returns up to max of tenant's ops that hold a position >= from, in
// log order. The first may start before from.
func (p *Projection) OpsFrom(tenantID string, from uint64, max int) []OpRef {
	p.mu.RLock()
	defer p.mu.RUnlock()
	t := p.tenants[tenantID]
	if t == nil {
		return nil
	}
	i := sort.Search(len(t.ops), func(i int) bool {
		r := t.ops[i]
		return r.FirstPosition+r.Count-1 >= from
	})
	end := min(len(t.ops), i+max)
	return append([]OpRef(nil), t.ops[i:end]...)
}

// AppliedOp is the last applied op number.
func (p *Projection) AppliedOp() uint64 { return p.appliedOp.Load() }

// AppliedPosition is the position of the last applied entry.
func (p *Projection) AppliedPosition() uint64 { return p.appliedPosition.Load() }

// ActiveTenants is the number of tenants holding at least one entry.
func (p *Projection) ActiveTenants() int { return int(p.tenantCount.Load()) }
