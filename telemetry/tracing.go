package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Bounds of the span export queue. A full queue drops spans rather than
// blocking the write path.
const (
	spanQueueSize = 8192
	spanBatchSize = 512
)

func newTracerProvider(cfg Config, nodeID string, build Build, m spanQueueMetrics, logger *slog.Logger) (*sdktrace.TracerProvider, error) {
	ctx := context.Background()
	var (
		exp *otlptrace.Exporter
		err error
	)
	switch cfg.TracingProtocol {
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.TracingEndpoint))
	default:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(tracesURL(cfg.TracingEndpoint)))
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry.tracing_endpoint = %q: %w", cfg.TracingEndpoint, err)
	}
	res, err := resource.Merge(
		resource.Default(),
		resource.NewSchemaless(
			attribute.String("service.name", cfg.ServiceName),
			attribute.String("service.instance.id", nodeID),
			attribute.String("service.version", build.Version),
		),
	)
	if err != nil {
		return nil, err
	}
	return newProvider(res, newSpanQueue(exp, spanQueueSize, spanBatchSize, time.Second, m, logger)), nil
}

// newProvider builds the SDK provider. The sampling decision is taken before
// the SDK is involved (telemetry/spans), so the SDK records every span it is
// asked for, unless its parent was not sampled.
func newProvider(res *resource.Resource, p sdktrace.SpanProcessor) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithSpanProcessor(p),
	)
}

// tracesURL completes an OTLP/HTTP base URL with the traces path, as the
// OpenTelemetry exporter specification does for OTEL_EXPORTER_OTLP_ENDPOINT:
// "http://collector:4318" becomes "http://collector:4318/v1/traces". A URL
// that already has a path is used as it is.
func tracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}
