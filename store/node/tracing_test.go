package node

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kmb-db/kmb/telemetry/spans"
)

func spansNamed(exp *tracetest.InMemoryExporter, name string, traceID trace.TraceID) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name && (!traceID.IsValid() || s.SpanContext.TraceID() == traceID) {
			out = append(out, s)
		}
	}
	return out
}

func intAttr(s tracetest.SpanStub, key string) (int64, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.AsInt64(), true
		}
	}
	return 0, false
}

// One traced write is one trace: the leader's prepare and commit spans under
// the writer's span, and the followers' prepare spans under the leader's,
// carried inside the replication messages. A view change is traced too.
func TestTracingAcrossReplicas(t *testing.T) {
	exporters := map[uint64]*tracetest.InMemoryExporter{}
	nodes, leader := startClusterWith(t, func(id uint64, d *Deps) {
		exp := tracetest.NewInMemoryExporter()
		exporters[id] = exp
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(exp)))
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		d.Tracer = spans.New(tp, true, 0) // ratio 0: only sampled parents are traced
	})

	// An untraced write (ratio 0, no parent) produces no span at all.
	if _, err := leader.Append(context.Background(), Write{Tenant: "acme", Entries: entries("quiet", "1")}); err != nil {
		t.Fatal(err)
	}

	writer := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), writer)
	res, err := leader.Append(ctx, Write{Tenant: "acme", Entries: entries("traced", "1")})
	if err != nil {
		t.Fatal(err)
	}

	lexp := exporters[leader.cfg.NodeID]
	prep := spansNamed(lexp, spans.Prepare, writer.TraceID())
	if len(prep) != 1 || prep[0].Parent.SpanID() != writer.SpanID() {
		t.Fatalf("leader prepare spans %+v", prep)
	}
	if op, _ := intAttr(prep[0], "kmb.op_number"); uint64(op) != res.CommitNumber {
		t.Fatalf("prepare span op %d, write committed op %d", op, res.CommitNumber)
	}
	commit := spansNamed(lexp, spans.Commit, writer.TraceID())
	if len(commit) != 1 || commit[0].Parent.SpanID() != writer.SpanID() {
		t.Fatalf("leader commit spans %+v", commit)
	}
	// Followers join the trace, under the leader's prepare span.
	deadline := time.Now().Add(10 * time.Second)
	for {
		joined := 0
		for id, exp := range exporters {
			if id == leader.cfg.NodeID {
				continue
			}
			for _, s := range spansNamed(exp, spans.Prepare, writer.TraceID()) {
				if s.Parent.SpanID() == prep[0].SpanContext.SpanID() && s.Parent.IsRemote() {
					joined++
				}
			}
		}
		if joined >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no follower prepare span joined the write's trace")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for id, exp := range exporters {
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() != writer.TraceID() && s.Name != spans.ViewChange && s.Name != spans.Repair {
				t.Errorf("node %d traced an unsampled operation: %s", id, s.Name)
			}
		}
	}

	// A follower that was down repairs its log from the leader, traced.
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	follower.Stop()
	for i := 0; i < 5; i++ {
		if _, err := leader.Append(context.Background(), Write{Tenant: "acme", Entries: entries("while-down", "1")}); err != nil {
			t.Fatal(err)
		}
	}
	back, err := New(follower.cfg, Deps{Tracer: follower.tracer})
	if err != nil {
		t.Fatal(err)
	}
	go back.Run()
	t.Cleanup(back.Stop)
	deadline = time.Now().Add(20 * time.Second)
	for len(spansNamed(lexp, spans.Repair, trace.TraceID{})) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no kmb.repair span on the leader after a follower restarted behind")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep := spansNamed(lexp, spans.Repair, trace.TraceID{})[0]
	if peer, _ := intAttr(rep, "kmb.peer"); uint64(peer) != follower.cfg.NodeID {
		t.Fatalf("kmb.repair peer %d, want %d", peer, follower.cfg.NodeID)
	}

	// Stopping the leader makes the others change view, traced.
	leader.Stop()
	deadline = time.Now().Add(20 * time.Second)
	for {
		found := false
		for id, exp := range exporters {
			if id == leader.cfg.NodeID {
				continue
			}
			for _, s := range spansNamed(exp, spans.ViewChange, trace.TraceID{}) {
				if v, _ := intAttr(s, "kmb.view"); v >= 1 {
					found = true
				}
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no kmb.view_change span after the leader stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = nodes
}
