package logging

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLevels(t *testing.T) {
	tests := []struct {
		spec string
		def  slog.Level
		want map[string]slog.Level // module -> For(module)
	}{
		{
			spec: "",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{"kmb": slog.LevelInfo, "kmb_vsr": slog.LevelInfo, "": slog.LevelInfo},
		},
		{
			spec: " \t ",
			def:  slog.LevelWarn,
			want: map[string]slog.Level{"kmb": slog.LevelWarn},
		},
		{
			spec: "debug",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{"kmb": slog.LevelDebug, "other": slog.LevelDebug},
		},
		{
			// The documented example.
			spec: "kmb=info,kmb_vsr=debug",
			def:  slog.LevelWarn,
			want: map[string]slog.Level{
				"kmb":             slog.LevelInfo,
				"kmb_vsr":         slog.LevelDebug,
				"kmb_storage":     slog.LevelInfo,
				"kmb_vsr_journal": slog.LevelDebug,
				"kmb_vsr.journal": slog.LevelDebug,
				"kmb_vsr::io":     slog.LevelDebug,
				"kmb_vsrx":        slog.LevelInfo, // not a boundary: falls back to kmb
				"kmbx":            slog.LevelWarn, // not a boundary: default
				"km":              slog.LevelWarn,
				"other":           slog.LevelWarn,
				"":                slog.LevelWarn,
			},
		},
		{
			// Order of directives does not matter, only specificity.
			spec: "kmb_vsr=debug,kmb=info",
			def:  slog.LevelWarn,
			want: map[string]slog.Level{"kmb_vsr": slog.LevelDebug, "kmb_storage": slog.LevelInfo},
		},
		{
			spec: "kmb=info,kmb_vsr=debug,kmb_vsr_journal=trace",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{
				"kmb_vsr_journal_io": LevelTrace,
				"kmb_vsr_replica":    slog.LevelDebug,
				"kmb_api":            slog.LevelInfo,
			},
		},
		{
			spec: "warn,kmb=off",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{"kmb": LevelOff, "kmb_api": LevelOff, "other": slog.LevelWarn},
		},
		{
			// Levels are case-insensitive, "warning" is "warn".
			spec: "kmb=WARNING,kmb_api=Trace,ERROR",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{"kmb": slog.LevelWarn, "kmb_api": LevelTrace, "x": slog.LevelError},
		},
		{
			// Module names are not.
			spec: "KMB=debug",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{"kmb": slog.LevelInfo, "KMB": slog.LevelDebug, "KMB_vsr": slog.LevelDebug},
		},
		{
			// The last of repeated directives wins.
			spec: "kmb=debug,info,kmb=error,warn",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{"kmb": slog.LevelError, "other": slog.LevelWarn},
		},
		{
			// Spaces and empty directives are ignored.
			spec: " kmb = debug , , kmb_api=\terror ,",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{"kmb": slog.LevelDebug, "kmb_api": slog.LevelError},
		},
		{
			spec: "kmb::vsr=trace,kmb.io=error",
			def:  slog.LevelInfo,
			want: map[string]slog.Level{
				"kmb::vsr":       LevelTrace,
				"kmb::vsr::view": LevelTrace,
				"kmb::vsr_x":     LevelTrace,
				"kmb_vsr":        slog.LevelInfo,
				"kmb.io.disk":    slog.LevelError,
				"kmb.iox":        slog.LevelInfo,
			},
		},
	}
	for _, tt := range tests {
		l, err := ParseLevels(tt.spec, tt.def)
		if err != nil {
			t.Errorf("ParseLevels(%q): %v", tt.spec, err)
			continue
		}
		for module, want := range tt.want {
			if got := l.For(module); got != want {
				t.Errorf("ParseLevels(%q).For(%q) = %s, want %s", tt.spec, module, LevelName(got), LevelName(want))
			}
		}
	}
}

func TestParseLevelsErrors(t *testing.T) {
	tests := []struct {
		spec string
		want []string // substrings of the error
		bad  bool     // wraps ErrUnknownLevel
	}{
		{"verbose", []string{`"verbose"`, acceptedLevels, "module=level"}, true},
		{"kmb=verbose", []string{`directive "kmb=verbose"`, `"verbose"`, acceptedLevels}, true},
		{"kmb=info,kmb_vsr=debgu", []string{`directive "kmb_vsr=debgu"`, `"debgu"`}, true},
		{"kmb=", []string{`directive "kmb="`, `""`}, true},
		{"kmb=debug=trace", []string{`"debug=trace"`}, true},
		{"kmb=info,kmb_vsr", []string{`directive "kmb_vsr"`, "module=level"}, true},
		{"=debug", []string{`directive "=debug"`, "invalid module name"}, false},
		{" = debug", []string{"invalid module name"}, false},
		{"kmb vsr=debug", []string{`"kmb vsr"`, "invalid module name"}, false},
	}
	for _, tt := range tests {
		_, err := ParseLevels(tt.spec, slog.LevelInfo)
		if err == nil {
			t.Errorf("ParseLevels(%q) succeeded, want error", tt.spec)
			continue
		}
		for _, sub := range tt.want {
			if !strings.Contains(err.Error(), sub) {
				t.Errorf("ParseLevels(%q) error %q does not contain %q", tt.spec, err, sub)
			}
		}
		if got := errors.Is(err, ErrUnknownLevel); got != tt.bad {
			t.Errorf("ParseLevels(%q): errors.Is(err, ErrUnknownLevel) = %v, want %v", tt.spec, got, tt.bad)
		}
	}
}

