package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files names the PEM files of one TLS identity. CAFile may be empty: no
// peer certificates are then verified against a private CA.
type Files struct {
	CertFile, KeyFile, CAFile string
	// Keys name the files' TOML keys in errors, e.g. "tls.cert_file".
	CertKey, KeyKey, CAKey string
}

// checkEvery bounds how often handshakes look for changed files.
const checkEvery = time.Second

// Reloader holds the current certificate and CA pool of Files.
type Reloader struct {
	files  Files
	logger *slog.Logger

	cur       atomic.Pointer[material]
	lastCheck atomic.Int64 // unix nanoseconds of the last stat
	mu        sync.Mutex   // serialises reloads
}

// material is one load of the files.
type material struct {
	cert  *tls.Certificate
	pool  *x509.CertPool // nil without a CA file
	stamp [3]stamp
	srv   map[tls.ClientAuthType]*tls.Config
}

// stamp identifies a version of a file.
type stamp struct {
	size int64
	mod  time.Time
}

// New loads files; a logger may be nil. Its error names the TOML key.
func New(files Files, logger *slog.Logger) (*Reloader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{files: files, logger: logger}
	m, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	r.lastCheck.Store(time.Now().UnixNano())
	return r, nil
}

// Reload rereads the files. On error the previous ones stay in force.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.load()
	if err != nil {
		return err
	}
	r.cur.Store(m)
	return nil
}

// Certificate is the certificate in force.
func (r *Reloader) Certificate() *tls.Certificate { return r.cur.Load().cert }

// Pool is the CA pool in force, nil without a CA file.
func (r *Reloader) Pool() *x509.CertPool { return r.cur.Load().pool }

// ServerConfig returns a server configuration (TLS 1.2 and up) that
// serves the current certificate and, with clientAuth above
// tls.NoClientCert, verifies clients against the current CA pool.
func (r *Reloader) ServerConfig(clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r.maybeReload()
			return r.cur.Load().server(clientAuth), nil
		},
	}
}

// ClientConfig returns a client configuration for one connection to
// serverName: the current certificate and CA pool (the system roots
// without a CA file), TLS 1.2 and up. Make one per dial, so a rotation
// applies to the next connection.
func (r *Reloader) ClientConfig(serverName string) *tls.Config {
	r.maybeReload()
	m := r.cur.Load()
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		ServerName:   serverName,
		RootCAs:      m.pool,
		Certificates: []tls.Certificate{*m.cert},
	}
}

func (m *material) server(clientAuth tls.ClientAuthType) *tls.Config {
	if c := m.srv[clientAuth]; c != nil {
		return c
	}
	return m.srv[tls.NoClientCert]
}

// maybeReload reloads when a file changed, looking at most once per
// checkEvery.
func (r *Reloader) maybeReload() {
	now := time.Now().UnixNano()
	last := r.lastCheck.Load()
	if now-last < int64(checkEvery) || !r.lastCheck.CompareAndSwap(last, now) {
		return
	}
	st, err := r.stamps()
	if err != nil || st == r.cur.Load().stamp {
		return // a file being replaced is looked at again next time
	}
	if err := r.Reload(); err != nil {
		r.logger.Error("TLS files changed but do not load; the previous certificate stays in force", slog.String("error", err.Error()))
		return
	}
	r.logger.Info("TLS certificate reloaded", slog.String("cert_file", r.files.CertFile))
}

func (r *Reloader) stamps() ([3]stamp, error) {
	var out [3]stamp
	for i, p := range []string{r.files.CertFile, r.files.KeyFile, r.files.CAFile} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return out, err
		}
		out[i] = stamp{fi.Size(), fi.ModTime()}
	}
	return out, nil
}

func (r *Reloader) load() (*material, error) {
	f := r.files
	st, err := r.stamps()
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", f.CertKey, f.KeyKey, err)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s = %q, %s = %q: %w", f.CertKey, f.CertFile, f.KeyKey, f.KeyFile, err)
	}
	m := &material{cert: &cert, stamp: st}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s = %q: %w", f.CAKey, f.CAFile, err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s = %q: %w", f.CAKey, f.CAFile, errNoCerts)
		}
	}
	m.srv = map[tls.ClientAuthType]*tls.Config{}
	for _, ca := range []tls.ClientAuthType{tls.NoClientCert, tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert} {
		c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if ca != tls.NoClientCert && m.pool != nil {
			c.ClientAuth, c.ClientCAs = ca, m.pool
		}
		m.srv[ca] = c
	}
	return m, nil
}

var errNoCerts = errors.New("no PEM certificate in the file")
