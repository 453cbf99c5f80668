package telemetry

import (
	"compress/gzip"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// metricsHandler serves /metrics. It writes the kmb_* families of a
// metric.Registry straight from Gather into a pooled buffer, in the
// Prometheus text format 0.0.4 or OpenMetrics 1.0.0, and merges in, by
// name, the few families of the Go runtime and process collectors, which
// expfmt encodes. Its output is the one promhttp gives for a
// prometheus.Registry holding the bridge and those collectors (same
// content negotiation, compression, ordering, escaping and number
// formatting) without building a client_golang metric per series. Formats
// it does not write (the protobuf ones) are served by fallback, promhttp
// over that registry.
type metricsHandler struct {
	reg *metric.Registry
	// constLabels are added to every kmb_* series, sorted by name.
	constLabels []metric.Label
	// runtime gathers the Go runtime and process collectors.
	runtime  prometheus.Gatherer
	fallback http.Handler
	errorLog promhttp.Logger

	mu      sync.Mutex
	layouts map[string]*familyLayout // by family name

	// buffers keeps response buffers for reuse. Unlike a sync.Pool it
	// survives garbage collections, which a large scrape itself triggers.
	buffers chan *exposition
	// lastSize is the size of the last exposition, to size a new buffer.
	lastSize atomic.Int64
}

// acceptedFormats are promhttp's with EnableOpenMetrics.
var acceptedFormats = expfmt.DefaultOpenMetricsAcceptedFormats()

// maxKeptBuffer bounds the response buffers kept for reuse.
const maxKeptBuffer = 16 << 20

// gzipPool holds writers at gzip.BestSpeed: the exposition is repetitive
// text that compresses well at the fastest level, and a scrape should cost
// the node as little as it can.
var gzipPool = sync.Pool{New: func() any {
	gz, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
	return gz
}}

func newMetricsHandler(reg *metric.Registry, constLabels prometheus.Labels, runtime prometheus.Gatherer, fallback http.Handler, errorLog promhttp.Logger) *metricsHandler {
	h := &metricsHandler{reg: reg, runtime: runtime, fallback: fallback, errorLog: errorLog, layouts: map[string]*familyLayout{}, buffers: make(chan *exposition, 2)}
	for name, value := range constLabels {
		h.constLabels = append(h.constLabels, metric.Label{Name: name, Value: value})
	}
	slices.SortFunc(h.constLabels, func(a, b metric.Label) int { return strings.Compare(a.Name, b.Name) })
	return h
}

func (h *metricsHandler) logf(format string, args ...any) {
	if h.errorLog != nil {
		h.errorLog.Println(fmt.Sprintf(format, args...))
	}
}

func (h *metricsHandler) ServeHTTP(rsp http.ResponseWriter, req *http.Request) {
	format := expfmt.NegotiateAccept(req.Header, acceptedFormats...)
	om := false
	switch format.FormatType() {
	case expfmt.TypeTextPlain:
	case expfmt.TypeOpenMetrics:
		// Only OpenMetrics 1.0.0 and 0.0.1 are negotiated, which expfmt
		// writes alike.
		om = true
	default:
		h.fallback.ServeHTTP(rsp, req)
		return
	}

	runtime, err := h.runtime.Gather()
	if err != nil {
		h.logf("error gathering metrics: %v", err)
	}

	header := rsp.Header()
	header.Add("Vary", "Accept")
	header.Add("Vary", "Accept-Encoding")
	header.Set("Content-Type", string(format))
	encoding := negotiateEncoding(req)
	if encoding == "" {
		h.logf("error getting writer: Accept-Encoding %q refuses identity and gzip; serving identity", req.Header.Values("Accept-Encoding"))
		encoding = "identity"
	}

	var filter map[string]struct{}
	if req.URL != nil {
		if names := req.URL.Query()["name[]"]; len(names) > 0 {
			filter = make(map[string]struct{}, len(names))
			for _, name := range names {
				filter[name] = struct{}{}
			}
		}
	}
	wanted := func(name string) bool {
		if filter == nil {
			return true
		}
		_, ok := filter[name]
		return ok
	}

	buf := h.buffer()
	defer h.release(buf)

	families := h.reg.Gather()
	layouts := h.layoutsOf(families)
	enc := expfmt.NewEncoder(buf, format)
	encode := func(mf *dto.MetricFamily) {
		if err := enc.Encode(mf); err != nil {
			h.logf("error encoding and sending metric family: %v", err)
		}
	}
	// Both lists are sorted by name; client_golang sorts the families it
	// serves by name, so merge them.
	i, j := 0, 0
	for i < len(families) || j < len(runtime) {
		switch {
		case j == len(runtime) || i < len(families) && families[i].Name < runtime[j].GetName():
			if wanted(families[i].Name) {
				h.writeFamily(buf, &families[i], layouts[i], om)
			}
			i++
		case i == len(families) || runtime[j].GetName() < families[i].Name:
			if wanted(runtime[j].GetName()) {
				encode(runtime[j])
			}
			j++
		default:
			// Two families of one name: serve one, as a registry would.
			h.logf("error gathering metrics: family %s is both a kmb family and a runtime family; serving one", families[i].Name)
			if wanted(families[i].Name) {
				if len(families[i].Series) > 0 {
					h.writeFamily(buf, &families[i], layouts[i], om)
				} else {
					encode(runtime[j])
				}
			}
			i++
			j++
		}
	}
	if closer, ok := enc.(expfmt.Closer); ok {
		if err := closer.Close(); err != nil {
			h.logf("error encoding and sending metric family: %v", err)
		}
	}

	if encoding == "gzip" {
		header.Set("Content-Encoding", "gzip")
		gz := gzipPool.Get().(*gzip.Writer)
		gz.Reset(rsp)
		_, _ = gz.Write(buf.b)
		_ = gz.Close()
		gzipPool.Put(gz)
		return
	}
	_, _ = rsp.Write(buf.b)
}

// buffer returns an empty response buffer, a kept one if there is one.
func (h *metricsHandler) buffer() *exposition {
	select {
	case buf := <-h.buffers:
		return buf
	default:
		// A little more than the last exposition, which grows slowly.
		return &exposition{b: make([]byte, 0, h.lastSize.Load()*9/8+4096)}
	}
}

// release keeps buf for a later scrape.
func (h *metricsHandler) release(buf *exposition) {
	h.lastSize.Store(int64(len(buf.b)))
	if cap(buf.b) > maxKeptBuffer {
		return
	}
	buf.b = buf.b[:0]
	select {
	case h.buffers <- buf:
	default:
	}
}

// negotiateEncoding picks identity or gzip from the Accept-Encoding header
// the way promhttp does: the offer (identity first) with the highest
// quality wins, "" if that quality is zero.
func negotiateEncoding(req *http.Request) string {
	best, bestQ := "identity", -1.0
	specs := parseAcceptEncoding(req.Header["Accept-Encoding"])
	for _, offer := range [...]string{"identity", "gzip"} {
		for _, spec := range specs {
			if spec.q > bestQ && (spec.value == "*" || spec.value == offer) {
				best, bestQ = offer, spec.q
			}
		}
	}
	if bestQ == 0 {
		return ""
	}
	return best
}

type acceptSpec struct {
	value string
	q     float64
}

// parseAcceptEncoding parses Accept-Encoding values as promhttp does
// (golang/gddo's httputil/header.ParseAccept).
func parseAcceptEncoding(values []string) []acceptSpec {
	var specs []acceptSpec
	for _, s := range values {
		for {
			var spec acceptSpec
			i := 0
			for i < len(s) && (isHeaderToken(s[i]) || s[i] == '/') {
				i++
			}
			spec.value, s = s[:i], s[i:]
			if spec.value == "" {
				break
			}
			spec.q = 1
			s = strings.TrimLeft(s, " \t\r\n")
			if strings.HasPrefix(s, ";") {
				s = strings.TrimLeft(s[1:], " \t\r\n")
				if !strings.HasPrefix(s, "q=") {
					break
				}
				spec.q, s = parseQuality(s[2:])
				if spec.q < 0 {
					break
				}
			}
			specs = append(specs, spec)
			s = strings.TrimLeft(s, " \t\r\n")
			if !strings.HasPrefix(s, ",") {
				break
			}
			s = strings.TrimLeft(s[1:], " \t\r\n")
		}
	}
	return specs
}

func isHeaderToken(c byte) bool {
	return c > 31 && c < 127 && !strings.ContainsRune(" \t\"(),/:;<=>?@[]\\{}", rune(c))
}

func parseQuality(s string) (float64, string) {
	var q float64
	switch {
	case s == "":
		return -1, ""
	case s[0] == '0':
		q = 0
	case s[0] == '1':
		q = 1
	default:
		return -1, ""
	}
	s = s[1:]
	if !strings.HasPrefix(s, ".") {
		return q, s
	}
	s = s[1:]
	i, n, d := 0, 0, 1
	for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
		d *= 10
	}
	return q + float64(n)/float64(d), s[i:]
}

