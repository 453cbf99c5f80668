package kmbdtest

import (
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
	"testing"
	"time"
)

var build struct {
	once sync.Once
	dir  string // removed by Main
	path string
	err  error
}

// Binary returns kmbd built for this test binary. It is built once, from
// the module root so that it does not matter which package's tests ask, and
// with the race detector when the tests run with it.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			build.err = fmt.Errorf("go env GOMOD: %v", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(gomod)))
		if build.dir, build.err = os.MkdirTemp("", "kmbdtest-"); build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "kmbd")
		args := []string{"build", "-o", build.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/kmbd")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build kmbd in %s: %v\n%s", root, err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// Main runs the tests and then removes the kmbd build, which outlives any
// one test. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// WaitFor polls cond until it holds, failing the test with what once
// timeout has passed. The short interval keeps passing tests fast; the
// timeouts are generous for the race detector on a loaded machine.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// client bounds every request, so a hung process fails a check instead of
// running into go test's timeout.
var client = &http.Client{Timeout: 10 * time.Second}

// HTTPDo sends a request and returns the status and body; a transport error
// is status 0, which polls treat as "not yet".
func HTTPDo(t testing.TB, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// JSONDo is HTTPDo for an endpoint that answers a JSON object; any other
// answer fails the test.
func JSONDo(t testing.TB, method, url, body string) (int, map[string]any) {
	t.Helper()
	code, b := HTTPDo(t, method, url, body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, url, code, b)
	}
	return code, m
}

// FreeAddrs returns n distinct loopback addresses that were free a moment
// ago, for listeners whose address must be known before the process starts
// (replication peers, Prometheus, Jaeger). All n are held open together so
// the kernel cannot hand out one port twice.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// RequireTool finds an external tool through envVar or PATH. A missing tool
// skips the test, unless KMB_REQUIRE_TOOLS=1 (scripts/test.sh sets it): then
// the test fails, so a full run cannot pass without it.
func RequireTool(t testing.TB, envVar, name string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", envVar, p, err)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("KMB_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s not found (set %s or install it; scripts/test.sh does)", name, envVar)
	}
	t.Skipf("%s not found (set %s or install it; scripts/test.sh does)", name, envVar)
	return ""
}
