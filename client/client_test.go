package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmb-db/kmb/client"
)

// Redirects: the client follows a follower's 307 to the leader, keeps
// sending there, backs off in a redirect loop and gives up at
// RequestTimeout with the last answer's code.
func TestAppendRedirects(t *testing.T) {
	tests := []struct {
		name  string
		nodes map[string]string // node -> "leader", "to:<node>", or "nohost-once" (a 307 without a host, then the leader)
		addrs []string          // the nodes given to New, in order
		// A successful append: requests per node for the first append, and
		// the node that takes the second one at once.
		wantHits map[string]int
		wantNext string
		// Or the failure.
		wantErr bool
	}{
		{name: "leader first", nodes: map[string]string{"a": "leader"}, addrs: []string{"a"},
			wantHits: map[string]int{"a": 1}, wantNext: "a"},
		{name: "follower names the leader", nodes: map[string]string{"a": "to:b", "b": "leader"}, addrs: []string{"a", "b"},
			wantHits: map[string]int{"a": 1, "b": 1}, wantNext: "b"},
		{name: "two hops to a leader not in the list", nodes: map[string]string{"a": "to:b", "b": "to:c", "c": "leader"}, addrs: []string{"a"},
			wantHits: map[string]int{"a": 1, "b": 1, "c": 1}, wantNext: "c"},
		{name: "location without a host is retried", nodes: map[string]string{"a": "nohost-once"}, addrs: []string{"a"},
			wantHits: map[string]int{"a": 2}, wantNext: "a"},
		{name: "redirect loop", nodes: map[string]string{"a": "to:b", "b": "to:a"}, addrs: []string{"a", "b"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := map[string]*fakeNode{}
			urls := map[string]string{}
			var mu sync.Mutex
			for name, role := range tt.nodes {
				nodes[name] = newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
					switch {
					case role == "leader", role == "nohost-once" && n > 1:
						appended(w, 1, 1, 1)
					case role == "nohost-once":
						w.Header().Set("Location", r.URL.Path)
						apiError(w, http.StatusTemporaryRedirect, "not_leader", "not the leader")
					default:
						mu.Lock()
						to := urls[strings.TrimPrefix(role, "to:")]
						mu.Unlock()
						redirectTo(w, r, to)
					}
				})
				mu.Lock()
				urls[name] = nodes[name].URL
				mu.Unlock()
			}
			var addrs []string
			for _, a := range tt.addrs {
				addrs = append(addrs, nodes[a].addr())
			}
			opts := client.Options{MaxRedirects: 3, MinBackoff: 20 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
				RequestTimeout: 300 * time.Millisecond}
			if tt.wantErr {
				// After MaxRedirects the client backs off (1-2 s here), and
				// the deadline ends the call in that wait, far from any
				// request: one it cut in flight would rightly leave the
				// outcome unknown.
				opts.MinBackoff, opts.MaxBackoff, opts.RequestTimeout = 2*time.Second, 2*time.Second, 500*time.Millisecond
			}
			c := newClient(t, addrs, opts)
			hits := func() map[string]int {
				m := map[string]int{}
				for name, n := range nodes {
					if k := len(n.requests()); k > 0 {
						m[name] = k
					}
				}
				return m
			}

			res, err := c.Append(t.Context(), "acme", oneEntry)
			if tt.wantErr {
				e := asError(t, err)
				if e.Status != http.StatusTemporaryRedirect || e.Code != client.CodeNotLeader || !errors.Is(err, context.DeadlineExceeded) || e.OutcomeUnknown {
					t.Fatalf("error %+v (%v): want the last 307 not_leader, a deadline, and no unknown outcome", e, err)
				}
				total := 0
				for _, n := range hits() {
					total += n
				}
				// The first request and MaxRedirects redirects at once, then
				// the wait: a loop followed without one would send thousands.
				if total != 4 || e.Attempts != 4 {
					t.Fatalf("%d requests, Attempts %d: want 4 (the first and 3 redirects), then the backoff", total, e.Attempts)
				}
				var all []seen
				for _, n := range nodes {
					all = append(all, n.requests()...)
				}
				sameIDs(t, all)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, n := range tt.wantHits {
				want += n
			}
			if got := hits(); !mapsEqual(got, tt.wantHits) || res.Attempts != want {
				t.Fatalf("requests per node %v, Attempts %d; want %v, %d", got, res.Attempts, tt.wantHits, want)
			}
			var all []seen
			for _, n := range nodes {
				all = append(all, n.requests()...)
			}
			sameIDs(t, all)

			before := len(nodes[tt.wantNext].requests())
			res, err = c.Append(t.Context(), "acme", oneEntry)
			if err != nil || res.Attempts != 1 || len(nodes[tt.wantNext].requests()) != before+1 {
				t.Fatalf("second append: %+v, %v; want one request, to %s", res, err, tt.wantNext)
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Failures that may be transient are retried with the same ids until an
// answer settles the call; a 4xx is never retried; an append that gives up
// after an attempt of unknown outcome says so.
func TestAppendRetries(t *testing.T) {
	noLeader := func(w http.ResponseWriter) { apiError(w, 503, "no_leader", "no leader known") }
	tests := []struct {
		name string
		// answer writes the answer to request n (from 1).
		answer       func(n int, w http.ResponseWriter)
		wantAttempts int
		// The failure, when the call fails.
		wantStatus  int
		wantCode    string
		wantUnknown bool
		wantCtxErr  bool // still failing when the test cancels the call, after the third answer
	}{
		{name: "503 no_leader then 200", wantAttempts: 3, answer: func(n int, w http.ResponseWriter) {
			if n < 3 {
				noLeader(w)
				return
			}
			appended(w, 7, 7, 3)
		}},
		{name: "503 timeout (ambiguous) then 200", wantAttempts: 2, answer: func(n int, w http.ResponseWriter) {
			if n == 1 {
				apiError(w, 503, "timeout", "not committed within 10s")
				return
			}
			appended(w, 7, 7, 3)
		}},
		{name: "connection cut after the request then 200", wantAttempts: 2, answer: func(n int, w http.ResponseWriter) {
			if n == 1 {
				cut(w)
				return
			}
			appended(w, 7, 7, 3)
		}},
		{name: "502 from a proxy then 200", wantAttempts: 2, answer: func(n int, w http.ResponseWriter) {
			if n == 1 {
				http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
				return
			}
			appended(w, 7, 7, 3)
		}},
		{name: "leadership lost, then no leader until cancelled", wantStatus: 503, wantCode: "no_leader", wantUnknown: true, wantCtxErr: true,
			answer: func(n int, w http.ResponseWriter) {
				if n == 1 {
					apiError(w, 503, "leadership_lost", "the leader changed")
					return
				}
				noLeader(w)
			}},
		{name: "no leader until cancelled", wantStatus: 503, wantCode: "no_leader", wantCtxErr: true,
			answer: func(n int, w http.ResponseWriter) { noLeader(w) }},
		{name: "400 not retried", wantAttempts: 1, wantStatus: 400, wantCode: "malformed",
			answer: func(n int, w http.ResponseWriter) { apiError(w, 400, "malformed", "entries[0].key is required") }},
		{name: "413 not retried", wantAttempts: 1, wantStatus: 413, wantCode: "too_large",
			answer: func(n int, w http.ResponseWriter) { apiError(w, 413, "too_large", "over api.max_body_bytes") }},
		{name: "409 not retried", wantAttempts: 1, wantStatus: 409, wantCode: "stale_request",
			answer: func(n int, w http.ResponseWriter) { apiError(w, 409, "stale_request", "older than the latest") }},
		{name: "401 not retried", wantAttempts: 1, wantStatus: 401, wantCode: "unauthenticated",
			answer: func(n int, w http.ResponseWriter) { apiError(w, 401, "unauthenticated", "no token") }},
		{name: "404 not retried", wantAttempts: 1, wantStatus: 404, wantCode: "not_found",
			answer: func(n int, w http.ResponseWriter) { apiError(w, 404, "not_found", "no route") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) { tt.answer(n, w) })
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var answers atomic.Int64
			c := newClient(t, []string{node.addr()}, fast(client.Options{Transport: onBodyClose{http.DefaultTransport, func() {
				if answers.Add(1) == 3 {
					cancel()
				}
			}}}))
			res, err := c.Append(ctx, "acme", oneEntry)
			reqs := node.requests()
			sameIDs(t, reqs)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if res != (client.AppendResult{FirstPosition: 7, LastPosition: 7, CommitNumber: 3, Attempts: tt.wantAttempts}) || len(reqs) != tt.wantAttempts {
					t.Fatalf("result %+v after %d requests; want %d attempts", res, len(reqs), tt.wantAttempts)
				}
				return
			}
			e := asError(t, err)
			if e.Status != tt.wantStatus || e.Code != tt.wantCode || e.OutcomeUnknown != tt.wantUnknown ||
				errors.Is(err, client.ErrOutcomeUnknown) != tt.wantUnknown || errors.Is(err, context.Canceled) != tt.wantCtxErr {
				t.Fatalf("error %+v (%v): want status %d, code %s, unknown outcome %v, cancelled %v", e, err, tt.wantStatus, tt.wantCode, tt.wantUnknown, tt.wantCtxErr)
			}
			if tt.wantCtxErr {
				tt.wantAttempts = 3
			}
			if e.Attempts != len(reqs) || len(reqs) != tt.wantAttempts {
				t.Fatalf("Attempts %d, %d requests; want %d", e.Attempts, len(reqs), tt.wantAttempts)
			}
			if e.Message == "" || e.Op != "append" || e.Method != "POST" || !strings.HasSuffix(e.URL, "/v1/tenants/acme/entries") {
				t.Fatalf("error %+v: want the server's message, the op and the URL", e)
			}
			if got := errors.Is(err, client.ErrNotFound); got != (tt.wantCode == "not_found") {
				t.Fatalf("errors.Is(ErrNotFound) = %v for code %s", got, tt.wantCode)
			}
		})
	}
}

// Each concurrent append has its own client id, and the request ids of one
// client id increase with one request in flight at a time, as the server's
// client table requires.
func TestAppendSessions(t *testing.T) {
	var mu sync.Mutex
	inFlight := map[string]bool{}
	overlap := false
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Kmb-Client-Id")
		mu.Lock()
		overlap = overlap || inFlight[id]
		inFlight[id] = true
		mu.Unlock()
		time.Sleep(time.Millisecond) // hold the request so that others overlap it
		mu.Lock()
		inFlight[id] = false
		mu.Unlock()
		appended(w, uint64(n), uint64(n), uint64(n))
	})
	c := newClient(t, []string{node.addr()}, client.Options{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := c.Append(t.Context(), "acme", oneEntry); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if overlap {
		t.Fatal("two requests of one client id were in flight at once")
	}
	last := map[string]uint64{}
	for _, r := range node.requests() {
		id, err := strconv.ParseUint(r.RequestID, 10, 64)
		if err != nil || r.ClientID == "" {
			t.Fatalf("request ids %q/%q", r.ClientID, r.RequestID)
		}
		if id != last[r.ClientID]+1 {
			t.Fatalf("client %s sent request %d after %d", r.ClientID, id, last[r.ClientID])
		}
		last[r.ClientID] = id
	}
	if len(last) < 2 || len(last) > 8 {
		t.Fatalf("%d client ids for 8 concurrent writers", len(last))
	}
}

// An address that cannot be reached is left for the next, which then
// takes every request.
func TestUnreachableAddressSkipped(t *testing.T) {
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) { appended(w, 1, 1, 1) })
	c := newClient(t, []string{closedAddr(t), node.addr()}, fast(client.Options{}))
	res, err := c.Append(t.Context(), "acme", oneEntry)
	if err != nil || res.Attempts != 2 {
		t.Fatalf("%+v, %v: want success at the second attempt", res, err)
	}
	if _, err := c.Get(t.Context(), "acme", "k1"); err != nil {
		t.Fatal(err)
	}
	if n := len(node.requests()); n != 2 {
		t.Fatalf("the reachable node got %d requests, want 2", n)
	}
	// A refused connection was never sent: its outcome is known.
	c = newClient(t, []string{closedAddr(t)}, fast(client.Options{RequestTimeout: 50 * time.Millisecond}))
	_, err = c.Append(t.Context(), "acme", oneEntry)
	if e := asError(t, err); e.Status != 0 || e.OutcomeUnknown || !errors.Is(err, context.DeadlineExceeded) || e.Attempts < 2 {
		t.Fatalf("error %+v (%v): want refused connections retried until the deadline, outcome known", e, err)
	}
}

