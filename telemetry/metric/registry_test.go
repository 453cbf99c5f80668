package metric

import (
	"reflect"
	"sync"
	"testing"
)

func TestGather(t *testing.T) {
	r := NewRegistry()
	// Registered out of name order on purpose.
	status := 1.0
	r.NewGaugeVecFunc("kmb_replica_status", "Replica status.", []string{"status"}, func(emit func(float64, ...string)) {
		emit(1-status, "view_change")
		emit(status, "normal")
	})
	r.NewCounter("kmb_appends_total", "Appends.").Add(3)
	vec := r.NewCounterVec("kmb_requests_total", "Requests.", "op", "code")
	vec.With("write", "ok").Add(2)
	vec.With("read", "ok").Inc()
	vec.With("read", "err").Add(4)
	r.NewGauge("kmb_inflight", "In flight.").Set(-2)
	r.NewGaugeFunc("kmb_disk_free_bytes", "Free.", func() float64 { return 1.5 })
	r.NewCounterFunc("kmb_bytes_written_total", "Written.", func() float64 { return 42 })
	lc := r.NewLoopCounter("kmb_loop_ticks_total", "Ticks.")
	lc.Add(9)
	lc.Publish()
	hv := r.NewHistogramVec("kmb_latency_seconds", "Latency.", HistogramOpts{Buckets: []float64{0.001}, Scale: 1e-9}, "op")
	hv.With("write").Observe(2_000_000)
	hv.With("read").Observe(1_000_000)

	want := []Family{
		{Name: "kmb_appends_total", Help: "Appends.", Kind: KindCounter, Series: []Series{{Value: 3}}},
		{Name: "kmb_bytes_written_total", Help: "Written.", Kind: KindCounter, Series: []Series{{Value: 42}}},
		{Name: "kmb_disk_free_bytes", Help: "Free.", Kind: KindGauge, Series: []Series{{Value: 1.5}}},
		{Name: "kmb_inflight", Help: "In flight.", Kind: KindGauge, Series: []Series{{Value: -2}}},
		{Name: "kmb_latency_seconds", Help: "Latency.", Kind: KindHistogram, LabelNames: []string{"op"}, Series: []Series{
			{LabelValues: []string{"read"}, Histogram: &HistogramSnapshot{Upper: []float64{0.001}, Counts: []uint64{1}, Count: 1, Sum: 0.001}},
			{LabelValues: []string{"write"}, Histogram: &HistogramSnapshot{Upper: []float64{0.001}, Counts: []uint64{0}, Count: 1, Sum: 0.002}},
		}},
		{Name: "kmb_loop_ticks_total", Help: "Ticks.", Kind: KindCounter, Series: []Series{{Value: 9}}},
		{Name: "kmb_replica_status", Help: "Replica status.", Kind: KindGauge, LabelNames: []string{"status"}, Series: []Series{
			{LabelValues: []string{"normal"}, Value: 1},
			{LabelValues: []string{"view_change"}, Value: 0},
		}},
		{Name: "kmb_requests_total", Help: "Requests.", Kind: KindCounter, LabelNames: []string{"op", "code"}, Series: []Series{
			{LabelValues: []string{"read", "err"}, Value: 4},
			{LabelValues: []string{"read", "ok"}, Value: 1},
			{LabelValues: []string{"write", "ok"}, Value: 2},
		}},
	}
	if got := r.Gather(); !reflect.DeepEqual(got, want) {
		t.Errorf("Gather() =\n%+v\nwant\n%+v", got, want)
	}

	// Children added later are merged into order, and funcs are re-read.
	vec.With("append", "ok").Inc()
	status = 0
	f := findFamily(t, r, "kmb_requests_total")
	if got := f.Series[0].LabelValues; !reflect.DeepEqual(got, []string{"append", "ok"}) {
		t.Errorf("first series after adding a child = %q, want [append ok]", got)
	}
	assertSeries(t, r, "kmb_replica_status", map[string]float64{"normal": 0, "view_change": 1})
}

func TestGatherEmpty(t *testing.T) {
	if got := NewRegistry().Gather(); len(got) != 0 {
		t.Errorf("Gather() on an empty registry = %v", got)
	}
}

func TestRegistrationPanics(t *testing.T) {
	tests := map[string]func(r *Registry){
		"duplicate name": func(r *Registry) {
			r.NewCounter("x", "")
			r.NewGauge("x", "")
		},
		"duplicate across kinds": func(r *Registry) {
			r.NewHistogram("x", "", HistogramOpts{})
			r.NewCounterVec("x", "", "a")
		},
		"empty name":              func(r *Registry) { r.NewCounter("", "") },
		"name starts with digit":  func(r *Registry) { r.NewCounter("1x", "") },
		"name with dash":          func(r *Registry) { r.NewLoopCounter("kmb-x", "") },
		"name with dot":           func(r *Registry) { r.NewGaugeFunc("kmb.x", "", func() float64 { return 0 }) },
		"label with colon":        func(r *Registry) { r.NewCounterVec("x", "", "a:b") },
		"label starts with digit": func(r *Registry) { r.NewCounterVec("x", "", "1a") },
		"empty label":             func(r *Registry) { r.NewCounterVec("x", "", "") },
		"reserved label":          func(r *Registry) { r.NewCounterVec("x", "", "__name__") },
		"duplicate label":         func(r *Registry) { r.NewCounterVec("x", "", "a", "b", "a") },
		"le on histogram":         func(r *Registry) { r.NewHistogramVec("x", "", HistogramOpts{}, "le") },
		"capped label invalid":    func(r *Registry) { r.NewCappedLoopCounterVec("x", "", "a-b", 1) },
		"gauge vec func label":    func(r *Registry) { r.NewGaugeVecFunc("x", "", []string{"a b"}, func(func(float64, ...string)) {}) },
		"nil gauge func":          func(r *Registry) { r.NewGaugeFunc("x", "", nil) },
		"nil counter func":        func(r *Registry) { r.NewCounterFunc("x", "", nil) },
		"nil gauge vec func":      func(r *Registry) { r.NewGaugeVecFunc("x", "", nil, nil) },
		"invalid histogram opts":  func(r *Registry) { r.NewLoopHistogram("x", "", HistogramOpts{Buckets: []float64{2, 1}}) },
		"With wrong value count":  func(r *Registry) { r.NewCounterVec("x", "", "a", "b").With("1") },
		"With invalid UTF-8":      func(r *Registry) { r.NewHistogramVec("x", "", HistogramOpts{}, "a").With("\xc3") },
		"emit wrong value count": func(r *Registry) {
			r.NewGaugeVecFunc("x", "", []string{"a"}, func(emit func(float64, ...string)) { emit(1) })
			r.Gather()
		},
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			defer wantPanic(t)
			fn(NewRegistry())
		})
	}
}

