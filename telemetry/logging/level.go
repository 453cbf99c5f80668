package logging

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
)

const (
	// LevelTrace is kmbd's level below DEBUG, for output too chatty even
	// for debugging sessions (per-message protocol traces and the like).
	LevelTrace = slog.Level(-8)

	// LevelOff is what "off" parses to. It sits above every level anyone
	// logs at, so a handler whose minimum is LevelOff lets nothing through
	// while [Handler.Enabled] stays a single comparison.
	LevelOff = slog.Level(math.MaxInt)
)

// acceptedLevels is spelled out in error messages so that an operator who
// mistypes KMB_LOG learns the fix from the error alone.
const acceptedLevels = "trace, debug, info, warn, error, off"

// ErrUnknownLevel is wrapped by the errors of [ParseLevel] and [ParseLevels]
// for a level name that is not one of the accepted ones.
var ErrUnknownLevel = errors.New("unknown log level")

// ParseLevel parses a level name as used by the log_level configuration
// key and in KMB_LOG: trace, debug, info, warn (or warning), error or off,
// in any letter case and with surrounding spaces ignored.
func ParseLevel(s string) (slog.Level, error) {
	l, err := parseLevel(s)
	if err != nil {
		return 0, fmt.Errorf("logging: %w", err)
	}
	return l, nil
}

// parseLevel is ParseLevel without the package prefix on errors, for
// wrapping by ParseLevels.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "off":
		return LevelOff, nil
	}
	return 0, fmt.Errorf("%w %q (accepted: %s)", ErrUnknownLevel, s, acceptedLevels)
}

// LevelName returns the name written in the "level" field: TRACE, DEBUG,
// INFO, WARN or ERROR. Levels between the named ones (slog allows any int)
// take the name of the nearest named level below them, so the field only
// ever holds one of the five documented names; a level below TRACE is
// TRACE. LevelOff and above are "OFF", which no record should carry.
func LevelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "TRACE"
	case l < slog.LevelInfo:
		return "DEBUG"
	case l < slog.LevelWarn:
		return "INFO"
	case l < slog.LevelError:
		return "WARN"
	case l < LevelOff:
		return "ERROR"
	}
	return "OFF"
}