// exposition is the response buffer. It implements the writer interface
// expfmt's encoders use directly (Write, WriteString, WriteByte,
// WriteRune), so the runtime families need no bufio.Writer.
type exposition struct {
	b []byte
	// Scratch space reused across scrapes.
	order []int
	slots []*metric.Exemplar
}

func (e *exposition) Write(p []byte) (int, error) { e.b = append(e.b, p...); return len(p), nil }
func (e *exposition) WriteString(s string) (int, error) {
	e.b = append(e.b, s...)
	return len(s), nil
}
func (e *exposition) WriteByte(c byte) error { e.b = append(e.b, c); return nil }
func (e *exposition) WriteRune(r rune) (int, error) {
	n := len(e.b)
	e.b = utf8.AppendRune(e.b, r)
	return len(e.b) - n, nil
}

// familyLayout is what a family's exposition needs besides its series,
// computed once per family: families never change shape.
type familyLayout struct {
	help       string
	labelNames []string
	err        error // set when the family cannot be exposed

	textHeader, omHeader string // the HELP and TYPE lines
	textName, omName     string // the sample name (with _total in OpenMetrics counters)
	labels               []layoutLabel
	// order lists the variable labels' indexes in label name order:
	// client_golang sorts a family's series by their label values in that
	// order.
	order []int

	// le caches the formatted bucket bounds of the family's histograms,
	// which share one slice of bounds.
	upper        []float64
	leText, leOM []string
	boundsMu     sync.Mutex
}

