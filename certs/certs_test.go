package certs

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/testpki"
)

func files(l *testpki.Leaf, ca *testpki.CA) Files {
	return Files{CertFile: l.CertFile, KeyFile: l.KeyFile, CAFile: ca.CertFile, CertKey: "tls.cert_file", KeyKey: "tls.key_file", CAKey: "tls.client_ca_file"}
}

// serverCert is the certificate a handshake with cfg would present.
func serverCert(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Certificates[0].Leaf
	return leaf.Subject.CommonName
}

func TestRotationOnChangeAndReload(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	first := ca.Issue(t, "server", "first")
	r, err := New(files(first, ca), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.ServerConfig(tls.RequireAndVerifyClientCert)
	if got := serverCert(t, cfg); got != "first" {
		t.Fatalf("serving %q", got)
	}
	if c, _ := cfg.GetConfigForClient(nil); c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs == nil || c.MinVersion != tls.VersionTLS12 {
		t.Fatalf("server config %+v", c)
	}

	// A new certificate over the old files is picked up by a handshake
	// once the check interval has passed.
	second := ca.Issue(t, "second", "second")
	replace(t, first, second)
	r.lastCheck.Store(time.Now().Add(-2 * checkEvery).UnixNano())
	if got := serverCert(t, cfg); got != "second" {
		t.Fatalf("after rotation serving %q", got)
	}

	// A broken file keeps the previous certificate.
	if err := os.WriteFile(first.CertFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("Reload of garbage: %v", err)
	}
	r.lastCheck.Store(time.Now().Add(-2 * checkEvery).UnixNano())
	if got := serverCert(t, cfg); got != "second" {
		t.Fatalf("after a bad rotation serving %q", got)
	}
	third := ca.Issue(t, "third", "third")
	replace(t, first, third)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := r.ClientConfig("x").Certificates[0].Leaf.Subject.CommonName; got != "third" {
		t.Fatalf("client config after Reload: %q", got)
	}
}

func TestNewNamesTheKey(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	l := ca.Issue(t, "server", "s")
	f := files(l, ca)
	f.CAFile = l.KeyFile // no certificate in it
	if _, err := New(f, nil); err == nil || !strings.Contains(err.Error(), "tls.client_ca_file") {
		t.Fatalf("New with a key as CA: %v", err)
	}
	f = files(l, ca)
	f.KeyFile = "/nonexistent"
	if _, err := New(f, nil); err == nil || !strings.Contains(err.Error(), "tls.key_file") {
		t.Fatalf("New without a key: %v", err)
	}
}

func replace(t *testing.T, old, next *testpki.Leaf) {
	t.Helper()
	if err := os.WriteFile(old.CertFile, next.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old.KeyFile, next.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}
