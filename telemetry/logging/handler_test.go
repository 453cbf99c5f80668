package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/slogtest"
	"time"

	"go.opentelemetry.io/otel/trace"
)

func TestNewHandlerErrors(t *testing.T) {
	if _, err := NewHandler(nil, Options{}); err == nil {
		t.Error("NewHandler(nil) succeeded")
	}
	for _, format := range []string{"JSON", "logfmt", "txt", " json"} {
		_, err := NewHandler(io.Discard, Options{Format: format})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", format)) {
			t.Errorf("NewHandler(Format: %q) error = %v, want one naming the format", format, err)
		}
	}
	for _, format := range []string{"", "json", "text"} {
		if _, err := NewHandler(io.Discard, Options{Format: format}); err != nil {
			t.Errorf("NewHandler(Format: %q): %v", format, err)
		}
	}
}

func TestDefaultTarget(t *testing.T) {
	tests := []struct {
		opt, want string
	}{
		{"", "kmb"},
		{"kmbd", "kmbd"},
	}
	for _, tt := range tests {
		h, buf := newTestHandler(t, Options{DefaultTarget: tt.opt})
		slog.New(h).Info("m")
		if m := checkJSONLine(t, bytes.TrimSpace(buf.Bytes())); m["target"] != tt.want {
			t.Errorf("DefaultTarget %q: target = %v, want %q", tt.opt, m["target"], tt.want)
		}
	}
}

// The record's own time wins over Options.Now; Now fills in a zero time.
func TestTimestampSource(t *testing.T) {
	clock := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	h, buf := newTestHandler(t, Options{Now: func() time.Time { return clock }})
	ctx := context.Background()
	_ = h.Handle(ctx, slog.NewRecord(time.Time{}, slog.LevelInfo, "zero", 0))
	_ = h.Handle(ctx, slog.NewRecord(fixedTime.Add(1234567*time.Microsecond), slog.LevelInfo, "own", 0))
	ms := checkJSONLines(t, buf.Bytes())
	if got, want := ms[0]["timestamp"], "2030-06-01T00:00:00.000Z"; got != want {
		t.Errorf("zero record time: timestamp %v, want %v", got, want)
	}
	if got, want := ms[1]["timestamp"], "2024-01-15T10:30:01.234Z"; got != want {
		t.Errorf("record time: timestamp %v, want %v", got, want)
	}
}

func TestTimestampFormat(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC), "2024-01-15T10:30:00.000Z"},
		{time.Date(2024, 12, 31, 23, 59, 59, 999_999_999, time.UTC), "2024-12-31T23:59:59.999Z"},
		{time.Date(2024, 1, 1, 0, 30, 0, 1_000_000, time.FixedZone("", -3600)), "2024-01-01T01:30:00.001Z"},
		{time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), "0001-01-01T00:00:00.000Z"},
		{time.Date(9999, 2, 3, 4, 5, 6, 7e8, time.UTC), "9999-02-03T04:05:06.700Z"},
	}
	for _, tt := range tests {
		if got := string(appendTimestamp(nil, tt.t)); got != tt.want {
			t.Errorf("appendTimestamp(%v) = %s, want %s", tt.t, got, tt.want)
		}
		if got := string(appendTimestamp(nil, tt.t)); got != tt.t.UTC().Format("2006-01-02T15:04:05.000Z07:00") {
			t.Errorf("appendTimestamp(%v) = %s, disagrees with package time", tt.t, got)
		}
	}
}

