package profiling

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// isProfileProto reports whether b is a gzipped protobuf, which is what
// `go tool pprof` expects from every binary profile endpoint.
func isProfileProto(t *testing.T, b []byte) bool {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return false
	}
	raw, err := io.ReadAll(zr)
	return err == nil && len(raw) > 0
}

func TestEndpoints(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux, Config{Enabled: true, MaxSeconds: 5})

	if rec := get(t, mux, "/debug/pprof/"); rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Fatalf("index: %d %q", rec.Code, rec.Body.String())
	}
	for _, name := range []string{"heap", "goroutine", "allocs", "block", "mutex", "threadcreate"} {
		rec := get(t, mux, "/debug/pprof/"+name)
		if rec.Code != 200 || !isProfileProto(t, rec.Body.Bytes()) {
			t.Errorf("%s: code %d, not a gzipped profile", name, rec.Code)
		}
	}
	if rec := get(t, mux, "/debug/pprof/goroutine?debug=2"); rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine ") {
		t.Errorf("goroutine?debug=2: %d", rec.Code)
	}
	if rec := get(t, mux, "/debug/pprof/profile?seconds=0.2"); rec.Code != 200 || !isProfileProto(t, rec.Body.Bytes()) {
		t.Errorf("cpu profile: code %d", rec.Code)
	}
	if rec := get(t, mux, "/debug/pprof/trace?seconds=0.1"); rec.Code != 200 || rec.Body.Len() == 0 {
		t.Errorf("trace: code %d", rec.Code)
	}
	if rec := get(t, mux, "/debug/pprof/cmdline"); rec.Code != 200 {
		t.Errorf("cmdline: %d", rec.Code)
	}
}

func TestBadRequests(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux, Config{Enabled: true, MaxSeconds: 5})
	for path, want := range map[string]int{
		"/debug/pprof/nosuch":             404,
		"/debug/pprof/profile?seconds=x":  400,
		"/debug/pprof/profile?seconds=-1": 400,
		"/debug/pprof/profile?seconds=99": 400,
		"/debug/pprof/trace?seconds=99":   400,
	} {
		if rec := get(t, mux, path); rec.Code != want {
			t.Errorf("%s = %d, want %d", path, rec.Code, want)
		}
	}
}

func TestDisabledMountsNothing(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux, Config{})
	if rec := get(t, mux, "/debug/pprof/heap"); rec.Code != 404 {
		t.Fatalf("disabled pprof answered %d", rec.Code)
	}
}

// kmbd never exposes profiles through the process-wide default mux.
func TestDefaultServeMuxUntouched(t *testing.T) {
	Mount(http.NewServeMux(), Config{Enabled: true})
	_, pattern := http.DefaultServeMux.Handler(httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
	if pattern != "" {
		t.Fatalf("http.DefaultServeMux serves /debug/pprof/ (pattern %q)", pattern)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{BlockProfileRate: -1}, "telemetry.block_profile_rate"},
		{Config{MutexProfileFraction: -2}, "telemetry.mutex_profile_fraction"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want mention of %q", tc.cfg, err, tc.want)
		}
	}
}

// With LoopbackOnly, a client from elsewhere gets 403 with a JSON reason;
// a loopback client gets the profile.
func TestLoopbackOnly(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux, Config{Enabled: true, MaxSeconds: 5, LoopbackOnly: true})
	for addr, want := range map[string]int{"127.0.0.1:5000": 200, "[::1]:5000": 200, "[::ffff:127.0.0.1]:5000": 200, "192.0.2.7:5000": 403, "[2001:db8::1]:5000": 403, "garbage": 403} {
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=0.05"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.RemoteAddr = addr
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != want {
				t.Errorf("%s from %s: %d, want %d", path, addr, rec.Code, want)
			}
			if want == 403 && (rec.Header().Get("Content-Type") != "application/json" || !strings.Contains(rec.Body.String(), `"error":"profiles are served to loopback clients only`)) {
				t.Errorf("%s from %s: %q", path, addr, rec.Body.String())
			}
		}
	}
}
