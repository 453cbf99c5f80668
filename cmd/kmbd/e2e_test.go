package main

// End-to-end tests: the real kmbd binary, started as a process on
// 127.0.0.1 with kernel-chosen ports, driven over HTTP and signals.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

// TestMain removes the kmbd build shared by the end-to-end tests.
func TestMain(m *testing.M) { kmbdtest.Main(m) }

// debugLog is the environment of every node these tests start: at debug,
// the log-shape checks cover every level and a failure's log says the most.
var debugLog = []string{"KMB_LOG=kmb=debug"}

func TestE2EWriteReadScrapeProbe(t *testing.T) {
	p := kmbdtest.StartNode(t, t.TempDir(), debugLog)

	for i := 0; i < 10; i++ {
		body := fmt.Sprintf(`{"entries":[{"key":"user-%d","value":{"n":%d}},{"key":"last","value":%d}]}`, i, i, i)
		if code, m := kmbdtest.JSONDo(t, "POST", p.API+"/v1/tenants/acme/entries", body); code != 200 || m["last_position"] != float64(2*i+2) {
			t.Fatalf("write %d: %d %v", i, code, m)
		}
	}
	if code, m := kmbdtest.JSONDo(t, "GET", p.API+"/v1/tenants/acme/keys/last", ""); code != 200 || m["value"] != 9.0 || m["position"] != 20.0 {
		t.Fatalf("read key: %d %v", code, m)
	}
	code, m := kmbdtest.JSONDo(t, "GET", p.API+"/v1/tenants/acme/entries?from=19&limit=5", "")
	if code != 200 || len(m["entries"].([]any)) != 2 || m["next"] != 21.0 {
		t.Fatalf("read entries: %d %v", code, m)
	}

	if code, m := kmbdtest.JSONDo(t, "GET", p.Tel+"/health/live", ""); code != 200 || m["status"] != "ok" {
		t.Fatalf("live: %d %v", code, m)
	}
	s := p.Status(t)
	for k, v := range map[string]any{"node_id": 1.0, "status": "normal", "view": 0.0, "commit_number": 10.0, "op_number": 10.0, "is_leader": true, "cluster_size": 1.0, "healthy_replicas": 1.0} {
		if s[k] != v {
			t.Errorf("/status %s = %v, want %v", k, s[k], v)
		}
	}
	if got := p.Metric(t, `kmb_log_entries_total{node_id="1"}`); got != "20" {
		t.Errorf("kmb_log_entries_total = %s", got)
	}
	if got := p.Metric(t, `kmb_tenant_log_entries_total{node_id="1",tenant_id="acme"}`); got != "20" {
		t.Errorf("kmb_tenant_log_entries_total{acme} = %s", got)
	}
	if got := p.Metric(t, `kmb_requests_total{method="append",node_id="1",status="ok"}`); got != "10" {
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
		code, m := kmbdtest.JSONDo(t, "POST", p.API+c.path, c.body)
		if code != c.want || m["error"] == "" || m["code"] == "" {
			t.Errorf("POST %s (%d bytes): %d %v, want %d with a JSON reason", c.path, len(c.body), code, m, c.want)
		}
	}
	if s := p.Status(t); s["op_number"] != 10.0 {
		t.Errorf("rejected requests appended: op_number %v", s["op_number"])
	}
	if got := p.Metric(t, `kmb_log_entries_total{node_id="1"}`); got != "20" {
		t.Errorf("rejected requests appended: kmb_log_entries_total = %s", got)
	}

	// Every log line has the documented shape.
	for _, l := range p.Output.LogLines(t) {
		if len(l) != 5 || l["timestamp"] == nil || l["level"] == nil || l["target"] == nil || l["message"] == nil || l["fields"] == nil {
			t.Errorf("log line shape: %v", l)
		}
		if ts, _ := l["timestamp"].(string); len(ts) != len("2024-01-15T10:30:00.000Z") || !strings.HasSuffix(ts, "Z") {
			t.Errorf("timestamp %q is not RFC 3339 UTC with milliseconds", ts)
		}
	}
	if !hasLog(p.Output.LogLines(t), "kmb_consensus", "Became leader", "node_id", "view", "commit_index") {
		t.Error(`no "Became leader" line with node_id, view, commit_index`)
	}
	p.Stop(t)
	if !hasLog(p.Output.LogLines(t), "kmb", "kmbd stopped") {
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
	p := kmbdtest.StartNode(t, dir, debugLog)
	for i := 0; i < 25; i++ {
		tenant := []string{"acme", "globex"}[i%2]
		body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":"v%d"}]}`, i, i)
		if code, _ := kmbdtest.HTTPDo(t, "POST", p.API+"/v1/tenants/"+tenant+"/entries", body); code != 200 {
			t.Fatalf("write %d: %d", i, code)
		}
	}
	_, before := kmbdtest.HTTPDo(t, "GET", p.API+"/v1/tenants/globex/entries?limit=100", "")
	p.Stop(t)

	q := kmbdtest.StartNode(t, dir, debugLog)
	_, after := kmbdtest.HTTPDo(t, "GET", q.API+"/v1/tenants/globex/entries?limit=100", "")
	if !bytes.Equal(before, after) {
		t.Fatalf("log differs after restart:\nbefore %s\nafter  %s", before, after)
	}
	if s := q.Status(t); s["commit_number"] != 25.0 || s["op_number"] != 25.0 {
		t.Fatalf("status after restart: %v", s)
	}
	if code, m := kmbdtest.JSONDo(t, "POST", q.API+"/v1/tenants/acme/entries", `{"entries":[{"key":"x","value":1}]}`); code != 200 || m["first_position"] != 26.0 {
		t.Fatalf("write after restart: %d %v", code, m)
	}
	q.Stop(t)
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
			p := kmbdtest.StartNode(t, dir, debugLog)
			for i := 1; i <= 5; i++ {
				body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":%d}]}`, i, i)
				if code, _ := kmbdtest.HTTPDo(t, "POST", p.API+"/v1/tenants/acme/entries", body); code != 200 {
					t.Fatalf("write %d: %d", i, code)
				}
			}
			p.Stop(t)
			segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
			if len(segs) == 0 {
				t.Fatal("no segment files")
			}
			tc.corrupt(t, segs[len(segs)-1])

			q := kmbdtest.StartNode(t, dir, debugLog)
			wantOps := 5.0
			if tc.name != "garbage appended" {
				wantOps = 4 // the damaged fifth record is cut
			}
			if s := q.Status(t); s["op_number"] != wantOps || s["commit_number"] != wantOps {
				t.Fatalf("after recovery: %v, want op %v", s, wantOps)
			}
			code, m := kmbdtest.JSONDo(t, "GET", q.API+"/v1/tenants/acme/entries?limit=100", "")
			if code != 200 || len(m["entries"].([]any)) != int(wantOps) {
				t.Fatalf("entries after recovery: %d %v", code, m)
			}
			if code, _ := kmbdtest.HTTPDo(t, "GET", q.API+"/v1/tenants/acme/keys/k4", ""); code != 200 {
				t.Fatalf("whole record k4 not served: %d", code)
			}
			truncated := false
			for _, l := range q.Output.LogLines(t) {
				if l["level"] == "WARN" && strings.Contains(fmt.Sprint(l["message"]), "truncat") {
					truncated = true
				}
			}
			if !truncated {
				t.Fatalf("no WARN line about the truncation:\n%s", q.Output.String())
			}
			// The log continues after the cut.
			if code, m := kmbdtest.JSONDo(t, "POST", q.API+"/v1/tenants/acme/entries", `{"entries":[{"key":"k6","value":6}]}`); code != 200 || m["commit_number"] != wantOps+1 {
				t.Fatalf("write after recovery: %d %v", code, m)
			}
			q.Stop(t)
		})
	}
}

