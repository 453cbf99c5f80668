package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// spanQueue is a span processor with a bounded queue that never blocks the
// code ending a span: when the exporter falls behind, spans are dropped and
// counted (kmb_tracing_spans_dropped_total) instead. One goroutine exports
// batches every second or whenever a batch fills.
type spanQueue struct {
	exp       sdktrace.SpanExporter
	queue     chan sdktrace.ReadOnlySpan
	batchSize int
	interval  time.Duration
	logger    *slog.Logger

	exported, dropped, failed *metric.Counter

	flush    chan chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

type spanQueueMetrics struct {
	exported, dropped, failed *metric.Counter
}

func newSpanQueueMetrics(r *metric.Registry) spanQueueMetrics {
	return spanQueueMetrics{
		exported: r.NewCounter("kmb_tracing_spans_exported_total", "Spans handed to the OTLP exporter successfully."),
		dropped:  r.NewCounter("kmb_tracing_spans_dropped_total", "Spans dropped because the export queue was full; the write path never waits for the exporter."),
		failed:   r.NewCounter("kmb_tracing_export_failures_total", "Span batches the OTLP exporter failed to deliver."),
	}
}

func newSpanQueue(exp sdktrace.SpanExporter, size, batch int, interval time.Duration, m spanQueueMetrics, logger *slog.Logger) *spanQueue {
	q := &spanQueue{
		exp: exp, queue: make(chan sdktrace.ReadOnlySpan, size), batchSize: batch, interval: interval, logger: logger,
		exported: m.exported, dropped: m.dropped, failed: m.failed,
		flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go q.run()
	return q
}

func (q *spanQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *spanQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case q.queue <- s:
	default:
		q.dropped.Inc()
	}
}

func (q *spanQueue) run() {
	defer close(q.done)
	ticker := time.NewTicker(q.interval)
	defer ticker.Stop()
	batch := make([]sdktrace.ReadOnlySpan, 0, q.batchSize)
	export := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := q.exp.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			q.failed.Inc()
			q.logger.Warn("span export failed", slog.Int("spans", len(batch)), slog.String("error", err.Error()))
		} else {
			q.exported.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	drain := func() {
		for {
			select {
			case s := <-q.queue:
				batch = append(batch, s)
				if len(batch) == q.batchSize {
					export()
				}
			default:
				export()
				return
			}
		}
	}
	for {
		select {
		case s := <-q.queue:
			batch = append(batch, s)
			if len(batch) == q.batchSize {
				export()
			}
		case <-ticker.C:
			export()
		case ack := <-q.flush:
			drain()
			close(ack)
		case <-q.stop:
			drain()
			return
		}
	}
}

// ForceFlush exports everything queued.
func (q *spanQueue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued and shuts the exporter down.
func (q *spanQueue) Shutdown(ctx context.Context) error {
	q.stopOnce.Do(func() { close(q.stop) })
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.exp.Shutdown(ctx)
}