// Cancelling the context ends a call at once, during a request or a
// backoff; an append cancelled in flight may have been applied.
func TestContextCancellation(t *testing.T) {
	arrived := make(chan struct{}, 16)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hang := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	noLeader := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		apiError(w, 503, "no_leader", "no leader known")
	})
	// bodyClosed learns when the client has read an answer: cancelling
	// then finds it in its backoff.
	bodyClosed := make(chan struct{}, 16)
	tests := []struct {
		name        string
		node        *fakeNode
		opts        client.Options
		call        func(ctx context.Context, c *client.Client) error
		wait        chan struct{} // cancel once this receives
		wantUnknown bool
	}{
		{"append in flight", hang, client.Options{}, func(ctx context.Context, c *client.Client) error {
			_, err := c.Append(ctx, "acme", oneEntry)
			return err
		}, arrived, true},
		{"append in backoff", noLeader, client.Options{MinBackoff: time.Hour, MaxBackoff: time.Hour, Transport: onBodyClose{http.DefaultTransport, func() { bodyClosed <- struct{}{} }}},
			func(ctx context.Context, c *client.Client) error {
				_, err := c.Append(ctx, "acme", oneEntry)
				return err
			}, bodyClosed, false},
		{"get in flight", hang, client.Options{}, func(ctx context.Context, c *client.Client) error {
			_, err := c.Get(ctx, "acme", "k1")
			return err
		}, arrived, false},
		{"read in flight", hang, client.Options{}, func(ctx context.Context, c *client.Client) error {
			for _, err := range c.Read(ctx, "acme", 1) {
				return err
			}
			return nil
		}, arrived, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, []string{tt.node.addr()}, tt.opts)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- tt.call(ctx, c) }()
			<-tt.wait
			cancel()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the call did not end after its context was cancelled")
			}
			for len(arrived) > 0 {
				<-arrived
			}
			e := asError(t, err)
			if !errors.Is(err, context.Canceled) || e.OutcomeUnknown != tt.wantUnknown || errors.Is(err, client.ErrOutcomeUnknown) != tt.wantUnknown {
				t.Fatalf("error %+v (%v): want context.Canceled, unknown outcome %v", e, err, tt.wantUnknown)
			}
		})
	}
	// A context cancelled before the call sends nothing that can be
	// executed.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := newClient(t, []string{noLeader.addr()}, client.Options{})
	if _, err := c.Append(ctx, "acme", oneEntry); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a cancelled context: %v", err)
	}
}