// An invalid configuration stops the process before it binds anything, with
// one line on stderr and a non-zero exit.
func TestE2EInvalidConfigFailsFast(t *testing.T) {
	addr := kmbdtest.FreeAddrs(t, 1)[0]
	cmd := exec.Command(kmbdtest.Binary(t), "--telemetry-listen", addr, "--tracing-sample-ratio", "7", "--data-dir", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("exit code %d (%v), want 2", cmd.ProcessState.ExitCode(), err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "telemetry.tracing_sample_ratio = 7: accepted 0..1") {
		t.Fatalf("stderr = %q", stderr.String())
	}
	// Nothing was bound: the port is still free.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port %s was taken: %v", addr, err)
	}
	ln.Close()
}

// `go tool pprof` can profile a running node through /debug/pprof.
func TestE2EPprof(t *testing.T) {
	p := kmbdtest.StartNode(t, t.TempDir(), debugLog)
	out, err := exec.Command("go", "tool", "pprof", "-top", "-seconds", "1", p.Tel+"/debug/pprof/profile").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: cpu") {
		t.Fatalf("go tool pprof (cpu): %v\n%s", err, out)
	}
	out, err = exec.Command("go", "tool", "pprof", "-top", p.Tel+"/debug/pprof/heap").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: inuse_space") {
		t.Fatalf("go tool pprof (heap): %v\n%s", err, out)
	}
	p.Stop(t)
}
