package client_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kmb-db/kmb/client"
)

// seen is one request a fake node received.
type seen struct {
	Method, Path, RawQuery string
	ClientID, RequestID    string
	Auth                   string
	Body                   string
}

// fakeNode is an HTTP server whose answers a test scripts: reply is called
// with the number of the request (from 1) and writes the answer.
type fakeNode struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []seen
	reply func(n int, w http.ResponseWriter, r *http.Request)
}

func newFakeNode(t *testing.T, reply func(n int, w http.ResponseWriter, r *http.Request)) *fakeNode {
	t.Helper()
	f := &fakeNode{reply: reply}
	f.Server = httptest.NewServer(f)
	t.Cleanup(f.Close)
	return f
}

// newFakeTLSNode is a fakeNode served over TLS with cfg.
func newFakeTLSNode(t *testing.T, cfg *tls.Config, reply func(n int, w http.ResponseWriter, r *http.Request)) *fakeNode {
	t.Helper()
	f := &fakeNode{reply: reply}
	f.Server = httptest.NewUnstartedServer(f)
	f.Server.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what the tests are about
	f.Server.TLS = cfg
	f.Server.StartTLS()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, seen{
		Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
		ClientID: r.Header.Get("Kmb-Client-Id"), RequestID: r.Header.Get("Kmb-Request-Id"),
		Auth: r.Header.Get("Authorization"), Body: string(body),
	})
	n := len(f.reqs)
	f.mu.Unlock()
	f.reply(n, w, r)
}

// requests returns what the node received so far.
func (f *fakeNode) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// addr is the node's host:port.
func (f *fakeNode) addr() string { return f.Listener.Addr().String() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}

func appended(w http.ResponseWriter, first, last, commit uint64) {
	writeJSON(w, http.StatusOK, map[string]uint64{"first_position": first, "last_position": last, "commit_number": commit})
}

func redirectTo(w http.ResponseWriter, r *http.Request, target string) {
	w.Header().Set("Location", target+r.URL.RequestURI())
	apiError(w, http.StatusTemporaryRedirect, "not_leader", "not the leader")
}

// cut reads the request and closes the connection without answering: a
// failure after the request was sent.
func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fast are options that keep retry tests short.
func fast(o client.Options) client.Options {
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Millisecond
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	return o
}

func newClient(t *testing.T, addrs []string, o client.Options) *client.Client {
	t.Helper()
	c, err := client.New(addrs, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var oneEntry = []client.Entry{{Key: "k1", Value: json.RawMessage(`{"a":1}`)}}

// sameIDs checks that every request carried the same idempotency ids, and
// returns them.
func sameIDs(t *testing.T, reqs []seen) (clientID, requestID string) {
	t.Helper()
	if len(reqs) == 0 {
		t.Fatal("no request")
	}
	clientID, requestID = reqs[0].ClientID, reqs[0].RequestID
	if clientID == "" || requestID == "" {
		t.Fatalf("request without idempotency ids: %+v", reqs[0])
	}
	for i, r := range reqs {
		if r.ClientID != clientID || r.RequestID != requestID {
			t.Fatalf("request %d carried ids %s/%s, the first %s/%s", i+1, r.ClientID, r.RequestID, clientID, requestID)
		}
	}
	return clientID, requestID
}

// asError returns err as a *client.Error.
func asError(t *testing.T, err error) *client.Error {
	t.Helper()
	e, ok := err.(*client.Error)
	if !ok {
		t.Fatalf("error %v (%T) is not a *client.Error", err, err)
	}
	return e
}
