package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/client"
)

// testPKI is a CA made for the test, a server certificate for 127.0.0.1
// and a client certificate, all signed by it, written as PEM files.
type testPKI struct {
	caPool             *x509.CertPool
	caFile             string
	server             tls.Certificate
	clientCertFile     string
	clientKeyFile      string
	otherCA            *x509.CertPool // a CA that signed nothing here
	serverClientCAPool *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert, caDER := newCA(t, "kmb test CA")
	_, otherCert, _ := newCA(t, "another CA")
	p := &testPKI{caPool: x509.NewCertPool(), otherCA: x509.NewCertPool(), serverClientCAPool: x509.NewCertPool()}
	p.caPool.AddCert(caCert)
	p.serverClientCAPool.AddCert(caCert)
	p.otherCA.AddCert(otherCert)
	p.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)

	serverKey, serverDER := leaf(t, caKey, caCert, "127.0.0.1", &x509.Certificate{
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.server = tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}

	clientKey, clientDER := leaf(t, caKey, caCert, "acme-writer", &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	p.clientCertFile = writePEM(t, dir, "client.pem", "CERTIFICATE", clientDER)
	p.clientKeyFile = writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

func newCA(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func leaf(t *testing.T, caKey *ecdsa.PrivateKey, ca *x509.Certificate, cn string, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.Subject = pkix.Name{CommonName: cn}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
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
	mutual := newFakeTLSNode(t, &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.serverClientCAPool}, ok)
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
		{"client certificate", mutual, (*fakeNode).addr, client.Options{CAFile: p.caFile, CertFile: p.clientCertFile, KeyFile: p.clientKeyFile}, "", false},
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
