package backup

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/kmb-db/kmb/internal/kmbdtest"
	kmblog "github.com/kmb-db/kmb/store/log"
)

func TestMain(m *testing.M) { kmbdtest.Main(m) }

// A real kmbd's log, backed up and restored, is served by a new kmbd
// exactly as the first one served it, and the new one goes on writing
// after it.
func TestRestoreServedByKmbd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs kmbd")
	}
	ctx := context.Background()
	src := t.TempDir()
	n := kmbdtest.StartNode(t, src, nil)
	tenants := []string{"acme", "globex"}
	for i := range 30 {
		body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":{"i":%d}},{"key":"same","value":%d}]}`, i, i, i)
		if code, b := kmbdtest.HTTPDo(t, "POST", n.API+"/v1/tenants/"+tenants[i%2]+"/entries", body); code != 200 {
			t.Fatalf("write %d: %d %s", i, code, b)
		}
	}
	read := func(node *kmbdtest.Node) map[string]string {
		out := map[string]string{}
		for _, tenant := range tenants {
			for _, path := range []string{"/entries?limit=1000", "/keys/same"} {
				code, b := kmbdtest.HTTPDo(t, "GET", node.API+"/v1/tenants/"+tenant+path, "")
				if code != 200 {
					t.Fatalf("GET %s%s: %d %s", tenant, path, code, b)
				}
				out[tenant+path] = string(b)
			}
		}
		return out
	}
	before := read(n)
	n.Stop(t)

	// Back the stopped node's log up, in a few segments.
	var ops []*kmblog.Op
	for _, op := range readLog(t, filepath.Join(src, "log")) {
		ops = append(ops, &op)
	}
	if len(ops) != 30 {
		t.Fatalf("kmbd's log holds %d ops", len(ops))
	}
	r, _ := newRepo(t)
	backUp(t, r, ops, 7, 11)

	dst := filepath.Join(t.TempDir(), "restored")
	sum, err := Restore(ctx, r, Latest(), dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Ops != 30 || sum.Entries != 60 {
		t.Fatalf("summary %+v", sum)
	}
	m := kmbdtest.StartNode(t, dst, nil)
	if after := read(m); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("restored node serves\n%v\nthe original served\n%v", after, before)
	}
	code, resp := kmbdtest.JSONDo(t, "POST", m.API+"/v1/tenants/acme/entries", `{"entries":[{"key":"new","value":1}]}`)
	if code != 200 || resp["first_position"] != 61.0 {
		t.Fatalf("write after restore: %d %v", code, resp)
	}
	m.Stop(t)

	// A restore to a position serves only the entries up to it.
	half := filepath.Join(t.TempDir(), "half")
	if _, err := Restore(ctx, r, ToPosition(20), half, nil); err != nil {
		t.Fatal(err)
	}
	h := kmbdtest.StartNode(t, half, nil)
	defer h.Stop(t)
	code, resp = kmbdtest.JSONDo(t, "GET", h.API+"/v1/tenants/globex/keys/same", "")
	// Op 10 (positions 19-20) is globex's write of i=9.
	if code != 200 || resp["value"] != 9.0 || resp["position"] != 20.0 {
		t.Fatalf("restored to position 20: %d %v", code, resp)
	}
}
