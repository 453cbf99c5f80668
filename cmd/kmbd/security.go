package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/kmb-db/kmb/auth"
	"github.com/kmb-db/kmb/certs"
	"github.com/kmb-db/kmb/telemetry"
)

// AuthConfig is the [auth] table.
type AuthConfig struct {
	// TokensFile is the TOML file of the API's principals (see package
	// auth); reloaded on SIGHUP. Empty: no authentication by token.
	// TOML: auth.tokens_file. Default empty.
	TokensFile string `toml:"tokens_file"`
}

// TLSConfig is the [tls] table: HTTPS for the client API.
type TLSConfig struct {
	// CertFile and KeyFile are the API's certificate chain and key, PEM;
	// reloaded when they change or on SIGHUP. Both or neither. TOML:
	// tls.cert_file, tls.key_file. Default empty: plain HTTP.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ClientCAFile makes the API require client certificates that chain to
	// these CAs; a certificate's subject CN is then a principal. TOML:
	// tls.client_ca_file. Default empty.
	ClientCAFile string `toml:"client_ca_file"`
}

// minSecretBytes is the shortest cluster secret accepted: 256 bits of hex
// is 64 characters, and 32 bytes of anything is the least that HMAC-SHA256
// can use in full.
const minSecretBytes = 32

// validateSecurity checks the TLS, authentication and exposure settings,
// and refuses to serve beyond loopback with nothing protecting it unless
// told to.
func (c Config) validateSecurity(replicas map[uint64]string) error {
	t := c.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("tls.cert_file = %q, tls.key_file = %q: set both or neither", t.CertFile, t.KeyFile)
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		return fmt.Errorf("tls.client_ca_file = %q: needs tls.cert_file and tls.key_file (client certificates are a TLS feature)", t.ClientCAFile)
	}
	cl := c.Cluster
	clusterTLS := cl.TLSCertFile != "" || cl.TLSKeyFile != "" || cl.TLSCAFile != ""
	if clusterTLS && (cl.TLSCertFile == "" || cl.TLSKeyFile == "" || cl.TLSCAFile == "") {
		return fmt.Errorf("cluster.tls_cert_file = %q, cluster.tls_key_file = %q, cluster.tls_ca_file = %q: set all three or none", cl.TLSCertFile, cl.TLSKeyFile, cl.TLSCAFile)
	}
	if clusterTLS && cl.SecretFile != "" {
		return fmt.Errorf("cluster.secret_file = %q: set either cluster.tls_* or cluster.secret_file, not both", cl.SecretFile)
	}

	if !c.API.AllowInsecure && !telemetry.IsLoopback(c.API.Listen) && c.Auth.TokensFile == "" && t.CertFile == "" {
		return fmt.Errorf("api.listen = %q serves beyond loopback with neither authentication nor TLS: set auth.tokens_file (--auth-tokens-file) or tls.cert_file and tls.key_file (--tls-cert, --tls-key), or api.allow_insecure = true to serve it anyway", c.API.Listen)
	}
	if len(replicas) > 1 && !cl.AllowInsecure && !clusterTLS && cl.SecretFile == "" {
		addrs := []string{c.Cluster.Listen}
		for _, id := range slices.Sorted(maps.Keys(replicas)) {
			addrs = append(addrs, replicas[id])
		}
		for _, a := range addrs {
			if a != "" && !telemetry.IsLoopback(a) {
				return fmt.Errorf("replication address %q is beyond loopback with neither cluster TLS nor a cluster secret: set cluster.tls_cert_file, cluster.tls_key_file and cluster.tls_ca_file, or cluster.secret_file (--cluster-secret-file), or cluster.allow_insecure = true to replicate in the clear anyway", a)
			}
		}
	}
	return nil
}

// security is what the configuration's files hold, loaded.
type security struct {
	tokens        *auth.Store     // nil without auth.tokens_file
	apiTLS        *certs.Reloader // nil without tls.cert_file
	clusterTLS    *certs.Reloader // nil without cluster.tls_*
	clusterSecret []byte          // nil without cluster.secret_file
}

