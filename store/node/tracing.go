package node

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kmb-db/kmb/store/vsr"
	"github.com/kmb-db/kmb/store/wire"
	"github.com/kmb-db/kmb/telemetry/spans"
)

// tracing holds the spans the event loop has open. Everything here is
// loop-owned; with tracing off or nothing sampled it stays empty and costs a
// length check per Ready.
type tracing struct {
	// traceparent of the leader's prepare span, by op number, until the
	// Prepare carrying the op is sent.
	parentByOp map[uint64]string
	// Followers' prepare spans, ended once the ops they cover are durable
	// and acknowledged (after the Ready that persisted them).
	followerPrepares []trace.Span
	// Repairs being served, ended once the answer is sent.
	repairs []trace.Span
	// The view change in progress.
	viewChange    trace.Span
	viewChangeCtx context.Context
}

func (t *tracing) init() {
	t.parentByOp = map[uint64]string{}
	t.viewChangeCtx = context.Background()
}

// startPrepare opens the leader's prepare span of a sampled write and
// remembers its context for the Prepare that carries the op.
func (n *Node) startPrepare(req *request) {
	if !req.span.IsSampled() {
		return
	}
	ctx := trace.ContextWithSpanContext(context.Background(), req.span)
	_, span := n.tracer.Start(ctx, spans.Prepare, trace.SpanKindInternal)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(spans.AttrNodeID.Int64(int64(n.cfg.NodeID)), spans.AttrOpNumber.Int64(int64(req.op)),
		spans.AttrTenant.String(req.tenant), spans.AttrBatchEntries.Int(len(req.entries)),
		spans.AttrView.Int64(int64(n.rep.State().View)))
	req.prepare = span
	if len(n.ids) > 1 {
		n.traces.parentByOp[req.op] = spans.Inject(trace.ContextWithSpan(ctx, span))
	}
}

// stampMessages gives each outgoing Prepare the trace context of the first
// sampled op it carries, so the followers' spans join that write's trace.
func (n *Node) stampMessages(msgs []wire.Message) {
	if len(n.traces.parentByOp) == 0 {
		return
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Type != wire.TypePrepare {
			continue
		}
		for _, op := range m.Ops {
			if tp, ok := n.traces.parentByOp[op.Op]; ok {
				m.TraceParent = tp
				break
			}
		}
	}
	// Each op is prepared once per peer in the same Ready; afterwards its
	// context is no longer needed (repairs are traced separately).
	clear(n.traces.parentByOp)
}

// stepTraced feeds a message to the replica, opening the spans it starts.
func (n *Node) stepTraced(m wire.Message) {
	if n.tracer.Enabled() {
		switch {
		case m.Type == wire.TypePrepare && m.TraceParent != "" && len(m.Ops) > 0:
			ctx := spans.Extract(context.Background(), m.TraceParent)
			_, span := n.tracer.Start(ctx, spans.Prepare, trace.SpanKindServer)
			if span.IsRecording() {
				span.SetAttributes(spans.AttrNodeID.Int64(int64(n.cfg.NodeID)), spans.AttrPeer.Int64(int64(m.From)),
					spans.AttrView.Int64(int64(m.View)), spans.AttrOpNumber.Int64(int64(m.Ops[0].Op)),
					spans.AttrOpNumberLast.Int64(int64(m.Ops[len(m.Ops)-1].Op)))
				n.traces.followerPrepares = append(n.traces.followerPrepares, span)
			}
		case m.Type == wire.TypeGetOps:
			// Repairs are rare and telling: traced whatever the ratio.
			_, span := n.tracer.StartAlways(context.Background(), spans.Repair)
			if span.IsRecording() {
				span.SetAttributes(spans.AttrNodeID.Int64(int64(n.cfg.NodeID)), spans.AttrPeer.Int64(int64(m.From)),
					spans.AttrView.Int64(int64(m.View)), spans.AttrOpNumber.Int64(int64(m.Op)))
				n.traces.repairs = append(n.traces.repairs, span)
			}
		}
	}
	for i, op := range m.Ops {
		if i < len(m.Raw) {
			n.received[op] = m.Raw[i]
		}
	}
	n.rep.Step(m)
}

// endStepSpans ends the spans of messages whose Ready was handled.
func (n *Node) endStepSpans() {
	for _, s := range n.traces.followerPrepares {
		s.End()
	}
	for _, s := range n.traces.repairs {
		s.End()
	}
	n.traces.followerPrepares = n.traces.followerPrepares[:0]
	n.traces.repairs = n.traces.repairs[:0]
}

// traceEvent follows view changes with a span from start to completion.
func (n *Node) traceEvent(e vsr.Event) {
	switch e.Kind {
	case vsr.EventViewChangeStarted:
		if n.traces.viewChange != nil {
			n.traces.viewChange.SetStatus(codes.Error, "superseded by a later view change")
			n.traces.viewChange.End()
		}
		ctx, span := n.tracer.StartAlways(context.Background(), spans.ViewChange,
			spans.AttrNodeID.Int64(int64(n.cfg.NodeID)), spans.AttrView.Int64(int64(e.View)), spans.AttrLeader.Int64(int64(e.Primary)))
		if span.IsRecording() {
			n.traces.viewChange, n.traces.viewChangeCtx = span, ctx
		}
	case vsr.EventViewStarted:
		if s := n.traces.viewChange; s != nil {
			s.SetAttributes(spans.AttrView.Int64(int64(e.View)), spans.AttrLeader.Int64(int64(e.Primary)),
				spans.AttrOpNumber.Int64(int64(e.Op)), spans.AttrCommitNumber.Int64(int64(e.Commit)))
			s.End()
			n.traces.viewChange, n.traces.viewChangeCtx = nil, context.Background()
		}
	}
}

// commitSpan ends a write's prepare span and opens its commit span, ended
// once the writer is answered.
func (n *Node) commitSpan(req *request) trace.Span {
	if req.prepare == nil {
		return nil
	}
	req.prepare.End()
	ctx := trace.ContextWithSpanContext(context.Background(), req.span)
	_, span := n.tracer.Start(ctx, spans.Commit, trace.SpanKindInternal)
	if !span.IsRecording() {
		return nil
	}
	span.SetAttributes(spans.AttrNodeID.Int64(int64(n.cfg.NodeID)), spans.AttrOpNumber.Int64(int64(req.op)))
	return span
}

// endPrepare ends a prepare span of a write that did not commit here.
func endPrepare(req *request, reason string) {
	if req.prepare != nil {
		req.prepare.SetStatus(codes.Error, reason)
		req.prepare.End()
		req.prepare = nil
	}
}