// layoutLabel is one label of a family's series, in label name order.
type layoutLabel struct {
	prefix string // `{name="` for the first label, `,name="` for the others
	index  int    // index of the value in Series.LabelValues; -1 for a constant label
	value  string // a constant label's escaped value
}

// layoutsOf returns the layout of each family.
func (h *metricsHandler) layoutsOf(families []metric.Family) []*familyLayout {
	out := make([]*familyLayout, len(families))
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range families {
		f := &families[i]
		l := h.layouts[f.Name]
		if l == nil || l.help != f.Help || !slices.Equal(l.labelNames, f.LabelNames) {
			l = newFamilyLayout(f, h.constLabels)
			h.layouts[f.Name] = l
		}
		out[i] = l
	}
	return out
}

func newFamilyLayout(f *metric.Family, constLabels []metric.Label) *familyLayout {
	l := &familyLayout{help: f.Help, labelNames: slices.Clone(f.LabelNames)}
	type named struct {
		name  string
		index int
		value string
	}
	var all []named
	for _, c := range constLabels {
		if slices.Contains(f.LabelNames, c.Name) {
			l.err = fmt.Errorf("family %s: label %q is also a constant label", f.Name, c.Name)
		}
		all = append(all, named{name: c.Name, index: -1, value: string(appendLabelValue(nil, c.Value))})
	}
	for i, n := range f.LabelNames {
		all = append(all, named{name: n, index: i})
	}
	slices.SortStableFunc(all, func(a, b named) int { return strings.Compare(a.name, b.name) })
	for i, n := range all {
		sep := ","
		if i == 0 {
			sep = "{"
		}
		l.labels = append(l.labels, layoutLabel{prefix: sep + n.name + `="`, index: n.index, value: n.value})
		if n.index >= 0 {
			l.order = append(l.order, n.index)
		}
	}

	var typ string
	switch f.Kind {
	case metric.KindCounter:
		typ = "counter"
	case metric.KindGauge:
		typ = "gauge"
	case metric.KindHistogram:
		typ = "histogram"
	default:
		l.err = fmt.Errorf("family %s: unknown kind %v", f.Name, f.Kind)
	}
	l.textName = f.Name
	l.textHeader = "# HELP " + f.Name + " " + string(appendEscaped(nil, f.Help, false)) + "\n" +
		"# TYPE " + f.Name + " " + typ + "\n"
	// OpenMetrics names a counter family without its _total suffix and
	// types a counter without one "unknown", as expfmt does.
	compliant, omTyp := f.Name, typ
	l.omName = f.Name
	if f.Kind == metric.KindCounter {
		if base, ok := strings.CutSuffix(f.Name, "_total"); ok {
			compliant = base
		} else {
			omTyp = "unknown"
		}
	}
	l.omHeader = "# HELP " + compliant + " " + string(appendEscaped(nil, f.Help, true)) + "\n" +
		"# TYPE " + compliant + " " + omTyp + "\n"
	return l
}

