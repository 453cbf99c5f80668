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

// builds holds one kmbd build per set of build tags, each made once.
var builds struct {
	mu     sync.Mutex
	dir    string // removed by Main
	byTags map[string]*kmbdBuild
}

type kmbdBuild struct {
	once sync.Once
	path string
	err  error
}

// Binary returns kmbd built for this test binary. It is built once, from
// the module root so that it does not matter which package's tests ask, and
// with the race detector when the tests run with it.
func Binary(t testing.TB) string {
	t.Helper()
	return BinaryWithTags(t, "")
}

// BinaryWithTags is Binary built with -tags tags (for example kmb_canary,
// the planted bug the simulator must catch), once per distinct tags.
func BinaryWithTags(t testing.TB, tags string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.byTags == nil {
		builds.byTags = map[string]*kmbdBuild{}
	}
	b := builds.byTags[tags]
	if b == nil {
		b = &kmbdBuild{}
		builds.byTags[tags] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.path, b.err = buildKmbd(tags) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func buildKmbd(tags string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	builds.mu.Lock()
	if builds.dir == "" {
		builds.dir, err = os.MkdirTemp("", "kmbdtest-")
	}
	dir := builds.dir
	builds.mu.Unlock()
	if err != nil {
		return "", err
	}
	name := "kmbd"
	args := []string{"build"}
	if tags != "" {
		name += "-" + strings.NewReplacer(",", "-", " ", "-").Replace(tags)
		args = append(args, "-tags", tags)
	}
	path := filepath.Join(dir, name)
	args = append(args, "-o", path)
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/kmbd")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build kmbd (tags %q) in %s: %v\n%s", tags, root, err, out)
	}
	return path, nil
}

// Main runs the tests and then removes the kmbd builds, which outlive any
// one test. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
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
