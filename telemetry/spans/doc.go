// Package spans is the storage engine's door to tracing: it decides whether
// an operation is traced before it touches the OpenTelemetry SDK, so that an
// untraced operation costs a branch (tracing off) or a random draw (sampled
// out) instead of the SDK's span machinery.
//
// It depends only on the OpenTelemetry API, so store/ may import it. The
// decision is parent-based: a sampled parent is always followed, an unsampled
// one never; a new trace is sampled with the configured ratio. The tracer
// provider behind it should then sample everything it is asked to record
// (telemetry configures ParentBased(AlwaysSample)).
//
// Span names are the kmb.* names of the monitoring contract; see Names.
package spans
