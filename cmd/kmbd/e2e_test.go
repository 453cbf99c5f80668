package main

// End-to-end tests: the real kmbd binary, started as a process on
// 127.0.0.1 with kernel-chosen ports, driven over HTTP and signals.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// kmbdBinary builds cmd/kmbd once per test run.
func kmbdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kmbd-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kmbd")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// syncBuffer collects a process's stderr while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines parses every JSON log line written so far.
func (b *syncBuffer) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

type proc struct {
	cmd       *exec.Cmd
	stderr    *syncBuffer
	api, tel  string // base URLs
	exited    chan struct{}
	exitState *os.ProcessState
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startKmbd starts kmbd on dataDir with ports chosen by the kernel, waits for
// it to report its addresses and become ready.
func startKmbd(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	p := launchKmbd(t, dataDir, extra...)
	waitFor(t, "readiness", 20*time.Second, func() bool {
		code, _ := httpDo(t, "GET", p.tel+"/health/ready", "")
		return code == 200
	})
	return p
}

// launchKmbd starts kmbd and waits until it reports its addresses.
func launchKmbd(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"--data-dir", dataDir, "--api-listen", "127.0.0.1:0", "--telemetry-listen", "127.0.0.1:0"}, extra...)
	p := &proc{cmd: exec.Command(kmbdBinary(t), args...), stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	p.cmd.Env = append(os.Environ(), "KMB_LOG=kmb=debug")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.exitState = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("kmbd stderr:\n%s", p.stderr.String())
		}
	})
	waitFor(t, "the kmbd starting line", 20*time.Second, func() bool {
		for _, l := range p.stderr.logLines(t) {
			if l["message"] == "kmbd starting" {
				f := l["fields"].(map[string]any)
				p.api, p.tel = "http://"+f["api_listen"].(string), "http://"+f["telemetry_listen"].(string)
				return true
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("kmbd exited early: %v\n%s", p.exitState, p.stderr.String())
		default:
		}
		return false
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("kmbd did not exit within 30s of SIGTERM")
	}
	if code := p.exitState.ExitCode(); code != 0 {
		t.Fatalf("kmbd exit code %d after SIGTERM\n%s", code, p.stderr.String())
	}
}

func httpDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func jsonDo(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	code, b := httpDo(t, method, url, body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, url, code, b)
	}
	return code, m
}

func (p *proc) status(t *testing.T) map[string]any {
	t.Helper()
	code, m := jsonDo(t, "GET", p.tel+"/status", "")
	if code != 200 {
		t.Fatalf("/status: %d", code)
	}
	return m
}

func (p *proc) metric(t *testing.T, series string) string {
	t.Helper()
	_, b := httpDo(t, "GET", p.tel+"/metrics", "")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	t.Fatalf("series %s not in /metrics", series)
	return ""
}