// RequestTimeout bounds a call; AttemptTimeout leaves a request that hangs
// for a retry with the same ids.
func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hangFirst := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		appended(w, 1, 1, 1)
	})

	c := newClient(t, []string{hangFirst.addr()}, fast(client.Options{AttemptTimeout: 100 * time.Millisecond}))
	res, err := c.Append(t.Context(), "acme", oneEntry)
	if err != nil || res.Attempts != 2 {
		t.Fatalf("%+v, %v: want the hung request left and retried", res, err)
	}
	sameIDs(t, hangFirst.requests())

	hangAll := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c = newClient(t, []string{hangAll.addr()}, client.Options{RequestTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, err = c.Append(t.Context(), "acme", oneEntry)
	took := time.Since(start)
	e := asError(t, err)
	if !errors.Is(err, context.DeadlineExceeded) || !e.OutcomeUnknown || !strings.Contains(err.Error(), "RequestTimeout") {
		t.Fatalf("error %+v (%v): want the request timeout, outcome unknown", e, err)
	}
	if took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("the call took %v with a 200ms RequestTimeout", took)
	}
	// A context deadline shorter than RequestTimeout wins.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	c = newClient(t, []string{hangAll.addr()}, client.Options{RequestTimeout: time.Hour})
	if _, err := c.Get(ctx, "acme", "k1"); !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "RequestTimeout") {
		t.Fatalf("get under a context deadline: %v", err)
	}
}

