package telemetry

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkMetricsRender measures one /metrics scrape (text format) with a
// per-tenant counter family of 10, 1,000 and 10,000 tenants, the Go and
// process collectors included; BenchmarkMetricsRenderOpenMetrics the same
// scrape in OpenMetrics.
//
//	go test ./telemetry -run '^$' -bench MetricsRender -benchmem -count 5
func BenchmarkMetricsRender(b *testing.B) { benchmarkMetricsRender(b, "", "") }

// BenchmarkMetricsRenderGzip is a scrape as Prometheus asks for it, gzip
// accepted.
func BenchmarkMetricsRenderGzip(b *testing.B) { benchmarkMetricsRender(b, "", "gzip") }

func BenchmarkMetricsRenderOpenMetrics(b *testing.B) {
	benchmarkMetricsRender(b, "application/openmetrics-text;version=1.0.0", "")
}

func benchmarkMetricsRender(b *testing.B, accept, encoding string) {
	for _, tenants := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("tenants=%d", tenants), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.TenantLabelCap = MaxTenantLabelCap
			tel, err := New(cfg, Options{NodeID: 1, LogOutput: &bytes.Buffer{}})
			if err != nil {
				b.Fatal(err)
			}
			vec := tel.Metrics.NewCappedLoopCounterVec("kmb_tenant_log_entries_total", "Entries per tenant.", "tenant_id", cfg.TenantLabelCap)
			for i := 0; i < tenants; i++ {
				vec.With(fmt.Sprintf("tenant-%05d", i)).Add(uint64(i))
			}
			vec.PublishDirty()
			h := tel.MetricsHandler()
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			if encoding != "" {
				req.Header.Set("Accept-Encoding", encoding)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var size int
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}
