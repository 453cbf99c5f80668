package api

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/auth"
	"github.com/kmb-db/kmb/internal/testpki"
	"github.com/kmb-db/kmb/telemetry/metric"
)

func hashOf(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// tokensStore writes a tokens file of three principals and opens it.
func tokensStore(t *testing.T) *auth.Store {
	t.Helper()
	file := auth.Block("writer", hashOf("w-secret"), []string{"acme"}, []string{"read", "write"}) + "\n" +
		auth.Block("reader", hashOf("r-secret"), []string{"acme", "globex"}, []string{"read"}) + "\n" +
		auth.Block("ops", hashOf("o-secret"), []string{"*"}, []string{"read", "write", "audit", "admin"})
	path := filepath.Join(t.TempDir(), "tokens.toml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := auth.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// doAuth sends a request with an Authorization header (none when empty).
func doAuth(t *testing.T, c *http.Client, base, method, path, authz, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %q is not JSON", method, path, raw)
	}
	return resp.StatusCode, resp.Header, out
}

func TestAuthTokens(t *testing.T) {
	f := newFixture(t, DefaultConfig(), WithTokens(tokensStore(t)))
	const batch = `{"entries":[{"key":"k","value":1}]}`
	tests := []struct {
		name, method, path, authz string
		status                    int
		code, reason              string
	}{
		{"no token", "POST", "/v1/tenants/acme/entries", "", 401, "unauthenticated", AuthMissing},
		{"unknown token", "POST", "/v1/tenants/acme/entries", "Bearer nope", 401, "unauthenticated", AuthInvalidToken},
		{"other scheme", "POST", "/v1/tenants/acme/entries", "Basic dzp3LXNlY3JldA==", 401, "unauthenticated", AuthInvalidToken},
		{"hash as secret", "GET", "/v1/tenants/acme/keys/k", "Bearer " + hashOf("w-secret"), 401, "unauthenticated", AuthInvalidToken},
		{"other tenant", "POST", "/v1/tenants/globex/entries", "Bearer w-secret", 403, "forbidden", AuthForbiddenTenant},
		{"read-only writes", "POST", "/v1/tenants/acme/entries", "Bearer r-secret", 403, "forbidden", AuthForbiddenRight},
		{"reader on unknown tenant", "GET", "/v1/tenants/initech/entries", "Bearer r-secret", 403, "forbidden", AuthForbiddenTenant},
		{"no token read", "GET", "/v1/tenants/acme/entries", "", 401, "unauthenticated", AuthMissing},
		{"writer writes", "POST", "/v1/tenants/acme/entries", "Bearer w-secret", 200, "", ""},
		{"bearer is case-insensitive", "POST", "/v1/tenants/acme/entries", "bearer w-secret", 200, "", ""},
		{"reader reads", "GET", "/v1/tenants/acme/keys/k", "Bearer r-secret", 200, "", ""},
		{"wildcard writes anywhere", "POST", "/v1/tenants/initech/entries", "Bearer o-secret", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.node.Status().CommitNumber
			failures := metricValue(t, f.reg, "kmb_auth_failures_total", tt.reason)
			body := ""
			if tt.method == "POST" {
				body = batch
			}
			status, h, out := doAuth(t, f.srv.Client(), f.srv.URL, tt.method, tt.path, tt.authz, body)
			if status != tt.status || (tt.code != "" && out["code"] != tt.code) {
				t.Fatalf("%d %v, want %d %s", status, out, tt.status, tt.code)
			}
			if tt.status == 401 && h.Get("WWW-Authenticate") != `Bearer realm="kmb"` {
				t.Errorf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
			if tt.status != 200 {
				if got := f.node.Status().CommitNumber; got != before {
					t.Errorf("a refused request committed: commit number %d -> %d", before, got)
				}
				if got := metricValue(t, f.reg, "kmb_auth_failures_total", tt.reason); got != failures+1 {
					t.Errorf("kmb_auth_failures_total{reason=%q} = %v, want %v", tt.reason, got, failures+1)
				}
			}
		})
	}

	// Every entry carries the principal that wrote it.
	_, _, out := doAuth(t, f.srv.Client(), f.srv.URL, "GET", "/v1/tenants/acme/entries", "Bearer r-secret", "")
	entries := out["entries"].([]any)
	if len(entries) != 2 {
		t.Fatalf("entries %v", entries)
	}
	for _, e := range entries {
		if p := e.(map[string]any)["principal"]; p != "writer" {
			t.Errorf("entry %v: principal %v, want writer", e, p)
		}
	}
	_, _, out = doAuth(t, f.srv.Client(), f.srv.URL, "GET", "/v1/tenants/initech/entries", "Bearer o-secret", "")
	if p := out["entries"].([]any)[0].(map[string]any)["principal"]; p != "ops" {
		t.Errorf("principal %v, want ops", p)
	}
}

// Without authentication the entries carry no principal at all.
func TestNoPrincipalWithoutAuth(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	if code, _ := f.do(t, "POST", "/v1/tenants/acme/entries", `{"entries":[{"key":"k","value":1}]}`); code != 200 {
		t.Fatal(code)
	}
	_, out := f.do(t, "GET", "/v1/tenants/acme/entries", "")
	if _, ok := out["entries"].([]any)[0].(map[string]any)["principal"]; ok {
		t.Errorf("principal present without authentication: %v", out)
	}
}

// A verified client certificate's CN is the principal of that name.
func TestAuthClientCertificates(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	for _, withTokens := range []bool{true, false} {
		opts := []Option{WithClientCertificates()}
		if withTokens {
			opts = append(opts, WithTokens(tokensStore(t)))
		}
		f := newFixture(t, DefaultConfig(), opts...)
		f.srv.Close()
		srv := httptest.NewUnstartedServer(f.srv.Config.Handler)
		srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		client := func(cn string) *http.Client {
			c := srv.Client()
			tr := c.Transport.(*http.Transport).Clone()
			if cn != "" {
				tr.TLSClientConfig.Certificates = []tls.Certificate{ca.Issue(t, cn, cn).TLS}
			}
			return &http.Client{Transport: tr}
		}
		const batch = `{"entries":[{"key":"k","value":1}]}`
		if code, _, out := doAuth(t, client("writer"), srv.URL, "POST", "/v1/tenants/acme/entries", "", batch); code != 200 {
			t.Fatalf("tokens %v: writer's certificate: %d %v", withTokens, code, out)
		}
		code, _, out := doAuth(t, client("stranger"), srv.URL, "POST", "/v1/tenants/acme/entries", "", batch)
		if want := map[bool]int{true: 401, false: 200}[withTokens]; code != want {
			t.Fatalf("tokens %v: a certificate naming no principal: %d %v, want %d", withTokens, code, out, want)
		}
		if code, _, _ := doAuth(t, client(""), srv.URL, "POST", "/v1/tenants/acme/entries", "", batch); code != 401 {
			t.Fatalf("tokens %v: no certificate: %d", withTokens, code)
		}
		if withTokens {
			// A bearer token wins over the certificate.
			if code, _, _ := doAuth(t, client("writer"), srv.URL, "POST", "/v1/tenants/acme/entries", "Bearer r-secret", batch); code != 403 {
				t.Fatalf("reader's token on writer's certificate: %d", code)
			}
		}
		_, _, out = doAuth(t, client("writer"), srv.URL, "GET", "/v1/tenants/acme/entries", "", "")
		var principals []string
		for _, e := range out["entries"].([]any) {
			principals = append(principals, e.(map[string]any)["principal"].(string))
		}
		want := []string{"writer"}
		if !withTokens {
			want = append(want, "stranger")
		}
		if !slices.Equal(principals, want) {
			t.Errorf("tokens %v: principals %v, want %v", withTokens, principals, want)
		}
	}
}

// metricValue reads one counter series from reg; 0 when absent.
func metricValue(t *testing.T, reg *metric.Registry, name string, labelValues ...string) float64 {
	t.Helper()
	for _, f := range reg.Gather() {
		if f.Name != name {
			continue
		}
		for _, s := range f.Series {
			if slices.Equal(s.LabelValues, labelValues) {
				return s.Value
			}
		}
	}
	return 0
}

// The audit trail takes the audit right: on the tenant exported, on every
// tenant for the whole log, on any tenant for chain hashes.
func TestAuthAudit(t *testing.T) {
	file := auth.Block("writer", hashOf("w"), []string{"acme"}, []string{"read", "write"}) + "\n" +
		auth.Block("acme-auditor", hashOf("a"), []string{"acme"}, []string{"audit"}) + "\n" +
		auth.Block("auditor", hashOf("all"), []string{"*"}, []string{"audit"})
	path := filepath.Join(t.TempDir(), "tokens.toml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, DefaultConfig(), WithTokens(tokens))
	if code, _, _ := doAuth(t, f.srv.Client(), f.srv.URL, "POST", "/v1/tenants/acme/entries", "Bearer w", `{"entries":[{"key":"k","value":1}]}`); code != 200 {
		t.Fatal(code)
	}
	const day = "start=2000-01-01&end=2100-01-01"
	for _, tt := range []struct {
		path, secret string
		want         int
	}{
		{"/v1/audit?" + day, "", 401},
		{"/v1/audit?" + day, "w", 403},
		{"/v1/audit?tenant=acme&" + day, "w", 403},
		{"/v1/audit?tenant=acme&" + day, "a", 200},
		{"/v1/audit?tenant=globex&" + day, "a", 403},
		{"/v1/audit?" + day, "a", 403},
		{"/v1/audit?" + day, "all", 200},
		{"/v1/audit/chain?ops=1", "", 401},
		{"/v1/audit/chain?ops=1", "w", 403},
		{"/v1/audit/chain?ops=1", "a", 200},
		{"/v1/audit/chain?ops=1", "all", 200},
	} {
		req, _ := http.NewRequest("GET", f.srv.URL+tt.path, nil)
		if tt.secret != "" {
			req.Header.Set("Authorization", "Bearer "+tt.secret)
		}
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s with %q: %d, want %d", tt.path, tt.secret, resp.StatusCode, tt.want)
		}
	}
}
