package telemetry

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// oddValues are label values that need escaping or are otherwise unusual.
var oddValues = []string{
	``, `plain`, `with "quotes"`, `back\slash`, "new\nline", `trailing\`, `\"`,
	"ünïcødé ✓ 日本", "tab\there", "{a=\"b\"}", "#comment", "",
}

// everyKind registers a family of every kind and shape the encoder meets.
func everyKind(t testing.TB) *metric.Registry {
	reg := metric.NewRegistry()
	reg.NewCounter("kmb_plain_total", "A counter.").Add(42)
	reg.NewCounter("kmb_zero_total", "A counter at zero.")
	reg.NewCounterFunc("kmb_no_suffix", "A counter without the _total suffix.", func() float64 { return 1234567 })
	reg.NewCounterFunc("kmb_big_total", "A large counter.", func() float64 { return 1 << 62 })
	reg.NewGauge("kmb_gauge", `HELP with a backslash \ a "quote" and a`+"\nnewline.").Set(-17)
	reg.NewGauge("kmb_empty_help", "").Set(1)
	for name, v := range map[string]float64{
		"kmb_nan": math.NaN(), "kmb_pos_inf": math.Inf(1), "kmb_neg_inf": math.Inf(-1),
		"kmb_neg_zero": math.Copysign(0, -1), "kmb_minus_one": -1, "kmb_tiny": 1e-7,
		"kmb_fraction": 0.1 + 0.2, "kmb_huge": 1e300, "kmb_int": 100000, "kmb_seven_digits": 1e6,
	} {
		reg.NewGaugeFunc(name, "Gauge "+name+".", func() float64 { return v })
	}
	reg.NewCounterVec("kmb_empty_vec_total", "A vec without children.", "x")
	cv := reg.NewCounterVec("kmb_requests_total", "Requests by route and code.", "route", "code")
	for i, route := range []string{"/b", "/a", "/c"} {
		for _, code := range []string{"500", "200"} {
			cv.With(route, code).Add(uint64(i*10 + len(code)))
		}
	}
	odd := reg.NewCounterVec("kmb_odd_total", "Odd label values.", "value")
	for i, v := range oddValues {
		odd.With(v).Add(uint64(i))
	}
	// Label names out of order, the second sorting before node_id, values
	// that sort differently by the first and by the second label.
	reg.NewGaugeVecFunc("kmb_state", "A state set.", []string{"zeta", "alpha"}, func(emit func(float64, ...string)) {
		for i, v := range oddValues[1:] {
			emit(float64(i), v, oddValues[len(oddValues)-1-i])
		}
		emit(math.NaN(), "z", "a")
		emit(math.Inf(1), "a", "z")
	})
	reg.NewGaugeVecFunc("kmb_build", "Build labels.", []string{"version", "revision", "goversion"}, func(emit func(float64, ...string)) {
		emit(1, "v1.2.3", "abc", "go1.26")
	})
	cp := reg.NewCappedLoopCounterVec("kmb_tenant_total", "Per tenant.", "tenant_id", 3)
	for _, tenant := range []string{"t2", "t1", "t3", "t4", "t5"} {
		cp.With(tenant).Add(7)
	}
	cp.PublishDirty()

	h := reg.NewHistogram("kmb_latency_seconds", "A latency histogram.", metric.HistogramOpts{Buckets: []float64{0.001, 0.01, 0.1, 1, 2.5}, Scale: 1e-9})
	h.ObserveDurationWithExemplar(500*time.Microsecond, "4bf92f3577b34da6a3ce929d0e0e4736")
	h.ObserveDurationWithExemplar(50*time.Millisecond, `odd"trace\id`)
	h.ObserveDuration(700 * time.Millisecond)
	h.ObserveDurationWithExemplar(20*time.Second, "00000000000000000000000000000001") // above every bound: an explicit +Inf bucket
	h.ObserveDurationWithExemplar(1*time.Second, "00000000000000000000000000000002")  // exactly on a bound
	reg.NewHistogram("kmb_empty_seconds", "A histogram never observed.", metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9})
	reg.NewHistogram("kmb_no_buckets", "A histogram with no buckets.", metric.HistogramOpts{Scale: 1}).Observe(3)
	sizes := reg.NewHistogram("kmb_sizes_bytes", "Sizes.", metric.HistogramOpts{Buckets: []float64{1024, 1 << 20, 1 << 30}, Scale: 1})
	for i := range 2_000_000 {
		if i%1000 == 0 {
			sizes.Observe(int64(i))
		}
	}
	sizes.Observe(1 << 40)
	hv := reg.NewHistogramVec("kmb_op_seconds", "Per operation.", metric.HistogramOpts{Buckets: []float64{0.5, 1}, Scale: 1e-9}, "op", "class")
	hv.With("write", "b").ObserveDurationWithExemplar(300*time.Millisecond, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	hv.With("read", "a").ObserveDuration(2 * time.Second)
	hv.With("read", "c").ObserveDurationWithExemplar(2*time.Second, strings.Repeat("x", 121)) // too long: no exemplar at all
	hv.With("write", "a").ObserveDurationWithExemplar(700*time.Millisecond, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	return reg
}

// runtimeLike registers deterministic client_golang metrics standing for
// the Go and process collectors, named to interleave with kmb_*.
func runtimeLike(t testing.TB, regs ...*prometheus.Registry) {
	first := prometheus.NewGauge(prometheus.GaugeOpts{Name: "a_first", Help: "Sorts before kmb_*."})
	first.Set(3.5)
	mid := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kmb_m_middle_total", Help: "Sorts among kmb_*."}, []string{"b", "a"})
	mid.WithLabelValues("x", "y").Add(2)
	mid.WithLabelValues("a", "z").Add(1)
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "go_like_seconds", Help: "A client_golang histogram.", Buckets: []float64{1, 2}})
	hist.Observe(1.5)
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: "zz_last", Help: "Sorts after kmb_*."})
	for _, r := range regs {
		for _, c := range []prometheus.Collector{first, mid, hist, last} {
			if err := r.Register(c); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// handlers returns promhttp over the bridge, as /metrics was served
// before, and the encoder, over the same registry and collectors.
func handlers(t testing.TB, reg *metric.Registry, constLabels prometheus.Labels) (old, cur http.Handler, logs *bytes.Buffer) {
	full, runtime := prometheus.NewRegistry(), prometheus.NewRegistry()
	if err := full.Register(newBridge(reg, constLabels)); err != nil {
		t.Fatal(err)
	}
	runtimeLike(t, full, runtime)
	logs = &bytes.Buffer{}
	errorLog := log.New(logs, "", 0)
	old = promhttp.HandlerFor(full, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          errorLog,
		ErrorHandling:     promhttp.ContinueOnError,
	})
	return old, newMetricsHandler(reg, constLabels, runtime, old, errorLog), logs
}

type response struct {
	code    int
	header  http.Header
	body    []byte
	rawBody []byte
}

func serve(t *testing.T, h http.Handler, target string, header http.Header) response {
	t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	req.Header = header
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := response{code: rec.Code, header: rec.Header(), rawBody: rec.Body.Bytes(), body: rec.Body.Bytes()}
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(r.rawBody))
		if err != nil {
			t.Fatal(err)
		}
		if r.body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// The encoder's exposition is promhttp's over the bridge, byte for byte, in
// every negotiated format and compression, for every kind of family.
func TestExpositionMatchesClientGolang(t *testing.T) {
	reg := everyKind(t)
	for _, constLabels := range []prometheus.Labels{{"node_id": "7"}, nil, {"node_id": "3", "a_zone": `z"1`}} {
		old, cur, _ := handlers(t, reg, constLabels)
		for _, accept := range []string{
			"",
			"text/plain;version=0.0.4",
			"text/plain; version=0.0.4; charset=utf-8; escaping=allow-utf-8",
			"text/plain;version=1.0.0",
			"*/*",
			"application/openmetrics-text;version=1.0.0",
			"application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
			"application/openmetrics-text;version=0.0.1",
			"application/openmetrics-text",
			"application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
			"application/openmetrics-text;version=2.0.0",
			"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
			"application/json",
		} {
			for _, encoding := range []string{"", "gzip", "gzip;q=0.5, identity", "identity;q=0", "br", "*"} {
				for _, target := range []string{"/metrics", "/metrics?name[]=kmb_state&name[]=zz_last&name[]=kmb_latency_seconds&name[]=nope"} {
					name := fmt.Sprintf("labels=%v/accept=%q/encoding=%q/%s", constLabels, accept, encoding, target)
					header := http.Header{}
					if accept != "" {
						header.Set("Accept", accept)
					}
					if encoding != "" {
						header.Set("Accept-Encoding", encoding)
					}
					want, got := serve(t, old, target, header), serve(t, cur, target, header)
					if got.code != want.code {
						t.Errorf("%s: status %d, want %d", name, got.code, want.code)
					}
					for _, h := range []string{"Content-Type", "Content-Encoding", "Vary"} {
						if g, w := got.header.Values(h), want.header.Values(h); fmt.Sprint(g) != fmt.Sprint(w) {
							t.Errorf("%s: %s %q, want %q", name, h, g, w)
						}
					}
					if !bytes.Equal(got.body, want.body) {
						t.Errorf("%s: body differs from client_golang's:\n%s", name, lineDiff(string(want.body), string(got.body)))
					}
				}
			}
		}
	}
}

// Parsed back, the two expositions hold the same families, and the
// encoder's OpenMetrics exposition carries the exemplars.
func TestExpositionParses(t *testing.T) {
	reg := everyKind(t)
	old, cur, _ := handlers(t, reg, prometheus.Labels{"node_id": "7"})
	parse := func(h http.Handler) map[string]*dto.MetricFamily {
		r := serve(t, h, "/metrics", http.Header{})
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
		if err != nil {
			t.Fatalf("exposition does not parse: %v\n%s", err, r.body)
		}
		return fams
	}
	want, got := parse(old), parse(cur)
	if len(got) != len(want) {
		t.Errorf("%d families, want %d", len(got), len(want))
	}
	for name, w := range want {
		if g := got[name]; !proto.Equal(g, w) {
			t.Errorf("family %s:\n got %v\nwant %v", name, g, w)
		}
	}
	if _, ok := got["kmb_empty_vec_total"]; ok {
		t.Error("a family without series is exposed")
	}

	// expfmt has no OpenMetrics parser: check the OpenMetrics exposition's
	// structure and exemplars, then compare it, sample by sample, with the
	// text exposition.
	om := serve(t, cur, "/metrics", http.Header{"Accept": {"application/openmetrics-text;version=1.0.0"}})
	text := serve(t, cur, "/metrics", http.Header{})
	body := string(om.body)
	if !strings.HasSuffix(body, "\n# EOF\n") || strings.Count(body, "# EOF") != 1 {
		t.Fatalf("OpenMetrics exposition does not end with # EOF:\n%s", body[max(0, len(body)-200):])
	}
	for _, want := range []string{
		"# TYPE kmb_plain counter\n",
		"kmb_plain_total{node_id=\"7\"} 42.0\n",
		"# TYPE kmb_no_suffix unknown\n",
		"kmb_no_suffix{node_id=\"7\"} 1.234567e+06\n",
		`kmb_latency_seconds_bucket{node_id="7",le="0.001"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.0005 `,
		`kmb_latency_seconds_bucket{node_id="7",le="0.1"} 2 # {trace_id="odd\"trace\\id"} 0.05 `,
		`kmb_latency_seconds_bucket{node_id="7",le="1.0"} 4 # {trace_id="00000000000000000000000000000002"} 1.0 `,
		`kmb_latency_seconds_bucket{node_id="7",le="+Inf"} 5 # {trace_id="00000000000000000000000000000001"} 20.0 `,
		`kmb_op_seconds_bucket{class="c",node_id="7",op="read",le="+Inf"} 1` + "\n",
		`kmb_state{alpha="#comment",node_id="7",zeta="with \"quotes\""} 1.0` + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("OpenMetrics exposition lacks %q", want)
		}
	}
	if n := strings.Count(body, `le="+Inf"`); n != strings.Count(string(text.body), `le="+Inf"`) {
		t.Errorf("%d +Inf buckets in OpenMetrics, %d in text", n, strings.Count(string(text.body), `le="+Inf"`))
	}
}

