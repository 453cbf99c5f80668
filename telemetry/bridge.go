package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// bridge exports a metric.Registry through client_golang. It is an unchecked
// collector (Describe sends nothing) because families such as the per-tenant
// counters gain series at run time; the registry itself guarantees unique
// family names.
type bridge struct {
	reg         *metric.Registry
	constLabels prometheus.Labels

	mu    sync.Mutex
	descs map[string]*prometheus.Desc // by family name; families never change shape
}

func newBridge(reg *metric.Registry, constLabels prometheus.Labels) *bridge {
	return &bridge{reg: reg, constLabels: constLabels, descs: map[string]*prometheus.Desc{}}
}

func (b *bridge) Describe(chan<- *prometheus.Desc) {}

func (b *bridge) Collect(ch chan<- prometheus.Metric) {
	for _, f := range b.reg.Gather() {
		desc := b.desc(&f)
		for _, s := range f.Series {
			switch f.Kind {
			case metric.KindCounter:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, s.Value, s.LabelValues...)
			case metric.KindGauge:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, s.Value, s.LabelValues...)
			case metric.KindHistogram:
				h := s.Histogram
				buckets := make(map[float64]uint64, len(h.Upper))
				for i, le := range h.Upper {
					buckets[le] = h.Counts[i]
				}
				m := prometheus.MustNewConstHistogram(desc, h.Count, h.Sum, buckets, s.LabelValues...)
				if len(h.Exemplars) > 0 {
					m = withExemplars(m, h.Exemplars)
				}
				ch <- m
			}
		}
	}
}

func (b *bridge) desc(f *metric.Family) *prometheus.Desc {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.descs[f.Name]
	if !ok {
		d = prometheus.NewDesc(f.Name, f.Help, f.LabelNames, b.constLabels)
		b.descs[f.Name] = d
	}
	return d
}

// withExemplars attaches trace exemplars to a histogram; they are served in
// the OpenMetrics format, where a dashboard can follow them to the trace.
func withExemplars(m prometheus.Metric, es []metric.Exemplar) prometheus.Metric {
	pes := make([]prometheus.Exemplar, len(es))
	for i, e := range es {
		pes[i] = prometheus.Exemplar{Value: e.Value, Labels: prometheus.Labels{"trace_id": e.TraceID}, Timestamp: e.Time}
	}
	withEx, err := prometheus.NewMetricWithExemplars(m, pes...)
	if err != nil {
		return m // a malformed exemplar never costs the histogram itself
	}
	return withEx
}
