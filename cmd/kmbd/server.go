package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// server is an app bound to its listeners and running: both HTTP
// servers, the node's event loop and, with a repository, its backup task.
// kmbd runs one; kmbd bench runs one per node of its in-process cluster.
type server struct {
	*app
	apiAddr, telAddr string // the bound addresses, host:port
	apiSrv, telSrv   *http.Server
	serveErr         chan error // an HTTP server stopped serving
	runErr           chan error // the node's Run returned
	runDone          bool       // runErr was received; runResult holds it
	runResult        error
	stopBackup       func() // stops the backup task and waits for it
}

// startServer binds cfg's listeners before doing any work, so that a
// taken port fails fast, then assembles the app (logging to logOutput)
// and starts everything. An empty api.advertise becomes the bound API
// address.
func startServer(cfg Config, logOutput io.Writer) (*server, error) {
	telLn, err := net.Listen("tcp", cfg.Telemetry.Listen)
	if err != nil {
		return nil, fmt.Errorf("telemetry.listen %q: %w", cfg.Telemetry.Listen, err)
	}
	apiLn, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		telLn.Close()
		return nil, fmt.Errorf("api.listen %q: %w", cfg.API.Listen, err)
	}
	if cfg.API.Advertise == "" {
		cfg.API.Advertise = apiLn.Addr().String()
	}
	a, err := newApp(cfg, logOutput)
	if err != nil {
		telLn.Close()
		apiLn.Close()
		return nil, err
	}
	errorLog := slog.NewLogLogger(a.tel.Logger("kmb_http").Handler(), slog.LevelWarn)
	s := &server{
		app:      a,
		apiAddr:  apiLn.Addr().String(),
		telAddr:  telLn.Addr().String(),
		apiSrv:   newHTTPServer(a.api, errorLog, apiLimits(cfg)),
		telSrv:   newHTTPServer(a.telMux, errorLog, telemetryLimits),
		serveErr: make(chan error, 2),
		runErr:   make(chan error, 1),
	}
	// The caps count connections from accept to close, TLS handshakes
	// included; more wait in the kernel's accept queue.
	apiLn = netutil.LimitListener(apiLn, cfg.API.MaxConnections)
	if a.sec.apiTLS != nil {
		apiLn = tls.NewListener(apiLn, a.sec.apiTLS.ServerConfig(cfg.apiClientAuth()))
	}
	telLn = netutil.LimitListener(telLn, maxTelemetryConnections)
	go func() { s.serveErr <- a.tel.Serve(telLn, s.telSrv) }()
	go func() { s.serveErr <- s.apiSrv.Serve(apiLn) }()
	go func() { s.runErr <- a.node.Run() }()
	s.stopBackup = func() {}
	if a.backup != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); a.backup.Run(ctx) }()
		s.stopBackup = func() { cancel(); <-done }
	}
	return s, nil
}

// httpLimits bound what one client of an HTTP server may hold.
type httpLimits struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
}

// telemetryLimits suit scrapes and probes; pprof's long profiles extend
// their own write deadline.
var telemetryLimits = httpLimits{readHeader: 10 * time.Second, read: 30 * time.Second, write: 30 * time.Second, idle: 2 * time.Minute, maxHeaderBytes: 64 << 10}

// maxTelemetryConnections caps the telemetry endpoint's connections: a few
// Prometheus servers, probes and profilers.
const maxTelemetryConnections = 256

// apiLimits: a body of up to api.max_body_bytes must arrive within a
// minute, and an answer may wait for api.write_timeout_ms plus the time to
// write it.
func apiLimits(cfg Config) httpLimits {
	return httpLimits{
		readHeader:     10 * time.Second,
		read:           time.Minute,
		write:          time.Duration(cfg.API.WriteTimeoutMillis)*time.Millisecond + 30*time.Second,
		idle:           2 * time.Minute,
		maxHeaderBytes: 64 << 10,
	}
}

func newHTTPServer(h http.Handler, errorLog *log.Logger, l httpLimits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    l.maxHeaderBytes,
		ErrorLog:          errorLog,
	}
}

// ranOut records that the node's Run returned err, received from runErr
// by a caller watching it.
func (s *server) ranOut(err error) { s.runDone, s.runResult = true, err }

// Shutting down goes in dependency order, in three steps that a cluster
// takes node by node: drain stops taking traffic and finishes what was
// accepted; stopNode stops the backup task (what it stored is in the
// manifest, and the next leader goes on from there), then the node, which
// makes everything durable; flush flushes telemetry and then stops
// answering probes and scrapes.

func (s *server) drain(ctx context.Context) error {
	s.checks.BeginShutdown()
	return s.apiSrv.Shutdown(ctx)
}

// stopNode returns the error the node's Run returned.
func (s *server) stopNode() error {
	s.stopBackup()
	s.node.Stop()
	if !s.runDone {
		s.ranOut(<-s.runErr)
	}
	return s.runResult
}

func (s *server) flush(ctx context.Context) error {
	err := s.tel.Shutdown(ctx)
	_ = s.telSrv.Shutdown(ctx)
	return err
}
