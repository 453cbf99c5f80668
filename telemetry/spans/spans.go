package spans

import (
	"context"
	"math"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The span names kmbd emits.
const (
	Write      = "kmb.write"             // a client append: Prepare → Commit → Apply
	Query      = "kmb.query"             // a client read
	Prepare    = "kmb.consensus.prepare" // replicating ops: on the leader until a quorum holds them, on a follower while it persists them
	Commit     = "kmb.consensus.commit"  // applying committed ops and answering the writer
	Repair     = "kmb.repair"            // serving or requesting missing log ops
	ViewChange = "kmb.view_change"       // from a view change's start to the replica's return to normal
	// Backup spans: always started when tracing is on (they are rare).
	BackupFlush  = "kmb.backup.flush"  // the backup task storing one segment and the manifest
	Snapshot     = "kmb.snapshot"      // taking a snapshot (and applying retention)
	Restore      = "kmb.restore"       // a restore run
	BackupVerify = "kmb.backup.verify" // a verify run
	ServiceName  = "kmbd"
)

// Names lists every span name, for documentation checks.
var Names = []string{Write, Query, Prepare, Commit, Repair, ViewChange, BackupFlush, Snapshot, Restore, BackupVerify}

// Attribute keys of kmbd's spans, besides OpenTelemetry's semantic
// conventions (http.request.method, url.path, http.response.status_code).
const (
	AttrNodeID       = attribute.Key("kmb.node_id")
	AttrView         = attribute.Key("kmb.view")
	AttrOpNumber     = attribute.Key("kmb.op_number")
	AttrOpNumberLast = attribute.Key("kmb.op_number.last")
	AttrCommitNumber = attribute.Key("kmb.commit_number")
	AttrPeer         = attribute.Key("kmb.peer")
	AttrLeader       = attribute.Key("kmb.leader")
	AttrTenant       = attribute.Key("kmb.tenant")
	AttrBatchEntries = attribute.Key("kmb.batch.entries")
	// Backup spans.
	AttrStoredBytes     = attribute.Key("kmb.backup.stored_bytes") // compressed bytes written
	AttrProblems        = attribute.Key("kmb.backup.problems")     // problems a verify run found
	AttrSnapshotCreated = attribute.Key("kmb.snapshot.created")    // false when the newest snapshot was already current
	AttrRestoreTarget   = attribute.Key("kmb.restore.target")      // "latest", "position N" or "time T"
)

// AttributeKeys lists the kmb.* attribute keys, for documentation checks.
var AttributeKeys = []attribute.Key{AttrNodeID, AttrView, AttrOpNumber, AttrOpNumberLast, AttrCommitNumber, AttrPeer, AttrLeader, AttrTenant, AttrBatchEntries,
	AttrStoredBytes, AttrProblems, AttrSnapshotCreated, AttrRestoreTarget}

// Tracer starts spans for sampled operations only.
type Tracer struct {
	enabled   bool
	threshold uint64 // a new trace is sampled when a random uint64 < threshold
	tracer    trace.Tracer
}

// noopSpan is boxed once: returning a fresh noop.Span would allocate.
var noopSpan trace.Span = noop.Span{}

// New returns a tracer over tp. When enabled is false every Start returns the
// context unchanged and a no-op span. ratio is clamped to 0..1.
func New(tp trace.TracerProvider, enabled bool, ratio float64) *Tracer {
	t := &Tracer{enabled: enabled && tp != nil}
	if !t.enabled {
		return t
	}
	t.tracer = tp.Tracer("github.com/kmb-db/kmb")
	switch {
	case ratio >= 1:
		t.threshold = math.MaxUint64
	case ratio > 0:
		t.threshold = uint64(ratio * float64(math.MaxUint64))
	}
	return t
}

// Disabled is a tracer that never traces.
func Disabled() *Tracer { return &Tracer{} }

// Enabled reports whether any span can be started.
func (t *Tracer) Enabled() bool { return t != nil && t.enabled }

// Start starts a span when the operation is sampled: always under a sampled
// parent, with the configured ratio for a new trace. Otherwise it returns
// ctx and a no-op span, without allocating. Start is small enough to be
// inlined into the caller, so that with tracing off a span site costs a
// branch and the no-op span's End; it is written the way the inliner
// charges least for (the named results).
func (t *Tracer) Start(ctx context.Context, name string, kind trace.SpanKind) (out context.Context, span trace.Span) {
	if t != nil && t.enabled {
		out, span = t.start(ctx, name, kind)
		return
	}
	return ctx, noopSpan
}

// noParent is what trace.SpanFromContext returns for a context that holds
// no span. Comparing with it spares the common case, an operation with no
// parent, the SpanContext call and its copy.
var noParent = trace.SpanFromContext(context.Background())

func (t *Tracer) start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if s := trace.SpanFromContext(ctx); s != noParent {
		if parent := s.SpanContext(); parent.IsValid() {
			if !parent.IsSampled() {
				return ctx, noopSpan
			}
			return t.tracer.Start(ctx, name, trace.WithSpanKind(kind))
		}
	}
	if t.threshold != math.MaxUint64 && rand.Uint64() >= t.threshold {
		return ctx, noopSpan
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// StartAlways starts a span whenever tracing is on, regardless of the
// ratio: for rare operations worth always seeing (view changes).
func (t *Tracer) StartAlways(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil || !t.enabled {
		return ctx, noopSpan
	}
	return t.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

var propagator = propagation.TraceContext{}

// Inject returns the W3C traceparent of the span in ctx, "" when there is
// no sampled span.
func Inject(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsSampled() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	propagator.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// Extract returns ctx carrying the remote span context of a W3C
// traceparent; ctx unchanged when traceparent is empty or malformed.
func Extract(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// ExtractHTTP returns ctx carrying the remote span context of the request's
// traceparent (and tracestate) headers. A request without a traceparent,
// the usual case, costs a map lookup: the header is looked up under its
// canonical name, which the propagator would build anew for every request.
func ExtractHTTP(ctx context.Context, header propagation.TextMapCarrier) context.Context {
	if h, ok := header.(propagation.HeaderCarrier); ok {
		if _, found := h[traceparentHeader]; !found {
			return ctx
		}
	}
	return propagator.Extract(ctx, header)
}

// traceparentHeader is the canonical form of the W3C traceparent header's
// name, as net/http stores it.
const traceparentHeader = "Traceparent"