func TestE2EWriteReadScrapeProbe(t *testing.T) {
	p := startKmbd(t, t.TempDir())

	for i := 0; i < 10; i++ {
		body := fmt.Sprintf(`{"entries":[{"key":"user-%d","value":{"n":%d}},{"key":"last","value":%d}]}`, i, i, i)
		if code, m := jsonDo(t, "POST", p.api+"/v1/tenants/acme/entries", body); code != 200 || m["last_position"] != float64(2*i+2) {
			t.Fatalf("write %d: %d %v", i, code, m)
		}
	}
	if code, m := jsonDo(t, "GET", p.api+"/v1/tenants/acme/keys/last", ""); code != 200 || m["value"] != 9.0 || m["position"] != 20.0 {
		t.Fatalf("read key: %d %v", code, m)
	}
	code, m := jsonDo(t, "GET", p.api+"/v1/tenants/acme/entries?from=19&limit=5", "")
	if code != 200 || len(m["entries"].([]any)) != 2 || m["next"] != 21.0 {
		t.Fatalf("read entries: %d %v", code, m)
	}

	if code, m := jsonDo(t, "GET", p.tel+"/health/live", ""); code != 200 || m["status"] != "ok" {
		t.Fatalf("live: %d %v", code, m)
	}
	s := p.status(t)
	for k, v := range map[string]any{"node_id": 1.0, "status": "normal", "view": 0.0, "commit_number": 10.0, "op_number": 10.0, "is_leader": true, "cluster_size": 1.0, "healthy_replicas": 1.0} {
		if s[k] != v {
			t.Errorf("/status %s = %v, want %v", k, s[k], v)
		}
	}
	if got := p.metric(t, `kmb_log_entries_total{node_id="1"}`); got != "20" {
		t.Errorf("kmb_log_entries_total = %s", got)
	}
	if got := p.metric(t, `kmb_tenant_log_entries_total{node_id="1",tenant_id="acme"}`); got != "20" {
		t.Errorf("kmb_tenant_log_entries_total{acme} = %s", got)
	}
	if got := p.metric(t, `kmb_requests_total{method="append",node_id="1",status="ok"}`); got != "10" {
		t.Errorf("append ok = %s", got)
	}

	// Bad input: 4xx with a JSON reason, and nothing appended.
	big := `{"entries":[{"key":"k","value":"` + strings.Repeat("x", 5<<20) + `"}]}`
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/v1/tenants/acme/entries", `{"entries":[`, 400},
		{"/v1/tenants/Not_Valid/entries", `{"entries":[{"key":"k","value":1}]}`, 400},
		{"/v1/tenants/acme/entries", big, 413},
	} {
		code, m := jsonDo(t, "POST", p.api+c.path, c.body)
		if code != c.want || m["error"] == "" || m["code"] == "" {
			t.Errorf("POST %s (%d bytes): %d %v, want %d with a JSON reason", c.path, len(c.body), code, m, c.want)
		}
	}
	if s := p.status(t); s["op_number"] != 10.0 {
		t.Errorf("rejected requests appended: op_number %v", s["op_number"])
	}
	if got := p.metric(t, `kmb_log_entries_total{node_id="1"}`); got != "20" {
		t.Errorf("rejected requests appended: kmb_log_entries_total = %s", got)
	}

	// Every log line has the documented shape.
	for _, l := range p.stderr.logLines(t) {
		if len(l) != 5 || l["timestamp"] == nil || l["level"] == nil || l["target"] == nil || l["message"] == nil || l["fields"] == nil {
			t.Errorf("log line shape: %v", l)
		}
		if ts, _ := l["timestamp"].(string); len(ts) != len("2024-01-15T10:30:00.000Z") || !strings.HasSuffix(ts, "Z") {
			t.Errorf("timestamp %q is not RFC 3339 UTC with milliseconds", ts)
		}
	}
	if !hasLog(p.stderr.logLines(t), "kmb_consensus", "Became leader", "node_id", "view", "commit_index") {
		t.Error(`no "Became leader" line with node_id, view, commit_index`)
	}
	p.stop(t)
	if !hasLog(p.stderr.logLines(t), "kmb", "kmbd stopped") {
		t.Error("no clean stop logged")
	}
}

