package client_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/client"
)

// AuditExport streams the answer into the writer; a 503 before the first
// byte is retried, a 4xx is not, and an answer that breaks off after bytes
// were written is not retried either.
func TestAuditExport(t *testing.T) {
	const export = `{"header":1}` + "\n" + `{"op":1}` + "\n"
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Query().Get("tenant") == "bad":
			apiError(w, 403, "forbidden", "no audit right")
		case r.URL.Query().Get("tenant") == "cut":
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte(export))
			rc := http.NewResponseController(w)
			rc.Flush()
			if conn, _, err := rc.Hijack(); err == nil {
				conn.Close()
			}
		case n == 1:
			apiError(w, 503, "not_ready", "recovering")
		default:
			w.Write([]byte(export))
		}
	})
	c := newClient(t, []string{node.addr()}, fast(client.Options{}))
	var out bytes.Buffer
	n, err := c.AuditExport(t.Context(), "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&format=ndjson", &out)
	if err != nil || n != int64(len(export)) || out.String() != export {
		t.Fatalf("export: %d bytes, %v, %q", n, err, out.String())
	}
	if reqs := node.requests(); len(reqs) != 2 || reqs[1].Path != "/v1/audit" || !strings.Contains(reqs[1].RawQuery, "format=ndjson") {
		t.Fatalf("requests %+v", reqs)
	}

	out.Reset()
	_, err = c.AuditExport(t.Context(), "tenant=bad", &out)
	if e := asError(t, err); e.Status != 403 || e.Code != "forbidden" || e.Attempts != 1 || out.Len() != 0 {
		t.Fatalf("forbidden: %+v, wrote %q", e, out.String())
	}

	before := len(node.requests())
	out.Reset()
	n, err = c.AuditExport(t.Context(), "tenant=cut", &out)
	if e := asError(t, err); e.Attempts != 1 || n != int64(len(export)) || out.String() != export || !strings.Contains(err.Error(), "broke off after") {
		t.Fatalf("cut: %d bytes, %v", n, err)
	}
	if len(node.requests()) != before+1 {
		t.Fatal("a broken stream was retried")
	}
}

// AuditChains decodes the chain hashes by op number.
func TestAuditChains(t *testing.T) {
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"node_id": 1, "cluster": "c0ffee", "chains": map[string]string{"3": "ab", "7": ""}})
	})
	c := newClient(t, []string{node.addr()}, client.Options{})
	cluster, chains, err := c.AuditChains(t.Context(), []uint64{3, 7})
	if err != nil || cluster != "c0ffee" || len(chains) != 2 || chains[3] != "ab" || chains[7] != "" {
		t.Fatalf("%q %v %v", cluster, chains, err)
	}
	if r := node.requests()[0]; r.Path != "/v1/audit/chain" || r.RawQuery != "ops=3,7" {
		t.Fatalf("request %+v", r)
	}
}