// Per-module filtering through the whole stack: KMB_LOG spec, target
// chosen by ForModule or by the equivalent With, then a log call.
func TestLevelFiltering(t *testing.T) {
	tests := []struct {
		spec   string
		module string // "" means the handler's default target
		level  slog.Level
		want   bool
	}{
		{"", "kmb_vsr", slog.LevelInfo, true},
		{"", "kmb_vsr", slog.LevelDebug, false},
		{"kmb=info,kmb_vsr=debug", "kmb_vsr", slog.LevelDebug, true},
		{"kmb=info,kmb_vsr=debug", "kmb_vsr", LevelTrace, false},
		{"kmb=info,kmb_vsr=debug", "kmb_storage", slog.LevelDebug, false},
		{"kmb=info,kmb_vsr=debug", "kmb_storage", slog.LevelInfo, true},
		{"kmb=trace", "", LevelTrace, true}, // untargeted records are "kmb"
		{"warn,kmb_api=debug", "", slog.LevelInfo, false},
		{"warn,kmb_api=debug", "kmb_api", slog.LevelDebug, true},
		{"trace", "kmb_vsr", LevelTrace, true},
		{"kmb=off", "kmb_vsr", slog.LevelError, false},
		{"kmb=off", "kmb_vsr", slog.LevelError + 100, false},
		{"kmb=off,kmb_vsr=error", "kmb_vsr", slog.LevelError, true},
		{"kmb=off,kmb_vsr=error", "kmb_api", slog.LevelError, false},
		{"kmb=error", "other", slog.LevelInfo, true},
		{"kmb=debug", "kmbx", slog.LevelDebug, false},
	}
	derive := map[string]func(*slog.Logger, string) *slog.Logger{
		"ForModule": ForModule,
		"With": func(l *slog.Logger, m string) *slog.Logger {
			return l.With(slog.String(TargetKey, m))
		},
		"WithArgs": func(l *slog.Logger, m string) *slog.Logger {
			return l.With(TargetKey, m)
		},
	}
	ctx := context.Background()
	for _, tt := range tests {
		for how, d := range derive {
			h, buf := newTestHandler(t, Options{Levels: mustLevels(t, tt.spec)})
			l := slog.New(h)
			if tt.module != "" {
				l = d(l, tt.module)
			}
			if got := l.Enabled(ctx, tt.level); got != tt.want {
				t.Errorf("%s: KMB_LOG=%q %q Enabled(%s) = %v, want %v", how, tt.spec, tt.module, LevelName(tt.level), got, tt.want)
			}
			l.Log(ctx, tt.level, "m")
			if got := buf.Len() > 0; got != tt.want {
				t.Errorf("%s: KMB_LOG=%q %q logged %s: %v, want %v", how, tt.spec, tt.module, LevelName(tt.level), got, tt.want)
			}
		}
	}
}

// A logger can be re-targeted, and the level follows the target; derived
// loggers keep their parent's target and level.
func TestRetarget(t *testing.T) {
	h, buf := newTestHandler(t, Options{Levels: mustLevels(t, "warn,kmb_vsr=debug")})
	vsr := ForModule(slog.New(h), "kmb_vsr")
	storage := ForModule(vsr, "kmb_storage")
	child := vsr.With("replica", 2).WithGroup("g")
	ctx := context.Background()

	if !vsr.Enabled(ctx, slog.LevelDebug) || !child.Enabled(ctx, slog.LevelDebug) {
		t.Error("kmb_vsr loggers not enabled at DEBUG")
	}
	if storage.Enabled(ctx, slog.LevelInfo) {
		t.Error("kmb_storage enabled at INFO under warn")
	}
	child.Debug("x")
	storage.Warn("y")
	ms := checkJSONLines(t, buf.Bytes())
	if len(ms) != 2 || ms[0]["target"] != "kmb_vsr" || ms[1]["target"] != "kmb_storage" {
		t.Fatalf("targets = %v", ms)
	}
	if _, ok := ms[1]["fields"].(map[string]any)[TargetKey]; ok {
		t.Error("target written as a field")
	}
}

