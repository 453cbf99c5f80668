package logging

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Value types exercising each encoding path.
type (
	logValuer struct{}           // resolves to a group
	point     struct{ X, Y int } // plain json.Marshal
	tagged    struct {
		ID   uint64 `json:"id"`
		Name string `json:"name,omitempty"`
	}
	badJSON   struct{ A int } // MarshalJSON fails: fmt %+v fallback
	panicJSON struct{ B int } // MarshalJSON panics: fmt %+v fallback
	ptrErr    struct{ msg string }
)

func (logValuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", "abc"), slog.Int("n", 2))
}
func (badJSON) MarshalJSON() ([]byte, error)   { return nil, errors.New("no") }
func (panicJSON) MarshalJSON() ([]byte, error) { panic("boom") }
func (e *ptrErr) Error() string                { return e.msg }

// testSpanContext is a fixed, valid span context.
var testSpanContext = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
	SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	TraceFlags: trace.FlagsSampled,
})

type goldenRecord struct {
	name   string // documents the case; not written
	logger func(*slog.Logger) *slog.Logger
	ctx    context.Context
	time   time.Time // zero: the handler's clock
	level  slog.Level
	msg    string
	args   []any
}

func goldenRecords() []goldenRecord {
	traced := trace.ContextWithSpanContext(context.Background(), testSpanContext)
	module := func(m string) func(*slog.Logger) *slog.Logger {
		return func(l *slog.Logger) *slog.Logger { return ForModule(l, m) }
	}
	var nilPtrErr *ptrErr
	t0 := fixedTime
	return []goldenRecord{
		{name: "contract example", logger: module("kmb_consensus"), time: t0, level: slog.LevelInfo,
			msg: "Became leader", args: []any{"node_id", 1, "view", 5, "commit_index", 12345}},
		{name: "no target, no fields, no time", level: slog.LevelInfo, msg: "started"},
		{name: "timestamp truncates to ms, converts to UTC", logger: module("kmb_storage"),
			time: time.Date(2024, 1, 15, 11, 30, 0, 999_999_999, time.FixedZone("CET", 3600)), level: slog.LevelInfo, msg: "truncated"},
		{name: "trace", logger: module("kmb_vsr"), time: t0.Add(1 * time.Millisecond), level: LevelTrace, msg: "prepare sent", args: []any{"op", 7}},
		{name: "debug", logger: module("kmb_vsr"), time: t0.Add(2 * time.Millisecond), level: slog.LevelDebug, msg: "commit", args: []any{"op", 7}},
		{name: "warn", logger: module("kmb_api"), time: t0.Add(3 * time.Millisecond), level: slog.LevelWarn, msg: "slow request"},
		{name: "error", logger: module("kmb_storage"), time: t0.Add(4 * time.Millisecond), level: slog.LevelError, msg: "fsync failed",
			args: []any{"err", errors.New("input/output error")}},
		{name: "between named levels", time: t0.Add(5 * time.Millisecond), level: slog.LevelInfo + 2, msg: "info+2"},
		{name: "above error", time: t0.Add(6 * time.Millisecond), level: slog.LevelError + 4, msg: "error+4"},
		{name: "value kinds", logger: module("kmb_telemetry"), time: t0.Add(7 * time.Millisecond), level: slog.LevelInfo, msg: "kinds", args: []any{
			slog.String("string", "plain"),
			slog.String("empty", ""),
			slog.Int("int", -42),
			slog.Uint64("uint", math.MaxUint64),
			slog.Float64("float", 3.25),
			slog.Float64("tiny", 1e-7),
			slog.Float64("huge", 1e21),
			slog.Float64("nan", math.NaN()),
			slog.Float64("inf", math.Inf(1)),
			slog.Float64("neginf", math.Inf(-1)),
			slog.Bool("bool", true),
			slog.Duration("dur", 1500*time.Microsecond),
			slog.Duration("dur_us", 1500*time.Nanosecond),
			slog.Duration("dur_long", 90*time.Minute+time.Nanosecond),
			slog.Time("time", time.Date(2024, 1, 15, 11, 30, 0, 123_456_789, time.FixedZone("CET", 3600))),
			slog.Any("error", errors.New(`disk "sda" gone`)),
			slog.Any("nil", nil),
			slog.Any("nil_ptr_error", nilPtrErr),
			slog.Any("valuer", logValuer{}),
			slog.Any("struct", point{1, 2}),
			slog.Any("tagged", tagged{ID: 9}),
			slog.Any("map", map[string]int{"b": 2, "a": 1}),
			slog.Any("slice", []string{"x", "y z"}),
			slog.Any("bytes", []byte("hi")),
			slog.Any("addr", netip.MustParseAddr("10.0.0.1")),
			slog.Any("complex", complex(1, 2)),
			slog.Any("bad_json", badJSON{1}),
			slog.Any("panic_json", panicJSON{2}),
		}},
		{name: "groups", time: t0.Add(8 * time.Millisecond), level: slog.LevelInfo, msg: "groups", args: []any{
			"a", 1,
			slog.Group("g", slog.Int("b", 2), slog.Group("h", slog.Int("c", 3))),
			slog.Group("", slog.Int("inlined", 4)),
			slog.Group("empty"),
			slog.Group("only_empty", slog.Attr{}, slog.Group("nested_empty")),
			slog.Attr{},
			"z", 5,
		}},
		{name: "nested With/WithGroup", time: t0.Add(9 * time.Millisecond), level: slog.LevelInfo, msg: "nested",
			logger: func(l *slog.Logger) *slog.Logger {
				return ForModule(l, "kmb_vsr").With("a", 1).WithGroup("G").With("c", 2).WithGroup("H")
			},
			args: []any{"e", 3}},
		{name: "nested With/WithGroup, no record fields", time: t0.Add(10 * time.Millisecond), level: slog.LevelInfo, msg: "nested, none",
			logger: func(l *slog.Logger) *slog.Logger {
				return ForModule(l, "kmb_vsr").With("a", 1).WithGroup("G").With("c", 2).WithGroup("H").WithGroup("I")
			}},
		{name: "groups with nothing in them", time: t0.Add(11 * time.Millisecond), level: slog.LevelInfo, msg: "empty groups",
			logger: func(l *slog.Logger) *slog.Logger {
				return l.WithGroup("G").With(slog.Attr{}).WithGroup("H")
			},
			args: []any{slog.Attr{}}},
		{name: "target set inside a group is not a field", time: t0.Add(12 * time.Millisecond), level: slog.LevelInfo, msg: "retargeted",
			logger: func(l *slog.Logger) *slog.Logger {
				return l.WithGroup("G").With(TargetKey, "kmb_api", "route", "/v1/append")
			},
			args: []any{"status", 200}},
		{name: "record-level target key is a field", time: t0.Add(13 * time.Millisecond), level: slog.LevelInfo, msg: "field named target",
			logger: module("kmb_api"), args: []any{TargetKey, "not the target"}},
		{name: "empty module restores the default target", time: t0.Add(14 * time.Millisecond), level: slog.LevelInfo, msg: "default again",
			logger: func(l *slog.Logger) *slog.Logger { return ForModule(ForModule(l, "kmb_vsr"), "") }},
		{name: "escaping", time: t0.Add(15 * time.Millisecond), level: slog.LevelWarn,
			msg: "say \"hi\"\n\ttab\x01 del\x7f bad\xff é \u2028 back\\slash",
			args: []any{
				"we\"ird key", "v",
				"spaced key", "x",
				"needs quote", "a b",
				"equals", "a=b",
				"ctl", "\x00\x1f\r",
				"utf8", "héllo wörld",
				"invalid", "a\xc3\x28b",
				"backslash", `C:\dir`,
			}},
		{name: "trace and span ids", logger: module("kmb_api"), ctx: traced, time: t0.Add(16 * time.Millisecond), level: slog.LevelInfo,
			msg: "handled", args: []any{"status", 200}},
		{name: "trace ids stay top-level under groups", ctx: traced, time: t0.Add(17 * time.Millisecond), level: slog.LevelInfo, msg: "traced group",
			logger: func(l *slog.Logger) *slog.Logger { return ForModule(l, "kmb_api").With("a", 1).WithGroup("req") },
			args:   []any{"id", 9}},
		{name: "trace ids with no other fields", ctx: traced, time: t0.Add(18 * time.Millisecond), level: slog.LevelInfo, msg: "traced empty"},
		{name: "invalid span context is ignored", ctx: trace.ContextWithSpanContext(context.Background(), trace.SpanContext{}),
			time: t0.Add(19 * time.Millisecond), level: slog.LevelInfo, msg: "untraced"},
	}
}

