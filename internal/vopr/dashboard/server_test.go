package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/vopr"
	"github.com/kmb-db/kmb/store/sim"
)

// source is a Source the test moves by hand.
type source struct {
	mu  sync.Mutex
	st  vopr.State
	upd chan struct{}
}

func newSource() *source {
	return &source{upd: make(chan struct{}), st: vopr.State{
		Version: 1, FirstSeed: 7, SeedsTotal: 10, SeedsDone: 3, Ticks: 300, Replicas: 3,
		Faults:   []sim.FaultCount{{Kind: "drop", Count: 5}, {Kind: "corrupt", Count: 1}},
		Failures: []vopr.Failure{{Seed: 8, Violation: "step 9: two primaries in view 2: 1 and 3", Replay: vopr.ReplayCommand(8, 300, 3)}},
		History:  []vopr.Sample{},
	}}
}

func (s *source) Snapshot() vopr.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (s *source) Updates() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upd
}

// advance does one change, as the runner does.
func (s *source) advance() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Version++
	s.st.SeedsDone++
	close(s.upd)
	s.upd = make(chan struct{})
}

func TestStateJSON(t *testing.T) {
	src := newSource()
	srv := httptest.NewServer(Handler(src, Options{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	// The names the page and scripts read.
	for _, k := range []string{"version", "first_seed", "seeds_total", "seeds_done", "seeds_failed", "finished", "seeds_per_second",
		"events_per_second", "events", "client_ops", "client_ops_checked", "faults", "current", "failures", "history"} {
		if _, ok := got[k]; !ok {
			t.Errorf("/api/state has no %q: %v", k, got)
		}
	}
	var st vopr.State
	b, _ := json.Marshal(got)
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.SeedsDone != 3 || st.Faults[1].Kind != "corrupt" || st.Failures[0].Replay != "kmbd vopr --seed 8 --ticks 300 --replicas 3 --trace" {
		t.Fatalf("state %+v", st)
	}
}

func TestPagesAndErrors(t *testing.T) {
	srv := httptest.NewServer(Handler(newSource(), Options{}))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		method, path string
		status       int
		ctype, code  string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", ""},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/assets/app.js", 200, "text/javascript; charset=utf-8", ""},
		{"GET", "/assets/style.css", 200, "text/css; charset=utf-8", ""},
		{"GET", "/assets/index.html", 301, "", ""},
		{"GET", "/assets/nope.js", 404, "application/json", "not_found"},
		{"GET", "/assets/", 404, "application/json", "not_found"},
		{"GET", "/nope", 404, "application/json", "not_found"},
		{"GET", "/api/state/x", 404, "application/json", "not_found"},
		{"POST", "/api/state", 405, "application/json", "method_not_allowed"},
		{"DELETE", "/", 405, "application/json", "method_not_allowed"},
		{"PUT", "/events", 405, "application/json", "method_not_allowed"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || (c.ctype != "" && resp.Header.Get("Content-Type") != c.ctype) {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.status, c.ctype)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s %s: no content security policy", c.method, c.path)
		}
		if c.code != "" {
			var e struct{ Error, Code string }
			if json.Unmarshal(body, &e) != nil || e.Code != c.code || e.Error == "" {
				t.Errorf("%s %s: body %q, want code %q", c.method, c.path, body, c.code)
			}
		}
		if c.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", c.method, c.path, resp.Header.Get("Allow"))
		}
	}
}

// The page loads nothing from elsewhere: every reference in the embedded
// files is to the dashboard itself.
func TestAssetsSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?(https?:)?//|@import|fetch\(\s*["'](https?:)?//|new EventSource\(\s*["'](https?:)?//`)
	as := loadAssets()
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		a, ok := as[name]
		if !ok {
			t.Fatalf("no embedded %s", name)
		}
		if m := external.Find(a.body); m != nil {
			t.Errorf("%s refers outside the dashboard: %q", name, m)
		}
	}
	// Every element the script writes to is on the page.
	ids := regexp.MustCompile(`\$\("([a-z-]+)"\)|text\("([a-z-]+)"`).FindAllSubmatch(as["app.js"].body, -1)
	if len(ids) < 10 {
		t.Fatalf("found %d element ids in app.js", len(ids))
	}
	for _, m := range ids {
		id := string(m[1]) + string(m[2])
		if !strings.Contains(string(as["index.html"].body), `id="`+id+`"`) {
			t.Errorf("app.js writes #%s, which index.html lacks", id)
		}
	}
}