func hasLog(lines []map[string]any, target, message string, fields ...string) bool {
	for _, l := range lines {
		if l["target"] != target || l["message"] != message {
			continue
		}
		f := l["fields"].(map[string]any)
		ok := true
		for _, k := range fields {
			if _, present := f[k]; !present {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestE2ERestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	p := startKmbd(t, dir)
	for i := 0; i < 25; i++ {
		tenant := []string{"acme", "globex"}[i%2]
		body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":"v%d"}]}`, i, i)
		if code, _ := httpDo(t, "POST", p.api+"/v1/tenants/"+tenant+"/entries", body); code != 200 {
			t.Fatalf("write %d: %d", i, code)
		}
	}
	_, before := httpDo(t, "GET", p.api+"/v1/tenants/globex/entries?limit=100", "")
	p.stop(t)

	q := startKmbd(t, dir)
	_, after := httpDo(t, "GET", q.api+"/v1/tenants/globex/entries?limit=100", "")
	if !bytes.Equal(before, after) {
		t.Fatalf("log differs after restart:\nbefore %s\nafter  %s", before, after)
	}
	if s := q.status(t); s["commit_number"] != 25.0 || s["op_number"] != 25.0 {
		t.Fatalf("status after restart: %v", s)
	}
	if code, m := jsonDo(t, "POST", q.api+"/v1/tenants/acme/entries", `{"entries":[{"key":"x","value":1}]}`); code != 200 || m["first_position"] != 26.0 {
		t.Fatalf("write after restart: %d %v", code, m)
	}
	q.stop(t)
}

// A torn or corrupt tail is cut on restart; every whole record is still
// served and the corrupt one never is.
func TestE2ECorruptTailTruncated(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, seg string)
	}{
		{"garbage appended", func(t *testing.T, seg string) {
			f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte{0x30, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3}); err != nil {
				t.Fatal(err)
			}
		}},
		{"last record torn", func(t *testing.T, seg string) {
			st, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(seg, st.Size()-7); err != nil {
				t.Fatal(err)
			}
		}},
		{"last record bit flip", func(t *testing.T, seg string) {
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-3] ^= 0x40
			if err := os.WriteFile(seg, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := startKmbd(t, dir)
			for i := 1; i <= 5; i++ {
				body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":%d}]}`, i, i)
				if code, _ := httpDo(t, "POST", p.api+"/v1/tenants/acme/entries", body); code != 200 {
					t.Fatalf("write %d: %d", i, code)
				}
			}
			p.stop(t)
			segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
			if len(segs) == 0 {
				t.Fatal("no segment files")
			}
			tc.corrupt(t, segs[len(segs)-1])

			q := startKmbd(t, dir)
			wantOps := 5.0
			if tc.name != "garbage appended" {
				wantOps = 4 // the damaged fifth record is cut
			}
			if s := q.status(t); s["op_number"] != wantOps || s["commit_number"] != wantOps {
				t.Fatalf("after recovery: %v, want op %v", s, wantOps)
			}
			code, m := jsonDo(t, "GET", q.api+"/v1/tenants/acme/entries?limit=100", "")
			if code != 200 || len(m["entries"].([]any)) != int(wantOps) {
				t.Fatalf("entries after recovery: %d %v", code, m)
			}
			if code, _ := httpDo(t, "GET", q.api+"/v1/tenants/acme/keys/k4", ""); code != 200 {
				t.Fatalf("whole record k4 not served: %d", code)
			}
			truncated := false
			for _, l := range q.stderr.logLines(t) {
				if l["level"] == "WARN" && strings.Contains(fmt.Sprint(l["message"]), "truncat") {
					truncated = true
				}
			}
			if !truncated {
				t.Fatalf("no WARN line about the truncation:\n%s", q.stderr.String())
			}
			// The log continues after the cut.
			if code, m := jsonDo(t, "POST", q.api+"/v1/tenants/acme/entries", `{"entries":[{"key":"k6","value":6}]}`); code != 200 || m["commit_number"] != wantOps+1 {
				t.Fatalf("write after recovery: %d %v", code, m)
			}
			q.stop(t)
		})
	}
}

// An invalid configuration stops the process before it binds anything, with
// one line on stderr and a non-zero exit.
func TestE2EInvalidConfigFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(kmbdBinary(t), "--telemetry-listen", addr, "--tracing-sample-ratio", "7", "--data-dir", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("exit code %d (%v), want 2", cmd.ProcessState.ExitCode(), err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "telemetry.tracing_sample_ratio = 7: accepted 0..1") {
		t.Fatalf("stderr = %q", stderr.String())
	}
	// Nothing was bound: the port is still free.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port %s was taken: %v", addr, err)
	}
	ln.Close()
}

// `go tool pprof` can profile a running node through /debug/pprof.
func TestE2EPprof(t *testing.T) {
	p := startKmbd(t, t.TempDir())
	out, err := exec.Command("go", "tool", "pprof", "-top", "-seconds", "1", p.tel+"/debug/pprof/profile").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: cpu") {
		t.Fatalf("go tool pprof (cpu): %v\n%s", err, out)
	}
	out, err = exec.Command("go", "tool", "pprof", "-top", p.tel+"/debug/pprof/heap").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: inuse_space") {
		t.Fatalf("go tool pprof (heap): %v\n%s", err, out)
	}
	p.stop(t)
}
