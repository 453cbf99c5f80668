package deploy

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kmb-db/kmb/internal/kmbdtest"
	"github.com/kmb-db/kmb/internal/testpki"
)

// A real Prometheus scrapes kmbd over TLS with basic_auth, as the
// commented example in prometheus/prometheus.yml shows; a job with the
// wrong password is refused; probes stay open without credentials, and
// /metrics, /status and /debug/pprof/* are closed without them.
func TestE2EPrometheusScrapesOverTLSWithBasicAuth(t *testing.T) {
	t.Parallel()
	prometheus := kmbdtest.RequireTool(t, "KMB_PROMETHEUS", "prometheus")
	dir := t.TempDir()
	ca := testpki.NewCA(t, "kmb telemetry CA")
	cert := ca.Issue(t, "telemetry", "kmb-telemetry", "127.0.0.1")
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, fmt.Appendf(nil, "tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n",
		cert.CertFile, cert.KeyFile, hash), 0o600); err != nil {
		t.Fatal(err)
	}
	n := kmbdtest.Launch(t, t.TempDir(), nil, "--web.config.file", webConfig)
	if !strings.HasPrefix(n.Tel, "https://") {
		t.Fatalf("telemetry at %s, want https", n.Tel)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	get := func(path, user, pass string) int {
		req, _ := http.NewRequest("GET", n.Tel+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	kmbdtest.WaitFor(t, "ready over HTTPS without credentials", 20*time.Second, func() bool { return get("/health/ready", "", "") == 200 })
	for _, tt := range []struct {
		path, user, pass string
		want             int
	}{
		{"/health/live", "", "", 200},
		{"/metrics", "", "", 401},
		{"/metrics", "prometheus", "wrong", 401},
		{"/metrics", "nobody", "scrape-secret", 401},
		{"/metrics", "prometheus", "scrape-secret", 200},
		{"/status", "", "", 401},
		{"/status", "prometheus", "scrape-secret", 200},
		{"/debug/pprof/heap", "", "", 401},
		{"/debug/pprof/heap", "prometheus", "scrape-secret", 200},
	} {
		if got := get(tt.path, tt.user, tt.pass); got != tt.want {
			t.Errorf("GET %s as %q: %d, want %d", tt.path, tt.user, got, tt.want)
		}
	}
	if code, _ := kmbdtest.HTTPDo(t, "GET", "http://"+strings.TrimPrefix(n.Tel, "https://")+"/health/live", ""); code == 200 {
		t.Error("plain HTTP served next to HTTPS")
	}

	target := strings.TrimPrefix(n.Tel, "https://")
	promAddr := kmbdtest.FreeAddrs(t, 1)[0]
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: kmb
    scheme: https
    tls_config:
      ca_file: %q
    basic_auth:
      username: prometheus
      password: scrape-secret
    static_configs:
      - targets: [%q]
  - job_name: wrong_password
    scheme: https
    tls_config:
      ca_file: %q
    basic_auth:
      username: prometheus
      password: guess
    static_configs:
      - targets: [%q]
`, ca.CertFile, target, ca.CertFile, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := "http://" + promAddr
	pp := kmbdtest.Start(t, "prometheus", nil, prometheus,
		"--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	kmbdtest.WaitFor(t, "Prometheus scraping kmbd over TLS with basic auth", 60*time.Second, func() bool {
		if pp.Exited() {
			t.Fatalf("prometheus exited:\n%s", pp.Output.String())
		}
		up, err := promQuery(prom, `up{job="kmb"} == 1 and on(instance) kmb_build_info{job="kmb"}`)
		return err == nil && len(up) == 1
	})
	kmbdtest.WaitFor(t, "the wrong password's job down", 30*time.Second, func() bool {
		up, err := promQuery(prom, `up{job="wrong_password"}`)
		return err == nil && len(up) == 1 && up[0].Value == 0
	})
	if s, err := promQuery(prom, `kmb_consensus_is_leader{job="kmb"}`); err != nil || len(s) != 1 || s[0].Value != 1 {
		t.Errorf("kmb_consensus_is_leader through Prometheus: %v %v", s, err)
	}
}