// The token goes in every request's Authorization header, and only there.
func TestTokenSent(t *testing.T) {
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			appended(w, 1, 1, 1)
		case strings.Contains(r.URL.Path, "/keys/"):
			writeJSON(w, 200, map[string]any{"key": "k1", "value": 1, "position": 1})
		default:
			writeJSON(w, 200, map[string]any{"entries": []any{}, "next": 1})
		}
	})
	const token = "s3cr3t-T0ken_with.chars~+/="
	c := newClient(t, []string{node.addr()}, client.Options{Token: token})
	if _, err := c.Append(t.Context(), "acme", oneEntry); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(t.Context(), "acme", "k1"); err != nil {
		t.Fatal(err)
	}
	for _, err := range c.Read(t.Context(), "acme", 1) {
		t.Fatal(err)
	}
	reqs := node.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	for _, r := range reqs {
		if r.Auth != "Bearer "+token {
			t.Errorf("%s %s: Authorization %q", r.Method, r.Path, r.Auth)
		}
		if strings.Contains(r.Path+r.RawQuery+r.Body, token) {
			t.Errorf("%s %s: the token leaked outside the header", r.Method, r.Path)
		}
	}
	// Without a token, no header.
	c = newClient(t, []string{node.addr()}, client.Options{})
	if _, err := c.Get(t.Context(), "acme", "k1"); err != nil {
		t.Fatal(err)
	}
	if r := node.requests()[3]; r.Auth != "" {
		t.Fatalf("Authorization %q without a token", r.Auth)
	}
}

