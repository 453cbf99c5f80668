package client_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/kmb-db/kmb/client"
)

// Reconfigure carries no idempotency ids, so it is sent again only when the
// server cannot have acted on it; ClusterConfig returns the node's document.
func TestReconfigure(t *testing.T) {
	const doc = `{"epoch":2,"op":9,"replicas":[{"id":1,"addr":"127.0.0.1:7101"}]}`
	tests := []struct {
		name         string
		answer       func(n int, w http.ResponseWriter)
		wantAttempts int
		wantUnknown  bool // the call fails, its outcome unknown
	}{
		{"accepted", func(n int, w http.ResponseWriter) { w.Write([]byte(doc)) }, 1, false},
		{"no leader, then accepted", func(n int, w http.ResponseWriter) {
			if n == 1 {
				apiError(w, 503, "no_leader", "no leader known")
				return
			}
			w.Write([]byte(doc))
		}, 2, false},
		{"timeout: not sent again", func(n int, w http.ResponseWriter) { apiError(w, 503, "timeout", "not committed in time") }, 1, true},
		{"connection cut: not sent again", func(n int, w http.ResponseWriter) { cut(w) }, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leader := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) { tt.answer(n, w) })
			follower := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) { redirectTo(w, r, leader.URL) })
			c := newClient(t, []string{follower.addr()}, fast(client.Options{Token: "t0k"}))
			got, err := c.Reconfigure(t.Context(), []client.Replica{{ID: 1, Addr: "127.0.0.1:7101"}})
			reqs := leader.requests()
			if len(reqs) != tt.wantAttempts || reqs[0].Body != `{"replicas":[{"id":1,"addr":"127.0.0.1:7101"}]}` || reqs[0].Auth != "Bearer t0k" || reqs[0].ClientID != "" {
				t.Fatalf("the leader got %+v, want %d requests with the body and the token", reqs, tt.wantAttempts)
			}
			if tt.wantUnknown {
				if !errors.Is(err, client.ErrOutcomeUnknown) {
					t.Fatalf("error %v: want an unknown outcome", err)
				}
				return
			}
			if err != nil || string(got) != doc {
				t.Fatalf("%s, %v", got, err)
			}
		})
	}

	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) { w.Write([]byte(doc)) })
	c := newClient(t, []string{node.addr()}, client.Options{})
	if got, err := c.ClusterConfig(t.Context()); err != nil || string(got) != doc || node.requests()[0].Path != "/v1/cluster/config" {
		t.Fatalf("ClusterConfig: %s, %v", got, err)
	}
}
