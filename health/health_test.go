package health

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func probe(t *testing.T, mux *http.ServeMux, path string) (int, probeBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body probeBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", path, rec.Body.String(), err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", path, ct)
	}
	return rec.Code, body
}

func TestProbes(t *testing.T) {
	recovering := errors.New("recovering: replaying log")
	wedged := errors.New("event loop stalled for 12s")
	tests := []struct {
		name       string
		live, rdy  error
		shutdown   bool
		wantLive   int
		wantReady  int
		wantReason string
	}{
		{name: "healthy", wantLive: 200, wantReady: 200},
		{name: "recovering", rdy: recovering, wantLive: 200, wantReady: 503, wantReason: recovering.Error()},
		{name: "wedged", live: wedged, wantLive: 503, wantReady: 503, wantReason: wedged.Error()},
		{name: "shutting down", shutdown: true, wantLive: 503, wantReady: 503, wantReason: "shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New()
			c.AddLiveness("loop", func() error { return tt.live })
			c.AddReadiness("store", func() error { return tt.rdy })
			if tt.shutdown {
				c.BeginShutdown()
			}
			mux := http.NewServeMux()
			c.Mount(mux)
			code, body := probe(t, mux, "/health/live")
			if code != tt.wantLive {
				t.Errorf("live = %d, want %d", code, tt.wantLive)
			}
			code, body = probe(t, mux, "/health/ready")
			if code != tt.wantReady {
				t.Errorf("ready = %d, want %d", code, tt.wantReady)
			}
			if body.Reason != tt.wantReason {
				t.Errorf("ready reason = %q, want %q", body.Reason, tt.wantReason)
			}
			if (code == 200) != (body.Status == "ok") {
				t.Errorf("status field %q does not match code %d", body.Status, code)
			}
		})
	}
}

func TestReasonIsFirstFailingCheckByName(t *testing.T) {
	c := New()
	c.AddReadiness("b-catchup", func() error { return errors.New("catching up") })
	c.AddReadiness("a-view", func() error { return errors.New("view change") })
	for i := 0; i < 10; i++ {
		if err := c.Ready(); err == nil || err.Error() != "view change" {
			t.Fatalf("Ready() = %v, want the check named first", err)
		}
	}
	c.AddReadiness("a-view", func() error { return nil }) // replaced
	if err := c.Ready(); err == nil || err.Error() != "catching up" {
		t.Fatalf("after replacing, Ready() = %v", err)
	}
}
