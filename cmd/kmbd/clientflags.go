package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// clientFlags are the flags of every command that talks to a running
// node's API: a bearer token and TLS. One place parses them, so that every
// such command reads them alike.
type clientFlags struct {
	token, cacert, cert, key string
}

// addClientFlags registers --token, --cacert, --cert and --key on fs.
func addClientFlags(fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fs.StringVar(&f.token, "token", "", "bearer token of the API (default $KMB_TOKEN)")
	fs.StringVar(&f.cacert, "cacert", "", "PEM CA bundle that the API's certificate must chain to (implies https)")
	fs.StringVar(&f.cert, "cert", "", "PEM client certificate, for an API that requires one (with --key; implies https)")
	fs.StringVar(&f.key, "key", "", "PEM key of --cert")
	return f
}

// tlsSet reports whether any TLS flag is set: addresses without a scheme
// are then https.
func (f *clientFlags) tlsSet() bool { return f.cacert != "" || f.cert != "" || f.key != "" }

// bearer is the token to send: --token, else $KMB_TOKEN, "" for none.
func (f *clientFlags) bearer(getenv func(string) string) string {
	if f.token != "" {
		return f.token
	}
	return getenv("KMB_TOKEN")
}

// load returns the bearer token, --token or else $KMB_TOKEN ("" for none),
// and the TLS configuration, nil when no TLS flag is set (the system roots
// then verify an https address).
func (f *clientFlags) load(getenv func(string) string) (string, *tls.Config, error) {
	token := f.bearer(getenv)
	if !f.tlsSet() {
		return token, nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.cacert != "" {
		pem, err := os.ReadFile(f.cacert)
		if err != nil {
			return "", nil, fmt.Errorf("--cacert %q: %w", f.cacert, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return "", nil, fmt.Errorf("--cacert %q: no PEM certificate in the file", f.cacert)
		}
	}
	if (f.cert == "") != (f.key == "") {
		return "", nil, errors.New("--cert and --key go together")
	}
	if f.cert != "" {
		c, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return "", nil, fmt.Errorf("--cert %q, --key %q: %w", f.cert, f.key, err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return token, cfg, nil
}
