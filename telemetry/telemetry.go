package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/kmb-db/kmb/profiling"
	"github.com/kmb-db/kmb/telemetry/logging"
	"github.com/kmb-db/kmb/telemetry/metric"
	"github.com/kmb-db/kmb/telemetry/spans"
)

// Build identifies the running binary; it becomes kmb_build_info's labels.
type Build struct {
	Version, Revision, GoVersion string
}

// Options carries what New needs besides Config: who this node is and where
// its logs go.
type Options struct {
	// NodeID becomes the node_id label of every kmb_* series.
	NodeID uint64
	Build  Build
	// LogOutput receives log lines; os.Stderr when nil.
	LogOutput io.Writer
}

// Telemetry is one node's observability stack.
type Telemetry struct {
	cfg Config

	// Metrics is where the node's components register their kmb_* families.
	Metrics *metric.Registry
	// Registry is the Prometheus registry /metrics serves: the kmb_*
	// families, the Go runtime and the process collectors. (For the text
	// formats, /metrics writes the kmb_* families itself, with the same
	// output; see MetricsHandler.)
	Registry *prometheus.Registry
	// runtime holds only the Go runtime and process collectors.
	runtime     *prometheus.Registry
	constLabels prometheus.Labels
	// Logger is the root logger; use Logger(module) for a module's logger.
	logger *slog.Logger
	// TracerProvider is a no-op provider when tracing is disabled.
	TracerProvider trace.TracerProvider
	// Spans decides what to trace and starts kmb.* spans; hand it to the
	// store.
	Spans *spans.Tracer

	shutdownTracing func(context.Context) error
	web             WebConfig // of cfg.WebConfigFile
}

// New builds the telemetry stack for cfg, which must be valid.
func New(cfg Config, opts Options) (*Telemetry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	def, _ := logging.ParseLevel(cfg.LogLevel)
	levels, err := logging.ParseLevels(cfg.LogModules, def)
	if err != nil {
		return nil, fmt.Errorf("telemetry.log_modules: %w", err)
	}
	out := opts.LogOutput
	if out == nil {
		out = os.Stderr
	}
	handler, err := logging.NewHandler(out, logging.Options{Format: cfg.LogFormat, Levels: levels, DefaultTarget: "kmb"})
	if err != nil {
		return nil, err
	}

	t := &Telemetry{
		cfg:            cfg,
		Metrics:        metric.NewRegistry(),
		Registry:       prometheus.NewRegistry(),
		runtime:        prometheus.NewRegistry(),
		logger:         slog.New(handler),
		TracerProvider: noop.NewTracerProvider(),
		shutdownTracing: func(context.Context) error {
			return nil
		},
	}
	nodeID := strconv.FormatUint(opts.NodeID, 10)
	t.constLabels = prometheus.Labels{"node_id": nodeID}
	t.Metrics.NewGaugeVecFunc("kmb_build_info",
		"Always 1; the labels identify the running kmbd build.",
		[]string{"version", "revision", "goversion"},
		func(emit func(float64, ...string)) {
			emit(1, opts.Build.Version, opts.Build.Revision, opts.Build.GoVersion)
		})
	goCollector := collectors.NewGoCollector()
	processCollector := collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	if err := errors.Join(
		t.Registry.Register(newBridge(t.Metrics, t.constLabels)),
		t.Registry.Register(goCollector),
		t.Registry.Register(processCollector),
		t.runtime.Register(goCollector),
		t.runtime.Register(processCollector),
	); err != nil {
		return nil, err
	}
	if cfg.WebConfigFile != "" {
		if t.web, err = ValidateWebConfig(cfg.WebConfigFile); err != nil {
			return nil, err
		}
	}
	queueMetrics := newSpanQueueMetrics(t.Metrics)
	t.Spans = spans.Disabled()
	if cfg.TracingEnabled {
		tp, err := newTracerProvider(cfg, nodeID, opts.Build, queueMetrics, t.Logger("kmb_telemetry"))
		if err != nil {
			return nil, err
		}
		t.TracerProvider = tp
		t.shutdownTracing = tp.Shutdown
		t.Spans = spans.New(tp, true, cfg.TracingSampleRatio)
	}
	return t, nil
}

// Config returns the configuration t was built from.
func (t *Telemetry) Config() Config { return t.cfg }

// Logger returns the logger of module (for example "kmb_storage"), filtered
// at the level KMB_LOG gives that module.
func (t *Telemetry) Logger(module string) *slog.Logger {
	return logging.ForModule(t.logger, module)
}

// Tracer returns a tracer of the node's provider.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// MetricsHandler serves the Prometheus registry, in the OpenMetrics format
// when the scraper asks for it. In the Prometheus text and OpenMetrics
// formats it writes the kmb_* families straight from Metrics, which is
// much cheaper than a client_golang metric per series for thousands of
// tenant series, and adds the Go runtime and process families; the output
// is promhttp's. Other formats (protobuf) are served by promhttp.
func (t *Telemetry) MetricsHandler() http.Handler {
	errorLog := slog.NewLogLogger(t.Logger("kmb_telemetry").Handler(), slog.LevelError)
	fallback := promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          errorLog,
		ErrorHandling:     promhttp.ContinueOnError,
	})
	return newMetricsHandler(t.Metrics, t.constLabels, t.runtime, fallback, errorLog)
}

// Mount registers /metrics and, when enabled, /debug/pprof/* on mux.
func (t *Telemetry) Mount(mux *http.ServeMux) {
	mux.Handle("GET /metrics", t.MetricsHandler())
	p := t.cfg.profiling()
	p.LoopbackOnly = t.pprofLoopbackOnly()
	profiling.Mount(mux, p)
	t.warnPprof()
}

// Shutdown flushes buffered spans. It is safe to call more than once.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return t.shutdownTracing(ctx)
}
