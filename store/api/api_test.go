package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/store/node"
	"github.com/kmb-db/kmb/telemetry/metric"
)

type fixture struct {
	srv  *httptest.Server
	node *node.Node
	reg  *metric.Registry
}

func newFixture(t *testing.T, cfg Config, opts ...Option) *fixture {
	t.Helper()
	ncfg := node.DefaultConfig()
	ncfg.DataDir = t.TempDir()
	reg := metric.NewRegistry()
	n, err := node.New(ncfg, node.Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	go n.Run()
	t.Cleanup(n.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for n.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("node never ready")
		}
		time.Sleep(time.Millisecond)
	}
	a, err := New(cfg, n, reg, nil, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, node: n, reg: reg}
}

func (f *fixture) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %s", method, path, ct, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, path, raw, err)
	}
	return resp.StatusCode, out
}

func TestWriteThenRead(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	code, body := f.do(t, "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k1","value":{"n": 1}},{"key":"k2","value":null},{"key":"k1","value":[1, 2]}]}`)
	if code != 200 || fmt.Sprint(body) != "map[commit_number:1 first_position:1 last_position:3]" {
		t.Fatalf("append: %d %v", code, body)
	}
	code, body = f.do(t, "GET", "/v1/tenants/acme/keys/k1", "")
	if code != 200 || fmt.Sprint(body) != "map[key:k1 position:3 value:[1 2]]" {
		t.Fatalf("get k1: %d %v", code, body)
	}
	code, body = f.do(t, "GET", "/v1/tenants/acme/keys/k2", "")
	if code != 200 || body["value"] != nil || body["position"] != 2.0 {
		t.Fatalf("get k2 (null value): %d %v", code, body)
	}
	code, body = f.do(t, "GET", "/v1/tenants/acme/entries?from=2&limit=5", "")
	if code != 200 {
		t.Fatalf("entries: %d %v", code, body)
	}
	list := body["entries"].([]any)
	if len(list) != 2 || body["next"] != 4.0 {
		t.Fatalf("entries = %v", body)
	}
	first := list[0].(map[string]any)
	if first["position"] != 2.0 || first["key"] != "k2" || first["value"] != nil {
		t.Fatalf("first entry = %v", first)
	}
	if _, err := time.Parse(time.RFC3339Nano, first["timestamp"].(string)); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
}

// Every rejected request answers JSON with the right status and code, and
// appends nothing.
func TestRejectedRequestsAppendNothing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 2048
	cfg.MaxBatchEntries = 3
	cfg.MaxKeyBytes = 8
	cfg.MaxValueBytes = 16
	f := newFixture(t, cfg)
	if code, _ := f.do(t, "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"seed","value":1}]}`); code != 200 {
		t.Fatal("seed write failed")
	}
	big := `{"entries":[{"key":"k","value":"` + strings.Repeat("x", 3000) + `"}]}`
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed json", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k","value":1}`, 400, "malformed"},
		{"not an object", "POST", "/v1/tenants/acme/entries", `[1,2]`, 400, "malformed"},
		{"unknown field", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k","value":1,"x":2}]}`, 400, "malformed"},
		{"trailing data", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k","value":1}]} {}`, 400, "malformed"},
		{"empty batch", "POST", "/v1/tenants/acme/entries", `{"entries":[]}`, 400, "malformed"},
		{"missing key", "POST", "/v1/tenants/acme/entries", `{"entries":[{"value":1}]}`, 400, "malformed"},
		{"missing value", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k"}]}`, 400, "malformed"},
		{"empty key", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"","value":1}]}`, 400, "invalid_key"},
		{"control char key", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"a\u0001","value":1}]}`, 400, "invalid_key"},
		{"second entry bad", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"ok","value":1},{"key":"","value":1}]}`, 400, "invalid_key"},
		{"bad tenant upper", "POST", "/v1/tenants/Acme/entries", `{"entries":[{"key":"k","value":1}]}`, 400, "invalid_tenant"},
		{"bad tenant leading dash", "POST", "/v1/tenants/-acme/entries", `{"entries":[{"key":"k","value":1}]}`, 400, "invalid_tenant"},
		{"bad tenant too long", "POST", "/v1/tenants/" + strings.Repeat("a", 65) + "/entries", `{"entries":[{"key":"k","value":1}]}`, 400, "invalid_tenant"},
		{"body too large", "POST", "/v1/tenants/acme/entries", big, 413, "too_large"},
		{"too many entries", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"a","value":1},{"key":"b","value":1},{"key":"c","value":1},{"key":"d","value":1}]}`, 413, "too_large"},
		{"key too long", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"123456789","value":1}]}`, 413, "too_large"},
		{"value too long", "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k","value":"12345678901234567"}]}`, 413, "too_large"},
		{"wrong method", "DELETE", "/v1/tenants/acme/entries", "", 405, "method_not_allowed"},
		{"unknown route", "GET", "/v2/whatever", "", 404, "not_found"},
		{"missing key read", "GET", "/v1/tenants/acme/keys/nope", "", 404, "not_found"},
		{"unknown tenant read", "GET", "/v1/tenants/nobody/entries", "", 404, "not_found"},
		{"bad from", "GET", "/v1/tenants/acme/entries?from=x", "", 400, "bad_request"},
		{"zero from", "GET", "/v1/tenants/acme/entries?from=0", "", 400, "bad_request"},
		{"limit too big", "GET", "/v1/tenants/acme/entries?limit=1001", "", 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.do(t, tt.method, tt.path, tt.body)
			if code != tt.status || body["code"] != tt.code {
				t.Fatalf("got %d %v, want %d code %q", code, body, tt.status, tt.code)
			}
			if msg, _ := body["error"].(string); msg == "" {
				t.Fatalf("no error message: %v", body)
			}
			if s := f.node.Status(); s.OpNumber != 1 || s.Log.LastPosition != 1 {
				t.Fatalf("rejected request changed the log: %+v", s.Log)
			}
		})
	}
	// Rejections are counted as client errors of their method.
	for _, fam := range f.reg.Gather() {
		if fam.Name != "kmb_requests_total" {
			continue
		}
		for _, s := range fam.Series {
			if s.LabelValues[0] == MethodAppend && s.LabelValues[1] == StatusClientError && s.Value != 17 {
				t.Errorf("append client errors = %v, want 17", s.Value)
			}
			if s.LabelValues[0] == MethodAppend && s.LabelValues[1] == StatusOK && s.Value != 1 {
				t.Errorf("append ok = %v, want 1", s.Value)
			}
		}
	}
}

func TestValidTenant(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "acme": true, "a-b_c9": true, "0": true, strings.Repeat("a", 64): true,
		"": false, "A": false, "-a": false, "_a": false, "a.b": false, "a b": false, strings.Repeat("a", 65): false, "é": false,
	} {
		if got := validTenant(id); got != want {
			t.Errorf("validTenant(%q) = %v", id, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.MaxBatchEntries = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "api.max_batch_entries = 0: accepted 1..100000") {
		t.Fatalf("Validate() = %v", err)
	}
}
