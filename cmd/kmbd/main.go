package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kmb-db/kmb/health"
	"github.com/kmb-db/kmb/status"
	"github.com/kmb-db/kmb/store/api"
	"github.com/kmb-db/kmb/store/backup"
	"github.com/kmb-db/kmb/store/node"
	"github.com/kmb-db/kmb/telemetry"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// shutdownTimeout bounds how long in-flight requests may take to drain.
const shutdownTimeout = 30 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "vopr":
			return runVOPR(ctx, args[1:], stdout, stderr)
		case "backup":
			return runBackup(ctx, args[1:], getenv, stdout, stderr)
		case "snapshot":
			return runSnapshot(ctx, args[1:], getenv, stdout, stderr)
		case "restore":
			return runRestore(ctx, args[1:], getenv, stdout, stderr)
		case "bench":
			return runBench(ctx, args[1:], getenv, stdout, stderr)
		case "token":
			return runToken(args[1:], stdout, stderr)
		case "log":
			return runLog(ctx, args[1:], stdout, stderr)
		case "audit":
			return runAudit(ctx, args[1:], stdout, stderr)
		case "cluster":
			return runCluster(ctx, args[1:], stdout, stderr)
		}
	}
	cfg, err := loadConfig(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errVersion):
		b := buildInfo()
		fmt.Fprintf(stdout, "kmbd %s (revision %s, %s)\n", b.Version, b.Revision, b.GoVersion)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "kmbd: invalid configuration: %v\n", err)
		return 2
	}
	if url := cfg.Backup.Repository; url != "" {
		// A directory that does not exist or missing credentials are
		// configuration errors too: refuse them before binding.
		if _, err := backup.OpenURL(url); err != nil {
			fmt.Fprintf(stderr, "kmbd: invalid configuration: %v\n", err)
			return 2
		}
	}
	// Unreadable keys, certificates or tokens are configuration errors
	// too.
	if _, err := openSecurity(cfg, nil); err != nil {
		fmt.Fprintf(stderr, "kmbd: invalid configuration: %v\n", err)
		return 2
	}
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "kmbd: %v\n", err)
		return 1
	}
	return 0
}

func buildInfo() status.Build {
	b := status.Build{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				b.Revision = s.Value
			}
		}
	}
	return b
}

// app is one assembled node: telemetry, the node, the API and the muxes,
// not yet bound to ports.
type app struct {
	cfg    Config
	tel    *telemetry.Telemetry
	node   *node.Node
	api    http.Handler
	telMux *http.ServeMux
	checks *health.Checker
	build  status.Build
	backup *backup.Task // nil without a repository
	sec    *security
}