func TestValidNames(t *testing.T) {
	r := NewRegistry()
	// Valid edge cases must register without panicking.
	r.NewCounter("_", "")
	r.NewCounter(":x:y_1", "")
	r.NewCounterVec("kmb_x", "", "_", "A9", "le") // le is reserved for histograms only
	r.NewCounterVec("kmb_no_labels", "").With().Inc()
	if got := findFamily(t, r, "kmb_no_labels").Series; len(got) != 1 || got[0].Value != 1 || len(got[0].LabelValues) != 0 {
		t.Errorf("vec without labels gathered %+v, want one series with value 1", got)
	}
}

func TestVecWithReturnsSameChild(t *testing.T) {
	r := NewRegistry()
	cv := r.NewCounterVec("c", "", "a", "b")
	// Length-prefixed keys keep these apart although their concatenations match.
	if cv.With("ab", "c") == cv.With("a", "bc") {
		t.Error("distinct label values share a child")
	}
	var children [8]*Counter
	inParallel(len(children), func(g int) {
		children[g] = cv.With("x", "y")
		children[g].Inc()
	})
	for _, c := range children[1:] {
		if c != children[0] {
			t.Fatal("concurrent With returned different children for the same values")
		}
	}
	if got := children[0].Value(); got != 8 {
		t.Errorf("Value() = %d, want 8", got)
	}
	hv := r.NewHistogramVec("h", "", HistogramOpts{}, "a")
	x1, x2, y := hv.With("x"), hv.With("x"), hv.With("y")
	if x1 != x2 || x1 == y {
		t.Error("HistogramVec.With does not map values to children one to one")
	}
}

// TestGatherWhileRecording exercises every primitive concurrently with
// Gather and with new children appearing; it asserts only final totals,
// its real check is the race detector.
func TestGatherWhileRecording(t *testing.T) {
	const n = 2000
	r := NewRegistry()
	c := r.NewCounter("c", "")
	g := r.NewGauge("g", "")
	h := r.NewHistogram("h", "", HistogramOpts{Buckets: []float64{10}})
	lc := r.NewLoopCounter("lc", "")
	lh := r.NewLoopHistogram("lh", "", HistogramOpts{Buckets: []float64{10}})
	cv := r.NewCounterVec("cv", "", "k")
	capped := r.NewCappedLoopCounterVec("capped", "", "tenant", 50)

	stop := make(chan struct{})
	var gatherers sync.WaitGroup
	for range 2 {
		gatherers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					r.Gather()
				}
			}
		})
	}
	inParallel(3, func(w int) {
		for i := range n {
			c.Inc()
			g.Add(1)
			h.Observe(int64(i % 20))
			cv.With(string(rune('a' + i%30))).Inc()
			if w == 0 { // the loop owner
				lc.Inc()
				lh.Observe(int64(i % 20))
				capped.With(string(rune('A' + i%60))).Inc()
				if i%10 == 0 {
					lc.Publish()
					lh.Publish()
					capped.PublishDirty()
				}
			}
		}
	})
	lc.Publish()
	lh.Publish()
	capped.PublishDirty()
	close(stop)
	gatherers.Wait()

	if c.Value() != 3*n || g.Value() != 3*n || h.Snapshot().Count != 3*n || lc.Value() != n || lh.Snapshot().Count != n {
		t.Errorf("totals: counter %d gauge %d histogram %d loop counter %d loop histogram %d, want %d %d %d %d %d",
			c.Value(), g.Value(), h.Snapshot().Count, lc.Value(), lh.Snapshot().Count, 3*n, 3*n, 3*n, n, n)
	}
	var cappedTotal float64
	for _, s := range findFamily(t, r, "capped").Series {
		cappedTotal += s.Value
	}
	if capped.Len() != 50 || cappedTotal != n {
		t.Errorf("capped: Len %d total %v, want 50 and %d", capped.Len(), cappedTotal, n)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindCounter: "counter", KindGauge: "gauge", KindHistogram: "histogram", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestSeriesLabels(t *testing.T) {
	s := Series{LabelValues: []string{"write", "ok"}}
	want := []Label{{"op", "write"}, {"code", "ok"}}
	if got := s.Labels([]string{"op", "code"}); !reflect.DeepEqual(got, want) {
		t.Errorf("Labels() = %v, want %v", got, want)
	}
}