// Get decodes the value, escapes the key, and reports a missing key as
// ErrNotFound without retrying.
func TestGet(t *testing.T) {
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/tenants/acme/keys/missing" {
			apiError(w, 404, "not_found", "not found")
			return
		}
		writeJSON(w, 200, map[string]any{"key": strings.TrimPrefix(r.URL.Path, "/v1/tenants/acme/keys/"), "value": map[string]int{"n": 1}, "position": 42})
	})
	c := newClient(t, []string{node.addr()}, client.Options{})
	v, err := c.Get(t.Context(), "acme", "a/b c?d")
	if err != nil || v.Position != 42 || string(v.Value) != `{"n":1}` {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	if p := node.requests()[0].Path; p != "/v1/tenants/acme/keys/a%2Fb%20c%3Fd" {
		t.Fatalf("path %q", p)
	}
	_, err = c.Get(t.Context(), "acme", "missing")
	if e := asError(t, err); !errors.Is(err, client.ErrNotFound) || e.Status != 404 || e.Attempts != 1 {
		t.Fatalf("missing key: %+v (%v)", e, err)
	}
}

// Read pages through a tenant's log with the server's next position, ends
// at an empty page, reads an unknown tenant as empty, stops fetching when
// the loop stops, and yields a failure once.
func TestRead(t *testing.T) {
	const total = 7
	failFrom := uint64(0)
	var mu sync.Mutex
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/tenants/acme/") {
			apiError(w, 404, "not_found", "not found")
			return
		}
		from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		mu.Lock()
		fail := failFrom != 0 && from >= failFrom
		mu.Unlock()
		if fail {
			apiError(w, 400, "bad_request", "limit too large")
			return
		}
		var entries []map[string]any
		next := from
		// The tenant's entries are at positions 10, 20, ... 70.
		for p := uint64(10); p <= total*10 && len(entries) < limit; p += 10 {
			if p >= from {
				entries = append(entries, map[string]any{"position": p, "key": fmt.Sprintf("k%d", p), "value": p, "timestamp": "2026-11-22T00:27:01.651602503Z"})
				next = p + 1
			}
		}
		writeJSON(w, 200, map[string]any{"entries": entries, "next": next})
	})
	c := newClient(t, []string{node.addr()}, client.Options{ReadPageSize: 3})

	var got []uint64
	for e, err := range c.Read(t.Context(), "acme", 0) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Key != fmt.Sprintf("k%d", e.Position) || string(e.Value) != strconv.FormatUint(e.Position, 10) ||
			!e.Timestamp.Equal(time.Date(2026, 11, 22, 0, 27, 1, 651602503, time.UTC)) {
			t.Fatalf("entry %+v", e)
		}
		got = append(got, e.Position)
	}
	if want := []uint64{10, 20, 30, 40, 50, 60, 70}; !slices.Equal(got, want) {
		t.Fatalf("positions %v, want %v", got, want)
	}
	var queries []string
	for _, r := range node.requests() {
		queries = append(queries, r.RawQuery)
	}
	// Three full pages, then an empty one.
	if want := []string{"from=1&limit=3", "from=31&limit=3", "from=61&limit=3", "from=71&limit=3"}; !slices.Equal(queries, want) {
		t.Fatalf("queries %q, want %q", queries, want)
	}

	// Stopping the loop stops the fetching.
	before := len(node.requests())
	for e := range c.Read(t.Context(), "acme", 25) {
		if e.Position != 30 {
			t.Fatalf("first entry from 25: %+v", e)
		}
		break
	}
	if n := len(node.requests()) - before; n != 1 {
		t.Fatalf("%d requests for one entry", n)
	}

	for _, err := range c.Read(t.Context(), "initech", 1) {
		t.Fatalf("unknown tenant: %v", err)
	}

	mu.Lock()
	failFrom = 31
	mu.Unlock()
	var errs []error
	got = nil
	for e, err := range c.Read(t.Context(), "acme", 1) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, e.Position)
	}
	if len(errs) != 1 || asError(t, errs[0]).Code != client.CodeBadRequest || !slices.Equal(got, []uint64{10, 20, 30}) {
		t.Fatalf("entries %v, errors %v: want the first page, then one error", got, errs)
	}
}