func newApp(cfg Config, logOutput io.Writer) (*app, error) {
	build := buildInfo()
	tel, err := telemetry.New(cfg.Telemetry, telemetry.Options{
		NodeID:    cfg.NodeID,
		Build:     telemetry.Build{Version: build.Version, Revision: build.Revision, GoVersion: build.GoVersion},
		LogOutput: logOutput,
	})
	if err != nil {
		return nil, err
	}
	var repo backup.Backend
	var archive node.Archive
	if url := cfg.Backup.Repository; url != "" {
		if repo, err = backup.OpenURL(url); err != nil {
			return nil, err
		}
		// Reads below the local log are served from the repository.
		archive = backup.NewTiered(repo, cfg.Backup.ReadCacheBytes, backup.NewTieredMetrics(tel.Metrics))
	}
	sec, err := openSecurity(cfg, tel.Logger("kmb"))
	if err != nil {
		return nil, err
	}
	ncfg := cfg.node()
	// The backup task, built after the node, sets the floor of local
	// retention: the last op the repository holds, as the task last
	// read or wrote the manifest (on every node: standby tasks reread
	// it). Until it runs, nothing is deleted.
	var floorTask atomic.Pointer[backup.Task]
	if ncfg.RetentionFloor != nil {
		ncfg.RetentionFloor = func() (uint64, bool) {
			t := floorTask.Load()
			if t == nil {
				return 0, false
			}
			op := t.Status().CheckpointOp
			return op, op > 0
		}
	}
	ncfg.ReplicationSecurity.Secret = sec.clusterSecret
	if sec.clusterTLS != nil {
		ncfg.ReplicationSecurity.TLS = sec.clusterTLS
	}
	n, err := node.New(ncfg, node.Deps{
		Logger:         tel.Logger,
		Metrics:        tel.Metrics,
		TenantLabelCap: cfg.Telemetry.TenantLabelCap,
		Build:          build,
		Tracer:         tel.Spans,
		Archive:        archive,
	})
	if err != nil {
		return nil, err
	}
	var apiOpts []api.Option
	if sec.tokens != nil {
		apiOpts = append(apiOpts, api.WithTokens(sec.tokens))
	}
	if cfg.TLS.ClientCAFile != "" {
		apiOpts = append(apiOpts, api.WithClientCertificates())
	}
	handler, err := api.New(cfg.API, n, tel.Metrics, tel.Logger("kmb_api"), tel.Spans, apiOpts...)
	if err != nil {
		return nil, err
	}
	var task *backup.Task
	if url := cfg.Backup.Repository; url != "" {
		task = backup.NewTask(cfg.Backup.TaskConfig(), url, repo, n, tel.Metrics, tel.Logger("kmb_backup"), tel.Spans)
		floorTask.Store(task)
	}
	checks := health.New()
	checks.AddLiveness("node", n.Live)
	checks.AddReadiness("node", n.Ready)
	telMux := http.NewServeMux()
	tel.Mount(telMux)
	checks.Mount(telMux)
	status.Mount(telMux, func() status.Snapshot {
		s := n.Status()
		if task != nil {
			b := task.Status()
			s.Backup = &b
		}
		return s
	})
	return &app{cfg: cfg, tel: tel, node: n, api: handler, telMux: telMux, checks: checks, build: build, backup: task, sec: sec}, nil
}

func serve(ctx context.Context, cfg Config, stderr io.Writer) error {
	s, err := startServer(cfg, stderr)
	if err != nil {
		return err
	}
	logger := s.tel.Logger("kmb")
	logger.Info("kmbd starting",
		slog.Uint64("node_id", cfg.NodeID),
		slog.String("version", s.build.Version),
		slog.String("data_dir", cfg.DataDir),
		slog.String("api_listen", s.apiAddr),
		slog.String("telemetry_listen", s.telAddr),
		slog.String("api_url", s.apiURL()),
		slog.String("telemetry_url", s.tel.Scheme()+"://"+s.telAddr),
		slog.Bool("api_auth", s.sec.tokens != nil || cfg.TLS.ClientCAFile != ""),
		slog.String("replication_security", cfg.replicationSecurity()),
		slog.Bool("tracing_enabled", cfg.Telemetry.TracingEnabled),
		slog.Bool("pprof_enabled", cfg.Telemetry.PprofEnabled))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var failure error
wait:
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutdown requested", slog.String("signal", "SIGINT/SIGTERM"))
			break wait
		case err := <-s.runErr:
			s.ranOut(err)
			failure = fmt.Errorf("node stopped: %w", err)
			break wait
		case err := <-s.serveErr:
			failure = fmt.Errorf("http server: %w", err)
			break wait
		case <-hup:
			s.reload(logger)
		}
	}

	drainCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.drain(drainCtx); err != nil {
		logger.Warn("client API did not drain in time", slog.String("error", err.Error()))
	}
	if err := s.stopNode(); err != nil && failure == nil {
		failure = fmt.Errorf("node: %w", err)
	}
	if err := s.flush(drainCtx); err != nil {
		logger.Warn("telemetry flush failed", slog.String("error", err.Error()))
	}
	if failure != nil {
		logger.Error("kmbd stopped on failure", slog.String("error", failure.Error()))
		return failure
	}
	logger.Info("kmbd stopped")
	return nil
}
