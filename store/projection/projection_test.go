package projection

import (
	"fmt"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

func op(n, first uint64, tenant string, kv ...string) *kmblog.Op {
	o := &kmblog.Op{Op: n, FirstPosition: first, Tenant: tenant}
	for i := 0; i < len(kv); i += 2 {
		o.Entries = append(o.Entries, kmblog.Entry{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return o
}

func TestApplyAndRead(t *testing.T) {
	reg := metric.NewRegistry()
	vec := reg.NewCappedLoopCounterVec("kmb_tenant_log_entries_total", "h", "tenant_id", 10)
	p := New(Metrics{TenantEntries: vec})
	p.Apply(op(1, 1, "a", "k", "1", "j", "2"))
	p.Apply(op(2, 3, "b", "k", "3"))
	p.Apply(op(3, 4, "a", "k", "4"))
	p.Apply(op(2, 3, "b", "k", "stale")) // a replay of an applied op changes nothing

	for _, c := range []struct {
		tenant, key, want string
		pos               uint64
		ok                bool
	}{
		{"a", "k", "4", 4, true},
		{"a", "j", "2", 2, true},
		{"b", "k", "3", 3, true},
		{"b", "j", "", 0, false},
		{"c", "k", "", 0, false},
	} {
		v, ok := p.Get(c.tenant, c.key)
		if ok != c.ok || string(v.Data) != c.want || v.Position != c.pos {
			t.Errorf("Get(%s,%s) = %q@%d %v", c.tenant, c.key, v.Data, v.Position, ok)
		}
	}
	if p.AppliedOp() != 3 || p.AppliedPosition() != 4 || p.ActiveTenants() != 2 {
		t.Fatalf("applied op %d pos %d tenants %d", p.AppliedOp(), p.AppliedPosition(), p.ActiveTenants())
	}
	vec.PublishDirty()
	got := map[string]float64{}
	for _, f := range reg.Gather() {
		for _, s := range f.Series {
			got[s.LabelValues[0]] = s.Value
		}
	}
	if fmt.Sprint(got) != "map[a:3 b:1]" {
		t.Fatalf("per-tenant entries %v", got)
	}
}

func TestOpsFrom(t *testing.T) {
	p := New(Metrics{})
	// Tenant a holds positions 1-2 (op 1), 5-7 (op 3), 9 (op 5).
	p.Apply(op(1, 1, "a", "k", "1", "k", "2"))
	p.Apply(op(2, 3, "b", "k", "1", "k", "2"))
	p.Apply(op(3, 5, "a", "k", "1", "k", "2", "k", "3"))
	p.Apply(op(4, 8, "b", "k", "1"))
	p.Apply(op(5, 9, "a", "k", "1"))
	for _, c := range []struct {
		from  uint64
		max   int
		wants string
	}{
		{1, 10, "[1 3 5]"},
		{2, 10, "[1 3 5]"}, // the op holding position 2 starts before it
		{3, 10, "[3 5]"},
		{7, 10, "[3 5]"},
		{8, 10, "[5]"},
		{10, 10, "[]"},
		{1, 2, "[1 3]"},
	} {
		var ops []uint64
		for _, r := range p.OpsFrom("a", c.from, c.max) {
			ops = append(ops, r.Op)
		}
		if got := fmt.Sprint(ops); got != c.wants && !(got == "[]" && c.wants == "[]") {
			t.Errorf("OpsFrom(a, %d, %d) = %v, want %s", c.from, c.max, got, c.wants)
		}
	}
	if p.OpsFrom("zzz", 1, 10) != nil {
		t.Error("unknown tenant returned ops")
	}
}
