package logging

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// benchLoggers returns kmbd's logger and plain slog ones, set up alike:
// INFO for the module, writing to io.Discard.
func benchLoggers(b testing.TB) []struct {
	name string
	l    *slog.Logger
} {
	levels := mustLevels(b, "kmb=info")
	jh, err := NewHandler(io.Discard, Options{Levels: levels})
	if err != nil {
		b.Fatal(err)
	}
	th, err := NewHandler(io.Discard, Options{Format: "text", Levels: levels})
	if err != nil {
		b.Fatal(err)
	}
	std := &slog.HandlerOptions{Level: slog.LevelInfo}
	return []struct {
		name string
		l    *slog.Logger
	}{
		{"kmb-json", ForModule(slog.New(jh), "kmb_vsr")},
		{"kmb-text", ForModule(slog.New(th), "kmb_vsr")},
		{"slog-json", slog.New(slog.NewJSONHandler(io.Discard, std)).With("target", "kmb_vsr")},
		{"slog-text", slog.New(slog.NewTextHandler(io.Discard, std)).With("target", "kmb_vsr")},
	}
}

// BenchmarkDisabled uses b.N rather than b.Loop on purpose: b.Loop keeps
// the calls in its body from being inlined, which would bill the
// slog.Int/String/Bool constructors and Logger.Enabled as real calls and
// misstate what a disabled call costs in production code.
func BenchmarkDisabled(b *testing.B) {
	ctx := context.Background()
	for _, bl := range benchLoggers(b) {
		l := bl.l
		b.Run("Debug/"+bl.name, func(b *testing.B) {
			for range b.N {
				l.Debug("msg", "a", 1, "b", "x", "c", true)
			}
		})
		b.Run("LogAttrs/"+bl.name, func(b *testing.B) {
			for range b.N {
				l.LogAttrs(ctx, slog.LevelDebug, "msg", slog.Int("a", 1), slog.String("b", "x"), slog.Bool("c", true))
			}
		})
		b.Run("Guarded/"+bl.name, func(b *testing.B) {
			for range b.N {
				if l.Enabled(ctx, slog.LevelDebug) {
					l.Debug("msg", "a", 1, "b", "x", "c", true)
				}
			}
		})
	}
}

func BenchmarkEnabled(b *testing.B) {
	ctx := context.Background()
	traced := trace.ContextWithSpanContext(ctx, testSpanContext)
	for _, bl := range benchLoggers(b) {
		l := bl.l
		b.Run("Info/"+bl.name, func(b *testing.B) {
			for b.Loop() {
				l.Info("msg", "a", 1, "b", "x", "c", true)
			}
		})
		b.Run("LogAttrs/"+bl.name, func(b *testing.B) {
			for b.Loop() {
				l.LogAttrs(ctx, slog.LevelInfo, "msg", slog.Int("a", 1), slog.String("b", "x"), slog.Bool("c", true))
			}
		})
		// A derived logger with fields of its own: WithAttrs pre-encoding
		// is what keeps this close to the plain call.
		w := l.With("node_id", 1, "view", 5).WithGroup("op")
		b.Run("With/"+bl.name, func(b *testing.B) {
			for b.Loop() {
				w.LogAttrs(ctx, slog.LevelInfo, "msg", slog.Int("a", 1), slog.Duration("d", 1500*time.Microsecond), slog.Bool("c", true))
			}
		})
		b.Run("Traced/"+bl.name, func(b *testing.B) {
			for b.Loop() {
				l.LogAttrs(traced, slog.LevelInfo, "msg", slog.Int("a", 1), slog.String("b", "x"), slog.Bool("c", true))
			}
		})
	}
}

// The allocation budget: none for disabled calls, at most one for an
// enabled call with common attribute kinds. Handle itself is checked
// separately with a record of every common kind: more than five attrs
// make slog.Record allocate, which is slog's cost, not the handler's.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	ctx := context.Background()
	traced := trace.ContextWithSpanContext(ctx, testSpanContext)
	for _, bl := range benchLoggers(t)[:2] {
		l := bl.l.With("node_id", 1).WithGroup("g")
		r := slog.NewRecord(fixedTime, slog.LevelInfo, "msg", 0)
		r.AddAttrs(slog.Int("a", 1), slog.String("b", "x"), slog.Bool("c", true),
			slog.Float64("f", 0.5), slog.Uint64("u", 7), slog.Duration("d", time.Millisecond),
			slog.Time("t", fixedTime), slog.Any("err", io.EOF), slog.Group("grp", slog.Int("x", 1)))
		h := l.Handler()
		tests := []struct {
			name string
			max  float64
			f    func()
		}{
			{"disabled Debug", 0, func() { l.Debug("msg", "a", 1, "b", "x", "c", true) }},
			{"disabled LogAttrs", 0, func() {
				l.LogAttrs(ctx, slog.LevelDebug, "msg", slog.Int("a", 1), slog.String("b", "x"), slog.Bool("c", true))
			}},
			{"enabled Info", 1, func() { l.Info("msg", "a", 1, "b", "x", "c", true) }},
			{"enabled LogAttrs traced", 1, func() {
				l.LogAttrs(traced, slog.LevelInfo, "msg", slog.Int("a", 1), slog.Duration("d", time.Millisecond), slog.Bool("c", true))
			}},
			{"Handle, all common kinds", 0, func() { _ = h.Handle(traced, r) }},
		}
		for _, tt := range tests {
			if got := testing.AllocsPerRun(200, tt.f); got > tt.max {
				t.Errorf("%s %s: %.1f allocs, want <= %.0f", bl.name, tt.name, got, tt.max)
			}
		}
	}
}
