package bench

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestCountersCount checks that every contender's counter handle really
// records, so that the benchmarks compare work rather than no-ops.
func TestCountersCount(t *testing.T) {
	const incs = 3
	c := newCounters(t)
	for range incs {
		c.loop.Inc()
		c.sharded.Inc()
		c.prom.Inc()
		c.victoria.Inc()
		c.otel.Add(context.Background(), 1, c.otelOpts...)
	}
	c.loop.Publish()

	var rm metricdata.ResourceMetrics
	if err := c.otelReader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	otelTotal := int64(-1)
	if len(rm.ScopeMetrics) == 1 && len(rm.ScopeMetrics[0].Metrics) == 1 {
		if sum, ok := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]); ok && len(sum.DataPoints) == 1 {
			otelTotal = sum.DataPoints[0].Value
		}
	}

	got := map[string]float64{
		"kmb-loop":        float64(c.loop.Value()),
		"kmb-sharded":     float64(c.sharded.Value()),
		"client_golang":   testutil.ToFloat64(c.prom),
		"victoriametrics": float64(c.victoria.Get()),
		"otel-sdk":        float64(otelTotal),
	}
	for name, v := range got {
		if v != incs {
			t.Errorf("%s counted %v, want %d", name, v, incs)
		}
	}
}