// writeFamily appends family f to buf.
func (h *metricsHandler) writeFamily(buf *exposition, f *metric.Family, l *familyLayout, om bool) {
	if len(f.Series) == 0 {
		return // client_golang serves no family without series
	}
	if l.err != nil {
		h.logf("error gathering metrics: %v", l.err)
		return
	}
	order, dropped := l.sorted(f.Series, buf)
	if dropped > 0 {
		h.logf("error gathering metrics: family %s: %d series collected before with the same label values were dropped", f.Name, dropped)
	}
	b := buf.b
	name := l.textName
	if om {
		b = append(b, l.omHeader...)
		name = l.omName
	} else {
		b = append(b, l.textHeader...)
	}
	for i := range f.Series {
		k := i
		if order != nil {
			if i >= len(order) {
				break
			}
			k = order[i]
		}
		s := &f.Series[k]
		switch f.Kind {
		case metric.KindCounter, metric.KindGauge:
			b = append(b, name...)
			b = l.appendLabels(b, s.LabelValues)
			b = append(b, ' ')
			b = appendFloat(b, s.Value, om)
			b = append(b, '\n')
		case metric.KindHistogram:
			b = l.appendHistogram(b, name, s, om, buf)
		}
	}
	buf.b = b
}

// sorted returns the order in which to write series: client_golang's
// (by label values in label name order), each label set once, the first
// gathered winning; nil when that is Gather's order, as is usual. dropped
// counts duplicates.
func (l *familyLayout) sorted(series []metric.Series, buf *exposition) (order []int, dropped int) {
	ordered := true
	for i := 1; i < len(series); i++ {
		if l.compare(&series[i-1], &series[i]) >= 0 {
			ordered = false
			break
		}
	}
	if ordered {
		return nil, 0
	}
	order = buf.order[:0]
	for i := range series {
		order = append(order, i)
	}
	buf.order = order
	slices.SortStableFunc(order, func(a, b int) int { return l.compare(&series[a], &series[b]) })
	kept := order[:1]
	for _, k := range order[1:] {
		if l.compare(&series[kept[len(kept)-1]], &series[k]) == 0 {
			dropped++
			continue
		}
		kept = append(kept, k)
	}
	return kept, dropped
}

func (l *familyLayout) compare(a, b *metric.Series) int {
	for _, i := range l.order {
		if c := strings.Compare(a.LabelValues[i], b.LabelValues[i]); c != 0 {
			return c
		}
	}
	return 0
}

// appendLabels appends a series' labels, {} included, or nothing for a
// series without labels.
func (l *familyLayout) appendLabels(b []byte, values []string) []byte {
	if len(l.labels) == 0 {
		return b
	}
	b = l.appendLabelPairs(b, values)
	return append(b, '}')
}

func (l *familyLayout) appendLabelPairs(b []byte, values []string) []byte {
	for i := range l.labels {
		ll := &l.labels[i]
		b = append(b, ll.prefix...)
		if ll.index < 0 {
			b = append(b, ll.value...)
		} else {
			b = appendLabelValue(b, values[ll.index])
		}
		b = append(b, '"')
	}
	return b
}

// appendLe appends a bucket's labels: the series' labels and then le.
func (l *familyLayout) appendLe(b []byte, values []string, le string) []byte {
	if len(l.labels) == 0 {
		b = append(b, `{le="`...)
	} else {
		b = l.appendLabelPairs(b, values)
		b = append(b, `,le="`...)
	}
	b = append(b, le...)
	return append(b, `"}`...)
}

// bounds returns upper's formatted bounds for the text format and
// OpenMetrics.
func (l *familyLayout) bounds(upper []float64) (text, om []string) {
	l.boundsMu.Lock()
	defer l.boundsMu.Unlock()
	if l.leText == nil || !slices.Equal(l.upper, upper) {
		l.upper = slices.Clone(upper)
		l.leText = make([]string, len(upper))
		l.leOM = make([]string, len(upper))
		for i, u := range upper {
			l.leText[i] = string(appendFloat(nil, u, false))
			l.leOM[i] = string(appendFloat(nil, u, true))
		}
	}
	return l.leText, l.leOM
}

// exemplarMaxRunes is client_golang's limit on an exemplar's labels.
const exemplarMaxRunes = 128

