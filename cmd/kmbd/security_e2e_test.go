package main

// End-to-end tests of authentication, authorization and TLS: real kmbd
// processes, certificates from a CA made here, and clients over HTTPS.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kmb-db/kmb/auth"
	"github.com/kmb-db/kmb/internal/kmbdtest"
	"github.com/kmb-db/kmb/internal/testpki"
)

func secretHash(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// tokensFile writes a tokens file of blocks and returns its path.
func tokensFile(t *testing.T, blocks ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.toml")
	if err := os.WriteFile(path, []byte(strings.Join(blocks, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsClient trusts ca and presents cert when given; every request opens a
// new connection when fresh is set (so each one sees the certificate
// served now).
func tlsClient(ca *testpki.CA, cert *testpki.Leaf, fresh bool) *http.Client {
	cfg := &tls.Config{RootCAs: ca.Pool()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: fresh}}
}

// call sends a request with an optional bearer secret and decodes the
// JSON answer; a transport error is status 0.
func call(t *testing.T, c *http.Client, method, url, secret, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

// Every 401, 403 and 200 path of a node with tokens over HTTPS; the
// principal on every entry; SIGHUP reloading the tokens file (a bad one
// changes nothing) and recording the reload in the log.
func TestE2EAuthTokensOverTLS(t *testing.T) {
	ca := testpki.NewCA(t, "kmb test CA")
	cert := ca.Issue(t, "api", "kmb-api")
	tokens := tokensFile(t,
		auth.Block("acme-writer", secretHash("w"), []string{"acme"}, []string{"read", "write"}),
		auth.Block("reader", secretHash("r"), []string{"*"}, []string{"read"}))
	n := kmbdtest.StartNode(t, t.TempDir(), debugLog, "--auth-tokens-file", tokens, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile)
	if !strings.HasPrefix(n.API, "https://") {
		t.Fatalf("API at %s, want https", n.API)
	}
	c := tlsClient(ca, nil, false)
	const batch = `{"entries":[{"key":"k","value":1}]}`
	for _, tt := range []struct {
		name, method, path, secret, body string
		status                           int
		code                             string
	}{
		{"no token", "POST", "/v1/tenants/acme/entries", "", batch, 401, "unauthenticated"},
		{"unknown token", "POST", "/v1/tenants/acme/entries", "nope", batch, 401, "unauthenticated"},
		{"other tenant", "POST", "/v1/tenants/globex/entries", "w", batch, 403, "forbidden"},
		{"no write right", "POST", "/v1/tenants/acme/entries", "r", batch, 403, "forbidden"},
		{"no token read", "GET", "/v1/tenants/acme/keys/k", "", "", 401, "unauthenticated"},
		{"writer writes", "POST", "/v1/tenants/acme/entries", "w", batch, 200, ""},
		{"reader reads", "GET", "/v1/tenants/acme/keys/k", "r", "", 200, ""},
		{"writer reads its tenant", "GET", "/v1/tenants/acme/entries", "w", "", 200, ""},
	} {
		code, m := call(t, c, tt.method, n.API+tt.path, tt.secret, tt.body)
		if code != tt.status || (tt.code != "" && m["code"] != tt.code) {
			t.Errorf("%s: %d %v, want %d %s", tt.name, code, m, tt.status, tt.code)
		}
	}
	if s := n.Status(t); s["op_number"] != 1.0 {
		t.Errorf("refused requests appended: op_number %v, want 1", s["op_number"])
	}
	_, m := call(t, c, "GET", n.API+"/v1/tenants/acme/entries", "r", "")
	if e := m["entries"].([]any); len(e) != 1 || e[0].(map[string]any)["principal"] != "acme-writer" {
		t.Errorf("entries %v: want one written by acme-writer", m["entries"])
	}
	for reason, want := range map[string]string{"missing_credentials": "2", "invalid_token": "1", "forbidden_tenant": "1", "forbidden_right": "1"} {
		if got := n.Metric(t, fmt.Sprintf(`kmb_auth_failures_total{node_id="1",reason=%q}`, reason)); got != want {
			t.Errorf("kmb_auth_failures_total{reason=%q} = %s, want %s", reason, got, want)
		}
	}
	// Plain HTTP to the HTTPS port gets nothing.
	if code, _ := kmbdtest.HTTPDo(t, "GET", "http://"+strings.TrimPrefix(n.API, "https://")+"/v1/tenants/acme/keys/k", ""); code == 200 {
		t.Error("plain HTTP served")
	}

	// A bad file keeps the old principals and logs an ERROR naming the line.
	if err := os.WriteFile(tokens, []byte("[[token]]\nname = \"x\"\nsha256 = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kmbdtest.WaitFor(t, "the ERROR about the bad tokens file", 10*time.Second, func() bool {
		return logLine(t, n, "ERROR", "tokens file not reloaded", "line 3")
	})
	if code, _ := call(t, c, "POST", n.API+"/v1/tenants/acme/entries", "w", batch); code != 200 {
		t.Fatalf("after a bad reload the old token: %d", code)
	}
	// A good file replaces them, and the leader records the reload.
	if err := os.WriteFile(tokens, []byte(auth.Block("new-writer", secretHash("n"), []string{"acme"}, []string{"write", "read"})), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kmbdtest.WaitFor(t, "the new token to work", 10*time.Second, func() bool {
		code, _ := call(t, c, "POST", n.API+"/v1/tenants/acme/entries", "n", batch)
		return code == 200
	})
	if code, _ := call(t, c, "POST", n.API+"/v1/tenants/acme/entries", "w", batch); code != 401 {
		t.Errorf("a removed token after reload: %d, want 401", code)
	}
	kmbdtest.WaitFor(t, "the token_reload op", 10*time.Second, func() bool {
		return logLine(t, n, "INFO", "token_reload committed", "")
	})
	// The admin op is in the log, not in any tenant: acme has its 3 writes.
	_, m = call(t, c, "GET", n.API+"/v1/tenants/acme/entries", "n", "")
	if e := m["entries"].([]any); len(e) != 3 || e[2].(map[string]any)["principal"] != "new-writer" {
		t.Errorf("acme entries after the reload: %v", e)
	}
	if s := n.Status(t); s["op_number"] != 4.0 {
		t.Errorf("op_number %v, want 4: three writes and the token_reload op", s["op_number"])
	}
	n.Stop(t)
}

// logLine reports whether the node logged a line at level whose message
// starts with msg and whose text contains also.
func logLine(t *testing.T, n *kmbdtest.Node, level, msg, also string) bool {
	for _, l := range n.Output.LogLines(t) {
		if l["level"] == level && strings.HasPrefix(l["message"].(string), msg) {
			b, _ := json.Marshal(l)
			if strings.Contains(string(b), also) {
				return true
			}
		}
	}
	return false
}

// Client certificates: the CN is the principal of that name; a client
// without a certificate cannot even connect.
func TestE2EClientCertificates(t *testing.T) {
	ca := testpki.NewCA(t, "kmb test CA")
	cert := ca.Issue(t, "api", "kmb-api")
	tokens := tokensFile(t, auth.Block("acme-app", secretHash("unused-secret"), []string{"acme"}, []string{"read", "write"}))
	n := kmbdtest.StartNode(t, t.TempDir(), debugLog, "--auth-tokens-file", tokens,
		"--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile, "--tls-client-ca", ca.CertFile)
	app := tlsClient(ca, ca.Issue(t, "app", "acme-app"), false)
	if code, m := call(t, app, "POST", n.API+"/v1/tenants/acme/entries", "", `{"entries":[{"key":"k","value":1}]}`); code != 200 {
		t.Fatalf("acme-app's certificate: %d %v", code, m)
	}
	if code, _ := call(t, app, "POST", n.API+"/v1/tenants/globex/entries", "", `{"entries":[{"key":"k","value":1}]}`); code != 403 {
		t.Errorf("acme-app on globex: %d, want 403", code)
	}
	_, m := call(t, app, "GET", n.API+"/v1/tenants/acme/entries", "", "")
	if e := m["entries"].([]any); e[0].(map[string]any)["principal"] != "acme-app" {
		t.Errorf("principal %v", e)
	}
	if code, _ := call(t, tlsClient(ca, ca.Issue(t, "stranger", "stranger"), false), "GET", n.API+"/v1/tenants/acme/keys/k", "", ""); code != 401 {
		t.Errorf("a certificate naming no principal: %d, want 401", code)
	}
	if code, _ := call(t, tlsClient(ca, nil, false), "GET", n.API+"/v1/tenants/acme/keys/k", "", ""); code != 0 {
		t.Errorf("no client certificate: %d, want no connection", code)
	}
	foreign := testpki.NewCA(t, "another CA")
	if code, _ := call(t, tlsClient(ca, foreign.Issue(t, "f", "acme-app"), false), "GET", n.API+"/v1/tenants/acme/keys/k", "", ""); code != 0 {
		t.Errorf("a certificate of another CA: %d, want no connection", code)
	}
}

// The API's certificate rotates under load, by replacing the files and by
// SIGHUP, without a restart and without one failed write.
func TestE2ECertificateRotationUnderLoad(t *testing.T) {
	ca := testpki.NewCA(t, "kmb test CA")
	first := ca.Issue(t, "api", "first")
	n := kmbdtest.StartNode(t, t.TempDir(), debugLog, "--tls-cert", first.CertFile, "--tls-key", first.KeyFile)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := tlsClient(ca, nil, true) // a handshake per request
			for seq := 0; ctx.Err() == nil; seq++ {
				body := fmt.Sprintf(`{"entries":[{"key":"w%d-%d","value":1}]}`, i, seq)
				req, _ := http.NewRequestWithContext(ctx, "POST", n.API+"/v1/tenants/load/entries", strings.NewReader(body))
				resp, err := c.Do(req)
				switch {
				case ctx.Err() != nil:
				case err != nil:
					failed.Add(1)
					lastErr.Store(err.Error())
				default:
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
					} else {
						failed.Add(1)
						lastErr.Store(resp.Status)
					}
				}
			}
		}()
	}
	served := func() string {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(n.API, "https://"), &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			return ""
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	kmbdtest.WaitFor(t, "writes under load", 20*time.Second, func() bool { return ok.Load() > 20 })

	// Replace the files in place: the next handshakes serve the new one.
	second := ca.Issue(t, "second", "second")
	replaceFile(t, first.KeyFile, second.KeyPEM)
	replaceFile(t, first.CertFile, second.CertPEM)
	kmbdtest.WaitFor(t, "the second certificate", 20*time.Second, func() bool { return served() == "second" })
	// And by SIGHUP.
	third := ca.Issue(t, "third", "third")
	replaceFile(t, first.KeyFile, third.KeyPEM)
	replaceFile(t, first.CertFile, third.CertPEM)
	if err := n.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kmbdtest.WaitFor(t, "the third certificate", 20*time.Second, func() bool { return served() == "third" })
	before := ok.Load()
	kmbdtest.WaitFor(t, "writes after the rotation", 20*time.Second, func() bool { return ok.Load() > before+20 })
	cancel()
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Errorf("%d of %d writes failed during the rotation; last: %v", f, f+ok.Load(), lastErr.Load())
	}
	n.Stop(t)
}

// replaceFile swaps path's content atomically, as a certificate manager
// does (write aside, rename over).
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// kmbd refuses to serve beyond loopback unprotected: exit 2, one line
// naming the fix, nothing bound.
func TestE2ERefusesInsecureExposure(t *testing.T) {
	for _, args := range [][]string{
		{"--api-listen", "0.0.0.0:0"},
		{"--replicas", "1=127.0.0.1:0,2=192.0.2.1:7102"},
	} {
		cmd := exec.Command(kmbdtest.Binary(t), append([]string{"--data-dir", t.TempDir(), "--telemetry-listen", "127.0.0.1:0"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("%v: %v, want exit 2", args, err)
		}
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "allow_insecure = true") {
			t.Errorf("%v: stderr %q, want one line naming the fix", args, stderr.String())
		}
	}
}

// 500 clients sending a byte a second hold connections, and other
// clients' writes go on.
func TestE2ESlowClientsDoNotStopWrites(t *testing.T) {
	n := kmbdtest.StartNode(t, t.TempDir(), nil)
	addr := strings.TrimPrefix(n.API, "http://")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const slow = 500
	var opened atomic.Int64
	var wg sync.WaitGroup
	for range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			opened.Add(1)
			req := "POST /v1/tenants/acme/entries HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := c.Write([]byte{req[i%len(req)]}); err != nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		}()
	}
	kmbdtest.WaitFor(t, "500 slow connections", 20*time.Second, func() bool { return opened.Load() == slow })
	c := &http.Client{Timeout: 5 * time.Second}
	for i := range 20 {
		start := time.Now()
		resp, err := c.Post(n.API+"/v1/tenants/acme/entries", "application/json", strings.NewReader(fmt.Sprintf(`{"entries":[{"key":"k%d","value":1}]}`, i)))
		if err != nil {
			t.Fatalf("write %d among slow clients: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("write %d among slow clients: %s after %v", i, resp.Status, time.Since(start))
		}
	}
	cancel()
	wg.Wait()
}

// Telemetry on every interface without authentication: a WARN at start,
// pprof for loopback clients as the monitoring page documents, 403 with a
// JSON reason for the others, and /metrics as before.
func TestE2EPprofLoopbackOnly(t *testing.T) {
	n := kmbdtest.StartNode(t, t.TempDir(), nil, "--telemetry-listen", "0.0.0.0:0")
	if !logLine(t, n, "WARN", "/debug/pprof is served to loopback clients only", "telemetry.web_config_file") {
		t.Error("no WARN about pprof at start")
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(n.Tel, "http://"))
	if code, _ := kmbdtest.HTTPDo(t, "GET", "http://127.0.0.1:"+port+"/debug/pprof/heap", ""); code != 200 {
		t.Errorf("pprof from loopback: %d", code)
	}
	ip := nonLoopbackIP(t)
	if ip == "" {
		t.Log("no non-loopback address on this host: the 403 path is covered by the profiling package's tests only")
		return
	}
	code, body := kmbdtest.HTTPDo(t, "GET", "http://"+net.JoinHostPort(ip, port)+"/debug/pprof/heap", "")
	if code != 403 || !strings.Contains(string(body), `"error":"profiles are served to loopback clients only`) {
		t.Errorf("pprof from %s: %d %s, want 403 with a JSON reason", ip, code, body)
	}
	if code, _ := kmbdtest.HTTPDo(t, "GET", "http://"+net.JoinHostPort(ip, port)+"/metrics", ""); code != 200 {
		t.Errorf("/metrics from %s: %d", ip, code)
	}
}

// nonLoopbackIP is an IPv4 address of this host that is not loopback, ""
// if it has none.
func nonLoopbackIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}

// A replica with a foreign certificate, or the wrong secret, is refused
// while the other two commit.
func TestE2EReplicationRefusesStrangers(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	foreign := testpki.NewCA(t, "another CA")
	secret := func(s string) string {
		path := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(path, []byte(strings.Repeat(s, 64)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tlsArgs := func(ca *testpki.CA, name string) []string {
		l := ca.Issue(t, name, name, "127.0.0.1")
		return []string{"--cluster-tls-cert", l.CertFile, "--cluster-tls-key", l.KeyFile, "--cluster-tls-ca", ca.CertFile}
	}
	for _, tt := range []struct {
		name     string
		member   func(id uint64) []string
		stranger []string
		reason   string
	}{
		{"foreign certificate", func(id uint64) []string { return tlsArgs(ca, fmt.Sprintf("node-%d", id)) }, tlsArgs(foreign, "node-3"), "tls"},
		{"wrong secret", func(uint64) []string { return []string{"--cluster-secret-file", secret("a")} }, []string{"--cluster-secret-file", secret("b")}, "bad_proof"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var peers []string
			for i, addr := range kmbdtest.FreeAddrs(t, 3) {
				peers = append(peers, fmt.Sprintf("%d=%s", i+1, addr))
			}
			replicas := strings.Join(peers, ",")
			nodes := map[uint64]*kmbdtest.Node{}
			start := func(id uint64, extra []string) {
				args := append([]string{"--node-id", fmt.Sprint(id), "--replicas", replicas}, extra...)
				nodes[id] = kmbdtest.Launch(t, t.TempDir(), debugLog, args...)
			}
			for id := uint64(1); id <= 3; id++ {
				start(id, tt.member(id))
			}
			for _, n := range nodes {
				n.WaitReady(t, 30*time.Second)
			}
			write := func(i int) {
				body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":%d}]}`, i, i)
				kmbdtest.WaitFor(t, "a committed write", 20*time.Second, func() bool {
					for _, id := range []uint64{1, 2} {
						if code, _ := kmbdtest.HTTPDo(t, "POST", nodes[id].API+"/v1/tenants/acme/entries", body); code == 200 {
							return true
						}
					}
					return false
				})
			}
			write(0)
			// Node 3 is replaced by a process at its address, with its
			// id, but without the cluster's credentials.
			nodes[3].Stop(t)
			start(3, tt.stranger)
			for i := 1; i <= 10; i++ {
				write(i)
			}
			series := fmt.Sprintf(`kmb_replication_handshakes_rejected_total{node_id="1",reason=%q}`, tt.reason)
			kmbdtest.WaitFor(t, series+" above 0", 20*time.Second, func() bool {
				return nodes[1].Metric(t, series) != "0"
			})
			if s := nodes[3].Status(t); s["commit_number"] != 0.0 {
				t.Errorf("the stranger committed %v ops", s["commit_number"])
			}
			if got := nodes[1].Metric(t, `kmb_replication_connected{node_id="1",peer="3"}`); got != "0" {
				t.Errorf("node 1 connected to the stranger: %s", got)
			}
			if !logLine(t, nodes[1], "WARN", "replication handshake rejected", tt.reason) {
				t.Error("no WARN about the rejected handshake")
			}
		})
	}
}

// kmbd bench --addrs against a node that requires a token over TLS: with
// --token and --cacert every write succeeds, as the principal; without
// the token the run stops at the first 401.
func TestE2EBenchWithTokenAndTLS(t *testing.T) {
	ca := testpki.NewCA(t, "kmb test CA")
	cert := ca.Issue(t, "api", "kmb-api")
	tokens := tokensFile(t, auth.Block("bench", secretHash("bench-secret"), []string{"*"}, []string{"write"}))
	n := kmbdtest.StartNode(t, t.TempDir(), nil, "--auth-tokens-file", tokens, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile)
	addr := strings.TrimPrefix(n.API, "https://")
	args := []string{"bench", "--addrs", addr, "--cacert", ca.CertFile, "--duration", "500ms", "--warmup", "0", "--clients", "2", "--batch", "5", "--tenants", "2", "--json"}
	out, err := exec.Command(kmbdtest.Binary(t), append(args, "--token", "bench-secret")...).CombinedOutput()
	if err != nil {
		t.Fatalf("bench with the token: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || res["errors"] != 0.0 || res["requests"].(float64) < 1 {
		t.Fatalf("bench result %s: %v", lines[len(lines)-1], err)
	}
	cmd := exec.Command(kmbdtest.Binary(t), args...)
	cmd.Env = append(os.Environ(), "KMB_TOKEN=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Fatalf("bench without a token: %v\n%s", err, out)
	}
	if got := n.Metric(t, `kmb_auth_failures_total{node_id="1",reason="missing_credentials"}`); got == "0" {
		t.Error("the tokenless run was not refused by the node")
	}
}

// Both HTTP servers bound every client: header, read, write and idle
// timeouts and a header size limit; the API's write timeout outlasts
// api.write_timeout_ms.
func TestHTTPServersAreBounded(t *testing.T) {
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.API.Listen, cfg.Telemetry.Listen = "127.0.0.1:0", "127.0.0.1:0"
	s, err := startServer(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Stopped once recovered, as kmbd stops: a Stop during the
		// node's recovery races in store/node.
		kmbdtest.WaitFor(t, "the node ready", 20*time.Second, func() bool { return s.node.Ready() == nil })
		s.drain(context.Background())
		s.stopNode()
		s.flush(context.Background())
	}()
	for name, srv := range map[string]*http.Server{"api": s.apiSrv, "telemetry": s.telSrv} {
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
			t.Errorf("%s server unbounded: %+v", name, srv)
		}
	}
	if min := time.Duration(cfg.API.WriteTimeoutMillis) * time.Millisecond; s.apiSrv.WriteTimeout <= min {
		t.Errorf("API write timeout %v does not outlast api.write_timeout_ms %v", s.apiSrv.WriteTimeout, min)
	}
}

// SIGHUP's reload on the leader commits a token_reload op; on a follower
// it only reloads (and logs), and every node reloads its own file.
func TestReloadRecordsOnTheLeaderOnly(t *testing.T) {
	files := map[string]bool{}
	apps := testCluster(t, func(c *Config) {
		c.Auth.TokensFile = tokensFile(t, auth.Block("a", secretHash("a"), []string{"*"}, []string{"read"}))
		files[c.Auth.TokensFile] = true
	})
	leader, follower := apps[0], apps[1]
	for _, a := range apps {
		if err := os.WriteFile(a.cfg.Auth.TokensFile, []byte(auth.Block("b", secretHash("b"), []string{"*"}, []string{"read"})), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := leader.node.Status().CommitNumber
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	(&server{app: follower}).reload(logger)
	if follower.sec.tokens.Authenticate("b") == nil {
		t.Fatal("the follower did not reload its file")
	}
	if !strings.Contains(logs.String(), "tokens file reloaded") || strings.Contains(logs.String(), "token_reload") {
		t.Errorf("follower's reload log: %s", logs.String())
	}
	if got := leader.node.Status().CommitNumber; got != before {
		t.Fatalf("a follower's reload committed: %d -> %d", before, got)
	}
	(&server{app: leader}).reload(logger)
	kmbdtest.WaitFor(t, "the token_reload op", 10*time.Second, func() bool { return leader.node.Status().CommitNumber == before+1 })
	if apps[2].sec.tokens.Authenticate("b") != nil {
		t.Error("node 3 reloaded without its own SIGHUP")
	}
	if len(files) != 3 {
		t.Errorf("%d tokens files for 3 nodes", len(files))
	}
}