// A scrape of the Telemetry handler is promhttp's over Registry (the Go and
// process collectors' values aside, which move between scrapes).
func TestMetricsHandlerMatchesRegistry(t *testing.T) {
	tel, err := New(DefaultConfig(), Options{NodeID: 9, Build: Build{Version: "v1", Revision: "r", GoVersion: "go"}, LogOutput: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	tel.Metrics.NewCounter("kmb_x_total", "X.").Add(2)
	old := promhttp.HandlerFor(tel.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
	for _, accept := range []string{"", "application/openmetrics-text;version=1.0.0"} {
		header := http.Header{}
		if accept != "" {
			header.Set("Accept", accept)
		}
		want, got := serve(t, old, "/metrics", header), serve(t, tel.MetricsHandler(), "/metrics", header)
		if got.header.Get("Content-Type") != want.header.Get("Content-Type") {
			t.Errorf("Content-Type %q, want %q", got.header.Get("Content-Type"), want.header.Get("Content-Type"))
		}
		if g, w := skeleton(string(got.body)), skeleton(string(want.body)); g != w {
			t.Errorf("accept %q: exposition differs:\n%s", accept, lineDiff(w, g))
		}
	}
}

// skeleton drops sample values and the runtime families' label values,
// which change from one scrape to the next.
func skeleton(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			if i := strings.LastIndexByte(l, ' '); i >= 0 {
				l = l[:i]
			}
			if !strings.HasPrefix(l, "kmb_") {
				if i := strings.IndexByte(l, '{'); i >= 0 {
					l = l[:i]
				}
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// Series with the same label values (a GaugeVecFunc emitting one twice) are
// served once, the first kept, as client_golang does, and logged.
func TestExpositionDuplicateSeries(t *testing.T) {
	reg := metric.NewRegistry()
	reg.NewGaugeVecFunc("kmb_dup", "Duplicates.", []string{"b", "a"}, func(emit func(float64, ...string)) {
		emit(1, "x", "y")
		emit(2, "x", "y")
		emit(3, "a", "b")
		emit(4, "a", "b")
	})
	old, cur, logs := handlers(t, reg, prometheus.Labels{"node_id": "1"})
	want, got := serve(t, old, "/metrics", http.Header{}), serve(t, cur, "/metrics", http.Header{})
	if !bytes.Equal(got.body, want.body) {
		t.Errorf("body differs:\n%s", lineDiff(string(want.body), string(got.body)))
	}
	if !strings.Contains(logs.String(), "kmb_dup") {
		t.Errorf("duplicates not logged: %q", logs.String())
	}
}

// Concurrent scrapes share the pooled buffers and the family layouts.
func TestExpositionConcurrentScrapes(t *testing.T) {
	reg := everyKind(t)
	old, cur, _ := handlers(t, reg, prometheus.Labels{"node_id": "7"})
	want := serve(t, old, "/metrics", http.Header{"Accept": {"application/openmetrics-text;version=1.0.0"}})
	done := make(chan string)
	for i := range 8 {
		go func() {
			header := http.Header{"Accept": {"application/openmetrics-text;version=1.0.0"}}
			if i%2 == 0 {
				header.Set("Accept-Encoding", "gzip")
			}
			for range 20 {
				if got := serve(t, cur, "/metrics", header); !bytes.Equal(got.body, want.body) {
					done <- "differs"
					return
				}
			}
			done <- ""
		}()
	}
	for range 8 {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %q\n+ %q", i+1, wl, gl)
		}
	}
	return "(same lines)"
}

// appendFloat formats values as expfmt does, in both formats.
func TestAppendFloatMatchesExpfmt(t *testing.T) {
	values := []float64{0, math.Copysign(0, -1), 1, -1, 2, -2, 0.5, 1e-5, 1e-4, 123456, 999999, 1e6, -999999, -1e6,
		1e6 + 1, 1e15, 1e21, 1e22, 1 << 53, 1<<53 + 2, 123456.5, 0.1, 1.0 / 3, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.NaN(), math.Inf(1), math.Inf(-1)}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		values = append(values, math.Round(r.NormFloat64()*1e6), r.NormFloat64()*math.Pow(10, float64(r.IntN(40)-20)),
			float64(r.IntN(2_000_000)-1_000_000), math.Float64frombits(r.Uint64()))
	}
	for _, v := range values {
		mf := &dto.MetricFamily{Name: proto.String("g"), Type: dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(v)}}}}
		var text, om bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
		if _, err := expfmt.MetricFamilyToOpenMetrics(&om, mf); err != nil {
			t.Fatal(err)
		}
		if got, want := "g "+string(appendFloat(nil, v, false))+"\n", strings.SplitAfter(text.String(), "\n")[1]; got != want {
			t.Errorf("text %v: %q, want %q", v, got, want)
		}
		if got, want := "g "+string(appendFloat(nil, v, true))+"\n", strings.SplitAfter(om.String(), "\n")[1]; got != want {
			t.Errorf("OpenMetrics %v: %q, want %q", v, got, want)
		}
	}
}
