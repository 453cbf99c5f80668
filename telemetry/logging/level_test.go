package logging

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
	}{
		{"trace", LevelTrace},
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"warn", slog.LevelWarn},
		{"warning", slog.LevelWarn},
		{"error", slog.LevelError},
		{"off", LevelOff},
		{"TRACE", LevelTrace},
		{"Warning", slog.LevelWarn},
		{" Info\t", slog.LevelInfo},
	}
	for _, tt := range tests {
		got, err := ParseLevel(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, nil", tt.in, got, err, tt.want)
		}
	}
}

func TestParseLevelErrors(t *testing.T) {
	for _, in := range []string{"", " ", "verbose", "inf", "0", "-4", "warn ing", "info,debug"} {
		_, err := ParseLevel(in)
		if err == nil {
			t.Errorf("ParseLevel(%q) succeeded, want error", in)
			continue
		}
		if !errors.Is(err, ErrUnknownLevel) {
			t.Errorf("ParseLevel(%q) error %v does not wrap ErrUnknownLevel", in, err)
		}
		if msg := err.Error(); !strings.Contains(msg, acceptedLevels) {
			t.Errorf("ParseLevel(%q) error %q does not list the accepted levels", in, msg)
		}
	}
}

func TestLevelName(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  string
	}{
		{LevelTrace - 100, "TRACE"},
		{LevelTrace, "TRACE"},
		{slog.LevelDebug - 1, "TRACE"},
		{slog.LevelDebug, "DEBUG"},
		{slog.LevelDebug + 1, "DEBUG"},
		{slog.LevelInfo, "INFO"},
		{slog.LevelInfo + 2, "INFO"},
		{slog.LevelWarn, "WARN"},
		{slog.LevelError, "ERROR"},
		{slog.LevelError + 4, "ERROR"},
		{LevelOff, "OFF"},
	}
	for _, tt := range tests {
		if got := LevelName(tt.level); got != tt.want {
			t.Errorf("LevelName(%d) = %q, want %q", tt.level, got, tt.want)
		}
	}
}

// The names LevelName writes are the names ParseLevel reads.
func TestLevelNameRoundTrip(t *testing.T) {
	for _, l := range []slog.Level{LevelTrace, slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, LevelOff} {
		got, err := ParseLevel(LevelName(l))
		if err != nil || got != l {
			t.Errorf("ParseLevel(LevelName(%d)) = %v, %v", l, got, err)
		}
	}
}
