package metric

import (
	"testing"
	"time"
)

func TestExemplars(t *testing.T) {
	r := NewRegistry()
	h := r.NewHistogram("kmb_x_seconds", "x", HistogramOpts{Buckets: []float64{0.001, 0.01}, Scale: 1e-9})
	h.ObserveDuration(500 * time.Microsecond) // no exemplar
	if s := h.Snapshot(); len(s.Exemplars) != 0 || s.Count != 1 {
		t.Fatalf("untraced observation left an exemplar: %+v", s)
	}
	h.ObserveDurationWithExemplar(2*time.Millisecond, "4bf92f3577b34da6a3ce929d0e0e4736")
	h.ObserveDurationWithExemplar(3*time.Millisecond, "5bf92f3577b34da6a3ce929d0e0e4736") // same bucket: replaces
	h.ObserveDurationWithExemplar(time.Second, "6bf92f3577b34da6a3ce929d0e0e4736")        // +Inf bucket
	h.ObserveDurationWithExemplar(time.Millisecond/2, "")                                 // no trace
	s := h.Snapshot()
	if s.Count != 5 || len(s.Exemplars) != 2 {
		t.Fatalf("snapshot %+v", s)
	}
	if e := s.Exemplars[0]; e.TraceID != "5bf92f3577b34da6a3ce929d0e0e4736" || e.Value != 0.003 || e.Time.IsZero() {
		t.Fatalf("first exemplar %+v", e)
	}
	if e := s.Exemplars[1]; e.TraceID != "6bf92f3577b34da6a3ce929d0e0e4736" || e.Value != 1 {
		t.Fatalf("+Inf exemplar %+v", e)
	}
	if n := testing.AllocsPerRun(100, func() { h.ObserveDurationWithExemplar(time.Millisecond, "") }); n != 0 {
		t.Fatalf("an observation without a trace allocated %v times", n)
	}
}