// appendHistogram appends the buckets, sum and count of a histogram series
// and, in OpenMetrics, its exemplars, placed as client_golang places them:
// each in the first bucket whose bound is at least its value, an explicit
// +Inf bucket for those above every bound.
func (l *familyLayout) appendHistogram(b []byte, name string, s *metric.Series, om bool, buf *exposition) []byte {
	hs := s.Histogram
	leText, leOM := l.bounds(hs.Upper)
	le := leText
	if om {
		le = leOM
	}
	slots := buf.slots[:0]
	var inf []*metric.Exemplar
	if len(hs.Exemplars) > 0 && exemplarsValid(hs.Exemplars) {
		slots = slices.Grow(slots, len(hs.Upper))[:len(hs.Upper)]
		clear(slots)
		for k := range hs.Exemplars {
			e := &hs.Exemplars[k]
			i := sort.Search(len(hs.Upper), func(i int) bool { return hs.Upper[i] >= e.Value })
			switch {
			case i < len(hs.Upper):
				slots[i] = e
			case len(inf) > 0 && !math.IsNaN(e.Value):
				inf[0] = e
			default:
				inf = append(inf, e)
			}
		}
	}
	buf.slots = slots

	bucket := func(b []byte, le string, count uint64, e *metric.Exemplar) []byte {
		b = append(b, name...)
		b = append(b, "_bucket"...)
		b = l.appendLe(b, s.LabelValues, le)
		b = append(b, ' ')
		if om {
			b = strconv.AppendUint(b, count, 10)
			if e != nil {
				b = appendExemplar(b, e)
			}
		} else {
			b = appendFloat(b, float64(count), false)
		}
		return append(b, '\n')
	}
	for i := range hs.Upper {
		var e *metric.Exemplar
		if i < len(slots) {
			e = slots[i]
		}
		b = bucket(b, le[i], hs.Counts[i], e)
	}
	if len(inf) == 0 {
		b = bucket(b, "+Inf", hs.Count, nil)
	}
	for _, e := range inf {
		b = bucket(b, "+Inf", hs.Count, e)
	}

	b = append(b, name...)
	b = append(b, "_sum"...)
	b = l.appendLabels(b, s.LabelValues)
	b = append(b, ' ')
	b = appendFloat(b, hs.Sum, om)
	b = append(b, '\n')

	b = append(b, name...)
	b = append(b, "_count"...)
	b = l.appendLabels(b, s.LabelValues)
	b = append(b, ' ')
	if om {
		b = strconv.AppendUint(b, hs.Count, 10)
	} else {
		b = appendFloat(b, float64(hs.Count), false)
	}
	return append(b, '\n')
}

// exemplarsValid reports whether client_golang accepts every exemplar; it
// attaches none when it rejects one.
func exemplarsValid(es []metric.Exemplar) bool {
	const minSeconds, maxSeconds = -62135596800, 253402300799 // years 1 to 9999
	for i := range es {
		e := &es[i]
		if !utf8.ValidString(e.TraceID) || len("trace_id")+utf8.RuneCountInString(e.TraceID) > exemplarMaxRunes {
			return false
		}
		if !e.Time.IsZero() {
			if s := e.Time.Unix(); s < minSeconds || s > maxSeconds {
				return false
			}
		}
	}
	return true
}

// appendExemplar appends an OpenMetrics exemplar: ` # {trace_id="…"} value timestamp`.
func appendExemplar(b []byte, e *metric.Exemplar) []byte {
	b = append(b, ` # {trace_id="`...)
	b = appendLabelValue(b, e.TraceID)
	b = append(b, `"} `...)
	b = appendFloat(b, e.Value, true)
	b = append(b, ' ')
	ts := e.Time
	if ts.IsZero() {
		ts = time.Now() // as client_golang stamps an exemplar without a time
	}
	return appendFloat(b, float64(ts.UnixNano())/1e9, true)
}

// appendFloat formats f as expfmt does in the text format or, when om is
// set, in OpenMetrics (where integral values get a ".0").
func appendFloat(b []byte, f float64, om bool) []byte {
	switch {
	case f == 1:
		if om {
			return append(b, "1.0"...)
		}
		return append(b, '1')
	case f == 0:
		if om {
			return append(b, "0.0"...)
		}
		return append(b, '0')
	case f == -1:
		if om {
			return append(b, "-1.0"...)
		}
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	if f == math.Trunc(f) && -1e6 < f && f < 1e6 {
		// What 'g' gives integers below 1e6 (above, it switches to an
		// exponent); much cheaper.
		b = strconv.AppendInt(b, int64(f), 10)
		if om {
			b = append(b, '.', '0')
		}
		return b
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, 64)
	if om {
		for _, c := range b[n:] {
			if c == 'e' || c == '.' {
				return b
			}
		}
		b = append(b, '.', '0')
	}
	return b
}

// appendLabelValue appends a label value escaped as expfmt escapes it
// (backslash, newline and double quote). The registry only takes UTF-8
// label values, as client_golang requires.
func appendLabelValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == '\n' || c == '"' {
			return appendEscaped(b, s, true)
		}
	}
	return append(b, s...)
}

// appendEscaped appends s escaped as expfmt escapes OpenMetrics HELP text
// and label values (backslash, newline and, with quote set, double quote)
// or text format HELP text (backslash and newline).
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