// openSecurity loads every file the configuration names. Its errors are
// configuration errors: they name the key.
func openSecurity(c Config, logger *slog.Logger) (*security, error) {
	var s security
	var err error
	if p := c.Auth.TokensFile; p != "" {
		if s.tokens, err = auth.Open(p); err != nil {
			return nil, err
		}
	}
	if c.TLS.CertFile != "" {
		s.apiTLS, err = certs.New(certs.Files{
			CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, CAFile: c.TLS.ClientCAFile,
			CertKey: "tls.cert_file", KeyKey: "tls.key_file", CAKey: "tls.client_ca_file",
		}, logger)
		if err != nil {
			return nil, err
		}
	}
	cl := c.Cluster
	if cl.TLSCertFile != "" {
		s.clusterTLS, err = certs.New(certs.Files{
			CertFile: cl.TLSCertFile, KeyFile: cl.TLSKeyFile, CAFile: cl.TLSCAFile,
			CertKey: "cluster.tls_cert_file", KeyKey: "cluster.tls_key_file", CAKey: "cluster.tls_ca_file",
		}, logger)
		if err != nil {
			return nil, err
		}
	}
	if p := cl.SecretFile; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("cluster.secret_file = %q: %w", p, err)
		}
		if s.clusterSecret = bytes.TrimSpace(b); len(s.clusterSecret) < minSecretBytes {
			return nil, fmt.Errorf("cluster.secret_file = %q: holds %d bytes; accepted at least %d (make one with: openssl rand -hex 32)", p, len(s.clusterSecret), minSecretBytes)
		}
	}
	if p := c.Telemetry.WebConfigFile; p != "" {
		if _, err := telemetry.ValidateWebConfig(p); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// apiClientAuth is the API's TLS client authentication.
func (c Config) apiClientAuth() tls.ClientAuthType {
	if c.TLS.ClientCAFile != "" {
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

// tokenReload is the detail of a token_reload admin op: enough to tell
// which file was in force, nothing that helps guess a secret.
type tokenReload struct {
	File       string   `json:"file"`
	SHA256     string   `json:"sha256"`
	Principals int      `json:"principals"`
	Names      []string `json:"names"`
}

func reloadDetail(path string, set *auth.Set) tokenReload {
	return tokenReload{File: path, SHA256: set.Digest(), Principals: set.Len(), Names: set.Names()}
}

// replicationSecurity names how replicas authenticate each other.
func (c Config) replicationSecurity() string {
	switch {
	case c.Cluster.Replicas == "":
		return "single_node"
	case c.Cluster.TLSCertFile != "":
		return "mutual_tls"
	case c.Cluster.SecretFile != "":
		return "shared_secret"
	}
	return "none"
}

// apiURL is the client API's base URL.
func (s *server) apiURL() string {
	if s.sec.apiTLS != nil {
		return "https://" + s.apiAddr
	}
	return "http://" + s.apiAddr
}

// reloadTimeout bounds the commit of a token_reload op.
const reloadTimeout = 10 * time.Second

// reload rereads, on SIGHUP, the tokens file and the TLS certificates.
// Whatever does not load is logged at ERROR and the previous version stays
// in force. A tokens file reloaded on the leader is recorded in the log as
// a token_reload admin op; every node reloads its own file, and a
// follower only logs it.
func (s *server) reload(logger *slog.Logger) {
	if t := s.sec.tokens; t != nil {
		set, err := t.Reload()
		if err != nil {
			logger.Error("tokens file not reloaded; the previous principals stay in force", slog.String("error", err.Error()))
		} else {
			detail := reloadDetail(t.Path(), set)
			logger.Info("tokens file reloaded", slog.String("file", detail.File), slog.String("sha256", detail.SHA256),
				slog.Int("principals", detail.Principals), slog.Any("names", detail.Names))
			if s.node.Status().IsLeader {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
					defer cancel()
					op, err := s.node.CommitAdmin(ctx, "token_reload", detail, "")
					if err != nil {
						logger.Warn("tokens file reloaded, but its token_reload op was not committed", slog.String("error", err.Error()))
						return
					}
					logger.Info("token_reload committed", slog.Uint64("op_number", op))
				}()
			}
		}
	}
	for _, r := range []struct {
		what string
		r    *certs.Reloader
	}{{"API TLS certificate", s.sec.apiTLS}, {"cluster TLS certificate", s.sec.clusterTLS}} {
		if r.r == nil {
			continue
		}
		if err := r.r.Reload(); err != nil {
			logger.Error(r.what+" not reloaded; the previous one stays in force", slog.String("error", err.Error()))
		} else {
			logger.Info(r.what + " reloaded")
		}
	}
}