func TestZeroLevels(t *testing.T) {
	var l Levels
	if got := l.For("kmb_vsr"); got != slog.LevelInfo {
		t.Errorf("Levels{}.For = %v, want INFO", got)
	}
}

func TestLevelsFromEnv(t *testing.T) {
	t.Setenv(EnvVar, "error,kmb_vsr=trace")
	l, err := LevelsFromEnv(slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.For("kmb_vsr"); got != LevelTrace {
		t.Errorf("For(kmb_vsr) = %v, want TRACE", got)
	}
	if got := l.For("kmb_api"); got != slog.LevelError {
		t.Errorf("For(kmb_api) = %v, want ERROR", got)
	}

	t.Setenv(EnvVar, "")
	if l, err = LevelsFromEnv(slog.LevelDebug); err != nil || l.For("kmb") != slog.LevelDebug {
		t.Errorf("empty %s: For(kmb) = %v, %v; want the default DEBUG", EnvVar, l.For("kmb"), err)
	}
}

func FuzzParseLevels(f *testing.F) {
	for _, seed := range []struct{ spec, module string }{
		{"", "kmb"},
		{"debug", "kmb_vsr"},
		{"kmb=info,kmb_vsr=debug", "kmb_vsr"},
		{"kmb=info,kmb_vsr=debug", "kmb_storage"},
		{"warn,kmb=off,kmb_api=TRACE", "kmb_api::http"},
		{"kmb::vsr=trace,kmb.io=error", "kmb.io.disk"},
		{" kmb = debug , , kmb_api=\terror ,", "kmb_api"},
		{"kmb=verbose", "kmb"},
		{"=,=,,", ""},
		{"kmb_=debug,kmb=info", "kmb__x"},
	} {
		f.Add(seed.spec, seed.module)
	}
	named := map[slog.Level]bool{
		LevelTrace: true, slog.LevelDebug: true, slog.LevelInfo: true,
		slog.LevelWarn: true, slog.LevelError: true, LevelOff: true,
	}
	const def = slog.Level(3) // unnamed, so a result of def is unambiguous
	f.Fuzz(func(t *testing.T, spec, module string) {
		l, err := ParseLevels(spec, def)
		if err != nil {
			return
		}
		got := l.For(module)
		if again := l.For(module); again != got {
			t.Fatalf("For(%q) not deterministic: %v then %v", module, got, again)
		}
		l2, err := ParseLevels(spec, def)
		if err != nil {
			t.Fatalf("second parse of %q failed: %v", spec, err)
		}
		if got2 := l2.For(module); got2 != got {
			t.Fatalf("two parses of %q disagree on %q: %v and %v", spec, module, got, got2)
		}
		if got != def && !named[got] {
			t.Fatalf("For(%q) = %d, neither the default nor a named level", module, got)
		}
		if want := referenceFor(spec, def, module); got != want {
			t.Fatalf("ParseLevels(%q).For(%q) = %v, reference says %v", spec, module, got, want)
		}
	})
}

// referenceFor is a deliberately naive reading of the KMB_LOG rules, used
// as an oracle: directives in order, last one per module wins, and the
// longest module covering the name applies.
func referenceFor(spec string, def slog.Level, module string) slog.Level {
	best, bestLen := def, -1
	for _, d := range strings.Split(spec, ",") {
		name, lvl, ok := strings.Cut(strings.TrimSpace(d), "=")
		if !ok {
			continue // bare levels only change the default, handled below
		}
		name = strings.TrimSpace(name)
		level, err := ParseLevel(lvl)
		if err != nil {
			panic("accepted spec with bad level: " + spec)
		}
		if !(module == name || strings.HasPrefix(module, name+"_") ||
			strings.HasPrefix(module, name+".") || strings.HasPrefix(module, name+"::")) {
			continue
		}
		if len(name) >= bestLen { // >=: a later repeat of the same module wins
			best, bestLen = level, len(name)
		}
	}
	if bestLen >= 0 {
		return best
	}
	for _, d := range strings.Split(spec, ",") {
		if d = strings.TrimSpace(d); d != "" && !strings.Contains(d, "=") {
			def, _ = ParseLevel(d)
		}
	}
	return def
}