// Input the server would refuse is refused before anything is sent.
func TestInvalidInputNotSent(t *testing.T) {
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) { appended(w, 1, 1, 1) })
	c := newClient(t, []string{node.addr()}, client.Options{})
	ctx := t.Context()
	for _, tt := range []struct {
		name string
		call func() error
		code string
	}{
		{"tenant with capitals", func() error { _, err := c.Append(ctx, "Acme", oneEntry); return err }, client.CodeInvalidTenant},
		{"tenant with a slash", func() error { _, err := c.Get(ctx, "acme/x", "k"); return err }, client.CodeInvalidTenant},
		{"empty tenant", func() error {
			for _, err := range c.Read(ctx, "", 1) {
				return err
			}
			return nil
		}, client.CodeInvalidTenant},
		{"empty batch", func() error { _, err := c.Append(ctx, "acme", nil); return err }, client.CodeMalformed},
		{"nil batch", func() error { _, err := c.AppendBatch(ctx, "acme", nil); return err }, client.CodeMalformed},
		{"empty key", func() error {
			_, err := c.Append(ctx, "acme", []client.Entry{{Key: "", Value: json.RawMessage(`1`)}})
			return err
		}, client.CodeInvalidKey},
		{"key with a newline", func() error { _, err := c.Get(ctx, "acme", "a\nb"); return err }, client.CodeInvalidKey},
		{"key not UTF-8", func() error {
			_, err := c.Append(ctx, "acme", []client.Entry{{Key: "\xff\xfe", Value: json.RawMessage(`1`)}})
			return err
		}, client.CodeInvalidKey},
		{"missing value", func() error {
			_, err := c.Append(ctx, "acme", []client.Entry{{Key: "k"}})
			return err
		}, client.CodeMalformed},
		{"a value that would smuggle an entry", func() error {
			_, err := c.Append(ctx, "acme", []client.Entry{{Key: "k", Value: json.RawMessage(`1},{"key":"x","value":2`)}})
			return err
		}, client.CodeMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if e := asError(t, err); e.Code != tt.code || e.Status != 0 || e.URL != "" {
				t.Fatalf("error %+v (%v): want code %s, nothing sent", e, err, tt.code)
			}
		})
	}
	if n := len(node.requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

// A batch is encoded as the API's JSON, keys escaped, values as given.
func TestBatchEncoding(t *testing.T) {
	b, err := client.NewBatch([]client.Entry{
		{Key: `quote " and \ backslash`, Value: json.RawMessage(`{"a": [1, 2]}`)},
		{Key: "ünïcødé", Value: json.RawMessage(`null`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	node := newFakeNode(t, func(n int, w http.ResponseWriter, r *http.Request) { appended(w, 1, 2, 1) })
	c := newClient(t, []string{node.addr()}, client.Options{})
	if _, err := c.AppendBatch(t.Context(), "acme", b); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Entries []struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		} `json:"entries"`
	}
	dec := json.NewDecoder(strings.NewReader(node.requests()[0].Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 2 || len(body.Entries) != 2 || body.Entries[0].Key != `quote " and \ backslash` || string(body.Entries[0].Value) != `{"a": [1, 2]}` ||
		body.Entries[1].Key != "ünïcødé" || string(body.Entries[1].Value) != "null" {
		t.Fatalf("sent %q", node.requests()[0].Body)
	}
}

// New refuses options and addresses it cannot honour, naming them.
func TestNewErrors(t *testing.T) {
	for _, tt := range []struct {
		addrs []string
		opts  client.Options
		want  string
	}{
		{nil, client.Options{}, "no address"},
		{[]string{"127.0.0.1"}, client.Options{}, `"127.0.0.1"`},
		{[]string{"ftp://127.0.0.1:1"}, client.Options{}, "ftp://"},
		{[]string{"http://127.0.0.1:1/v1"}, client.Options{}, "/v1"},
		{[]string{"http://127.0.0.1:1", "https://127.0.0.1:2"}, client.Options{}, "mix http and https"},
		{[]string{"http://127.0.0.1:1"}, client.Options{CAFile: "ca.pem"}, "CAFile"},
		{[]string{"127.0.0.1:1"}, client.Options{CertFile: "c.pem"}, "CertFile and Options.KeyFile"},
		{[]string{"127.0.0.1:1"}, client.Options{Token: "two words"}, "Options.Token"},
		{[]string{"127.0.0.1:1"}, client.Options{Token: "line\n"}, "Options.Token"},
		{[]string{"127.0.0.1:1"}, client.Options{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
		{[]string{"127.0.0.1:1"}, client.Options{ReadPageSize: -1}, "ReadPageSize"},
		{[]string{"127.0.0.1:1"}, client.Options{AttemptTimeout: -1}, "AttemptTimeout"},
		{[]string{"127.0.0.1:1"}, client.Options{Transport: http.DefaultTransport, CAFile: "x"}, "Transport"},
	} {
		if _, err := client.New(tt.addrs, tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q, %+v) = %v, want an error naming %s", tt.addrs, tt.opts, err, tt.want)
		}
	}
}

// onBodyClose calls closed once the client has closed an answer's body:
// the answer is then read, and the client past it.
type onBodyClose struct {
	rt     http.RoundTripper
	closed func()
}

func (o onBodyClose) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := o.rt.RoundTrip(r)
	if err == nil {
		resp.Body = signalingBody{resp.Body, o.closed}
	}
	return resp, err
}

type signalingBody struct {
	io.ReadCloser
	closed func()
}

func (b signalingBody) Close() error {
	err := b.ReadCloser.Close()
	b.closed()
	return err
}
