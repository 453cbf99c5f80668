package client_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/client"
	"github.com/kmb-db/kmb/internal/testpki"
)

// testPKI is a CA made for the test, a server certificate for 127.0.0.1
// and a client certificate, all signed by it, and another CA that signed
// nothing here.
type testPKI struct {
	caPool, otherCA *x509.CertPool
	caFile          string
	server          tls.Certificate
	client          *testpki.Leaf
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca := testpki.NewCA(t, "kmb test CA")
	return &testPKI{
		caPool:  ca.Pool(),
		otherCA: testpki.NewCA(t, "another CA").Pool(),
		caFile:  ca.CertFile,
		server:  ca.Issue(t, "server", "127.0.0.1", "127.0.0.1").TLS,
		client:  ca.Issue(t, "client", "acme-writer"),
	}
}

// The client verifies servers with the CA it is given, presents its
// certificate to servers that require one, fails at once (without
// retrying) when verification fails, and never follows a redirect out of
// https.
func TestTLS(t *testing.T) {
	p := newTestPKI(t)
	var peerCN []string
	ok := func(n int, w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			peerCN = append(peerCN, r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		appended(w, 1, 1, 1)
	}
	serverOnly := newFakeTLSNode(t, &tls.Config{Certificates: []tls.Certificate{p.server}}, ok)
	mutual := newFakeTLSNode(t, &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.caPool}, ok)
	plain := newFakeNode(t, ok)

	tests := []struct {
		name    string
		node    *fakeNode
		addr    func(n *fakeNode) string
		opts    client.Options
		wantErr string // empty: success
		// In TLS 1.3 the server refuses a client certificate after the
		// client has finished its handshake and written the request, so the
		// client may first see the connection reset (and retry) before it
		// reads the alert.
		mayRetry bool
	}{
		{"CA file, address without a scheme", serverOnly, (*fakeNode).addr, client.Options{CAFile: p.caFile}, "", false},
		{"TLSConfig with the CA pool", serverOnly, func(n *fakeNode) string { return n.URL }, client.Options{TLSConfig: &tls.Config{RootCAs: p.caPool}}, "", false},
		{"https address, another CA", serverOnly, func(n *fakeNode) string { return n.URL }, client.Options{TLSConfig: &tls.Config{RootCAs: p.otherCA}}, "certificate", false},
		{"client certificate", mutual, (*fakeNode).addr, client.Options{CAFile: p.caFile, CertFile: p.client.CertFile, KeyFile: p.client.KeyFile}, "", false},
		{"client certificate missing", mutual, (*fakeNode).addr, client.Options{CAFile: p.caFile}, "certificate", true},
		{"TLS to a plain HTTP server", plain, (*fakeNode).addr, client.Options{CAFile: p.caFile}, "HTTP response to HTTPS client", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tt.node.requests())
			c := newClient(t, []string{tt.addr(tt.node)}, fast(tt.opts))
			res, err := c.Append(t.Context(), "acme", oneEntry)
			if tt.wantErr == "" {
				if err != nil || res.Attempts != 1 || len(tt.node.requests()) != before+1 {
					t.Fatalf("%+v, %v", res, err)
				}
				return
			}
			e := asError(t, err)
			if !strings.Contains(err.Error(), tt.wantErr) || e.Status != 0 || (!tt.mayRetry && (e.Attempts != 1 || errors.Is(err, client.ErrOutcomeUnknown))) {
				t.Fatalf("error %+v (%v): want one attempt failing on %q, outcome known", e, err, tt.wantErr)
			}
			if len(tt.node.requests()) != before {
				t.Fatal("the server handled a request")
			}
		})
	}
	if len(peerCN) != 1 || peerCN[0] != "acme-writer" {
		t.Fatalf("client certificates seen by the servers: %q", peerCN)
	}

	// A follower's redirect names the leader with http://: the client
	// goes on in https, token included.
	leader := newFakeTLSNode(t, &tls.Config{Certificates: []tls.Certificate{p.server}}, ok)
	follower := newFakeTLSNode(t, &tls.Config{Certificates: []tls.Certificate{p.server}}, func(n int, w http.ResponseWriter, r *http.Request) {
		redirectTo(w, r, "http://"+leader.addr())
	})
	c := newClient(t, []string{follower.addr()}, client.Options{CAFile: p.caFile, Token: "secret"})
	res, err := c.Append(t.Context(), "acme", oneEntry)
	if err != nil || res.Attempts != 2 {
		t.Fatalf("redirect: %+v, %v", res, err)
	}
	if r := leader.requests(); len(r) != 1 || r[0].Auth != "Bearer secret" {
		t.Fatalf("leader saw %+v", r)
	}
}