// frames reads an event stream's frames (the blocks between blank lines).
func frames(t *testing.T, body io.Reader) <-chan string {
	out := make(chan string, 64)
	go func() {
		defer close(out)
		br := bufio.NewReader(body)
		var cur strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\n" {
				out <- cur.String()
				cur.Reset()
				continue
			}
			cur.WriteString(line)
		}
	}()
	return out
}

func next(t *testing.T, fr <-chan string, within time.Duration) string {
	t.Helper()
	select {
	case f, ok := <-fr:
		if !ok {
			t.Fatal("the stream ended")
		}
		return f
	case <-time.After(within):
		t.Fatalf("no frame within %v", within)
	}
	return ""
}

var frameRE = regexp.MustCompile(`^id: (\d+)\nevent: state\ndata: (\{.*\})\n$`)

func stateFrame(t *testing.T, f string) vopr.State {
	t.Helper()
	m := frameRE.FindStringSubmatch(f)
	if m == nil {
		t.Fatalf("not a state frame: %q", f)
	}
	var st vopr.State
	if err := json.Unmarshal([]byte(m[2]), &st); err != nil {
		t.Fatal(err)
	}
	if m[1] != strconv.FormatUint(st.Version, 10) {
		t.Fatalf("frame id %s, version %d", m[1], st.Version)
	}
	return st
}

// /events: the state at once, a frame per change, changes within one
// MinInterval coalesced into one frame, and keepalive comments (not
// repeated frames) while nothing changes.
func TestEventStream(t *testing.T) {
	src := newSource()
	srv := httptest.NewServer(Handler(src, Options{MinInterval: 200 * time.Millisecond, Keepalive: 400 * time.Millisecond}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", resp.Header)
	}
	fr := frames(t, resp.Body)
	if f := next(t, fr, 5*time.Second); f != "retry: 2000\n" {
		t.Fatalf("first frame %q", f)
	}
	if st := stateFrame(t, next(t, fr, 5*time.Second)); st.Version != 1 || st.SeedsDone != 3 || len(st.Failures) != 1 {
		t.Fatalf("first state %+v", st)
	}
	src.advance()
	if st := stateFrame(t, next(t, fr, 5*time.Second)); st.Version != 2 || st.SeedsDone != 4 {
		t.Fatalf("second state %+v", st)
	}
	// A burst of changes inside one interval: one frame with the last
	// (two, should this goroutine lose the processor mid-burst for longer
	// than the interval).
	for range 8 {
		src.advance()
	}
	sent := 0
	for st := (vopr.State{}); st.Version != 10; sent++ {
		st = stateFrame(t, next(t, fr, 5*time.Second))
	}
	if sent > 2 {
		t.Fatalf("a burst of 8 changes took %d frames", sent)
	}
	// Nothing changes: a keepalive, not the same state again.
	if f := next(t, fr, 5*time.Second); f != ": keepalive\n" {
		t.Fatalf("idle stream sent %q", f)
	}
	src.advance()
	if st := stateFrame(t, next(t, fr, 5*time.Second)); st.Version != 11 {
		t.Fatalf("after idling: version %d", st.Version)
	}
}

// Serve stops on its context although an event stream is open, and the
// stream ends.
func TestServeShutdownEndsStreams(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, Handler(newSource(), Options{})) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fr := frames(t, resp.Body)
	next(t, fr, 5*time.Second) // retry
	next(t, fr, 5*time.Second) // the state
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of its context ending")
	}
	select {
	case _, ok := <-fr:
		if ok {
			// A frame may have been in flight; the stream must end next.
			if _, ok := <-fr; ok {
				t.Fatal("the stream goes on after shutdown")
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
	}
}