// writeGoldenRecords logs the golden records through a handler of format.
func writeGoldenRecords(t *testing.T, format string) []byte {
	t.Helper()
	h, buf := newTestHandler(t, Options{
		Format: format,
		Levels: mustLevels(t, "trace"),
		Now:    func() time.Time { return fixedTime.Add(500 * time.Millisecond) },
	})
	base := slog.New(h)
	for _, g := range goldenRecords() {
		l := base
		if g.logger != nil {
			l = g.logger(base)
		}
		ctx := g.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		r := slog.NewRecord(g.time, g.level, g.msg, 0)
		r.Add(g.args...)
		if !l.Handler().Enabled(ctx, g.level) {
			t.Fatalf("%s: not enabled", g.name)
		}
		if err := l.Handler().Handle(ctx, r); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
	}
	return buf.Bytes()
}

func TestGoldenJSON(t *testing.T) {
	out := writeGoldenRecords(t, "json")
	checkGolden(t, "records.jsonl", out)
	if got, want := len(checkJSONLines(t, out)), len(goldenRecords()); got != want {
		t.Errorf("%d lines, want %d", got, want)
	}
}

func TestGoldenText(t *testing.T) {
	out := writeGoldenRecords(t, "text")
	checkGolden(t, "records.txt", out)
	if got, want := bytes.Count(out, []byte("\n")), len(goldenRecords()); got != want {
		t.Errorf("%d lines, want %d", got, want)
	}
}

// The example line of the documentation, byte for byte, in both formats.
func TestContractExample(t *testing.T) {
	tests := []struct{ format, want string }{
		{"json", `{"timestamp":"2024-01-15T10:30:00.000Z","level":"INFO","target":"kmb_consensus","message":"Became leader","fields":{"node_id":1,"view":5,"commit_index":12345}}` + "\n"},
		{"text", "2024-01-15T10:30:00.000Z INFO  kmb_consensus Became leader node_id=1 view=5 commit_index=12345\n"},
	}
	for _, tt := range tests {
		got := writeGoldenRecords(t, tt.format)
		if line, _, _ := bytes.Cut(got, []byte("\n")); string(line)+"\n" != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.format, line, tt.want)
		}
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gotLines), len(wantLines)) {
		var g, w string
		if i < len(gotLines) {
			g = gotLines[i]
		}
		if i < len(wantLines) {
			w = wantLines[i]
		}
		if g != w {
			t.Errorf("%s line %d:\n got %s\nwant %s", path, i+1, g, w)
		}
	}
	t.Errorf("%s differs from the output (run go test -update to accept it)", path)
}