func TestSlogtest(t *testing.T) {
	// Records from slog.Logger always carry a time; the zero-time case
	// removes it, and the handler must then use its clock. This sentinel
	// clock lets the results function tell that apart and report the
	// time as missing, which is how slogtest spells "ignored".
	sentinel := time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
	const sentinelTS = "1999-12-31T23:59:59.000Z"
	toSlogtest := func(ts, level, msg string, fields map[string]any) map[string]any {
		m := fields
		if ts != sentinelTS {
			m[slog.TimeKey] = ts
		}
		m[slog.LevelKey] = level
		m[slog.MessageKey] = msg
		return m
	}

	t.Run("json", func(t *testing.T) {
		var buf bytes.Buffer
		slogtest.Run(t, func(t *testing.T) slog.Handler {
			buf.Reset()
			h, err := NewHandler(&buf, Options{Now: func() time.Time { return sentinel }})
			if err != nil {
				t.Fatal(err)
			}
			return h
		}, func(t *testing.T) map[string]any {
			m := checkJSONLine(t, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
			return toSlogtest(m["timestamp"].(string), m["level"].(string), m["message"].(string), m["fields"].(map[string]any))
		})
	})
	t.Run("text", func(t *testing.T) {
		var buf bytes.Buffer
		slogtest.Run(t, func(t *testing.T) slog.Handler {
			buf.Reset()
			h, err := NewHandler(&buf, Options{Format: "text", Now: func() time.Time { return sentinel }})
			if err != nil {
				t.Fatal(err)
			}
			return h
		}, func(t *testing.T) map[string]any {
			if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 {
				t.Fatalf("%d lines, want 1: %q", n, buf.Bytes())
			}
			ts, level, _, msg, fields, err := parseTextLine(buf.String())
			if err != nil {
				t.Fatal(err)
			}
			return toSlogtest(ts, level, msg, fields)
		})
	})
}

// singleWrites records each Write call separately. It has no lock of its
// own: under -race, overlapping calls are reported.
type singleWrites struct{ writes [][]byte }

func (w *singleWrites) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func TestConcurrentLogging(t *testing.T) {
	const goroutines, perGoroutine = 16, 300
	w := &singleWrites{}
	h, err := NewHandler(w, Options{Levels: mustLevels(t, "debug")})
	if err != nil {
		t.Fatal(err)
	}
	base := slog.New(h)
	traced := trace.ContextWithSpanContext(context.Background(), testSpanContext)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			// Derive concurrently too: WithAttrs/WithGroup must not share
			// mutable buffers between handlers.
			l := ForModule(base, fmt.Sprintf("kmb_%d", g%4)).With("g", g).WithGroup("grp")
			for i := range perGoroutine {
				switch i % 3 {
				case 0:
					l.Info("info", "i", i, "s", strings.Repeat("x", i), slog.Group("sub", "d", time.Duration(i)))
				case 1:
					l.DebugContext(traced, "debug", "i", i)
				case 2:
					l.With("k", i).Warn("warn")
				}
			}
		})
	}
	wg.Wait()

	if got, want := len(w.writes), goroutines*perGoroutine; got != want {
		t.Fatalf("%d writes, want %d (one per record)", got, want)
	}
	for _, p := range w.writes {
		if bytes.Count(p, []byte("\n")) != 1 || p[len(p)-1] != '\n' {
			t.Fatalf("write is not exactly one line: %q", p)
		}
		m := checkJSONLine(t, p[:len(p)-1])
		fields := m["fields"].(map[string]any)
		if _, ok := fields["g"].(float64); !ok {
			t.Fatalf("line lost its With field: %s", p)
		}
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestHandleReturnsWriteError(t *testing.T) {
	h, err := NewHandler(errWriter{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := slog.NewRecord(fixedTime, slog.LevelInfo, "m", 0)
	if err := h.Handle(context.Background(), r); err == nil || err.Error() != "disk full" {
		t.Errorf("Handle error = %v, want the writer's", err)
	}
}

// A writer that panics must not leave the shared mutex locked.
func TestPanickingWriterReleasesLock(t *testing.T) {
	w := &panicOnce{}
	h, err := NewHandler(w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := slog.New(h)
	func() {
		defer func() { _ = recover() }()
		l.Info("first")
	}()
	done := make(chan struct{})
	go func() { l.Info("second"); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("second log call blocked after a writer panic")
	}
}

type panicOnce struct{ panicked bool }

func (w *panicOnce) Write(p []byte) (int, error) {
	if !w.panicked {
		w.panicked = true
		panic("writer")
	}
	return len(p), nil
}

// Values round-trip through encoding/json exactly as json.Marshal's
// output does, whatever the bytes, including invalid UTF-8.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\x7f", "\xff\xc3(", "é\u2028\u2029", "\ufffd", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendJSONString(nil, s)
		if bytes.ContainsAny(enc, "\n\r") {
			t.Fatalf("encoding of %q contains a line break: %s", s, enc)
		}
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("encoding of %q is not a JSON string: %s: %v", s, enc, err)
		}
		std, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("%q encoded as %s decodes to %q, encoding/json gives %q", s, enc, got, want)
		}
	})
}

// Handle may be called directly with a nil context.
func TestHandleNilContext(t *testing.T) {
	h, buf := newTestHandler(t, Options{})
	var ctx context.Context // nil
	if err := h.Handle(ctx, slog.NewRecord(fixedTime, slog.LevelInfo, "m", 0)); err != nil {
		t.Fatal(err)
	}
	checkJSONLines(t, buf.Bytes())
}
