package telemetry

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
)

// OpenPaths are served without the web configuration's authentication:
// probes (kubelets, load balancers) carry no credentials.
var OpenPaths = []string{"/health/live", "/health/ready"}

// WebConfig is what kmbd needs to know of a web configuration file.
type WebConfig struct {
	// Authenticates: basic_auth_users, or client certificates verified
	// against client_ca_file.
	Authenticates bool
	// TLS: the endpoint serves HTTPS.
	TLS bool
}

// ValidateWebConfig checks an exporter-toolkit web configuration file.
func ValidateWebConfig(path string) (WebConfig, error) {
	if err := web.Validate(path); err != nil {
		return WebConfig{}, fmt.Errorf("telemetry.web_config_file = %q: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return WebConfig{}, fmt.Errorf("telemetry.web_config_file = %q: %w", path, err)
	}
	var c web.Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return WebConfig{}, fmt.Errorf("telemetry.web_config_file = %q: %w", path, err)
	}
	return WebConfig{
		Authenticates: len(c.Users) > 0 || c.TLSConfig.ClientAuth == "RequireAndVerifyClientCert",
		TLS:           c.TLSConfig.IsEnabled(),
	}, nil
}

// Scheme is the telemetry endpoint's URL scheme, https with TLS.
func (t *Telemetry) Scheme() string {
	if t.web.TLS {
		return "https"
	}
	return "http"
}

// IsLoopback reports whether a listen or dial address host:port reaches
// this host only: a loopback IP or "localhost". An empty host (every
// interface) and any other name are not.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve serves srv on ln until it fails or is shut down. Without a web
// configuration that is plain HTTP. With one, exporter-toolkit's web
// package serves it (TLS, basic auth, its headers and rate limit, the
// file reread as it changes), except that requests for OpenPaths skip its
// authentication and go to srv's handler directly.
func (t *Telemetry) Serve(ln net.Listener, srv *http.Server) error {
	path := t.cfg.WebConfigFile
	if path == "" {
		return srv.Serve(ln)
	}
	open := srv.Handler
	logger := t.Logger("kmb_telemetry")
	// web.Serve wraps srv.Handler in its authentication before it
	// serves; the first Accept, on web.Serve's goroutine and before any
	// connection's goroutine exists, puts the probes in front of it.
	hook := &firstAccept{Listener: ln, do: func() {
		srv.Handler = probesFirst{open: open, authed: srv.Handler}
	}}
	return web.Serve(hook, srv, &web.FlagConfig{WebConfigFile: &path}, logger)
}

// probesFirst sends OpenPaths to open and everything else to authed.
type probesFirst struct{ open, authed http.Handler }

func (h probesFirst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, p := range OpenPaths {
		if r.URL.Path == p {
			h.open.ServeHTTP(w, r)
			return
		}
	}
	h.authed.ServeHTTP(w, r)
}

// firstAccept runs do before its first Accept.
type firstAccept struct {
	net.Listener
	once sync.Once
	do   func()
}

func (l *firstAccept) Accept() (net.Conn, error) {
	l.once.Do(l.do)
	return l.Listener.Accept()
}

// pprofLoopbackOnly reports whether /debug/pprof/* must be kept to
// loopback clients: the endpoint listens beyond loopback and nothing
// authenticates its clients.
func (t *Telemetry) pprofLoopbackOnly() bool {
	return t.cfg.PprofEnabled && !IsLoopback(t.cfg.Listen) && !t.web.Authenticates
}

func (t *Telemetry) warnPprof() {
	if t.pprofLoopbackOnly() {
		t.Logger("kmb_telemetry").Warn("/debug/pprof is served to loopback clients only: telemetry.listen is beyond loopback without authentication. Profile from the host (go tool pprof http://localhost:PORT/...), or set telemetry.web_config_file with basic_auth_users to serve it to authenticated clients",
			slog.String("listen", t.cfg.Listen))
	}
}
