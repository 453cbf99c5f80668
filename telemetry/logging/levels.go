package logging

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"unicode"
)

// EnvVar is the environment variable that holds the per-module level spec.
const EnvVar = "KMB_LOG"

// Levels is a parsed KMB_LOG spec: a default level plus per-module
// directives. The zero value logs every module at INFO. A Levels is
// immutable once parsed and safe to share.
type Levels struct {
	def slog.Level
	// dirs is sorted longest module first, so the first match in For is
	// the most specific directive. Two distinct modules of equal length
	// can never both prefix the same name, so ties cannot matter.
	dirs []directive
}

type directive struct {
	module string
	level  slog.Level
}

// ParseLevels parses a KMB_LOG spec. The syntax follows RUST_LOG: a
// comma-separated list of directives, where a bare level sets the default
// and module=level sets the level of a module and of its submodules.
// Levels are those of [ParseLevel]. Empty directives and spaces around
// names are ignored; when a directive repeats, the last one wins. An empty
// spec yields def everywhere.
//
// A bare word that is not a level is an error rather than RUST_LOG's
// "everything for that module": with kmbd's few, well-known modules a typo
// such as "debgu" is far likelier than an intent to trace a module.
func ParseLevels(spec string, def slog.Level) (Levels, error) {
	l := Levels{def: def}
	for raw := range strings.SplitSeq(spec, ",") {
		d := strings.TrimSpace(raw)
		if d == "" {
			continue
		}
		module, name, ok := strings.Cut(d, "=")
		if !ok {
			level, err := parseLevel(d)
			if err != nil {
				return Levels{}, fmt.Errorf("logging: %s directive %q: %w; a module's level is set with module=level", EnvVar, d, err)
			}
			l.def = level
			continue
		}
		module = strings.TrimSpace(module)
		if module == "" || strings.ContainsFunc(module, unicode.IsSpace) {
			return Levels{}, fmt.Errorf("logging: %s directive %q: invalid module name %q", EnvVar, d, module)
		}
		level, err := parseLevel(name)
		if err != nil {
			return Levels{}, fmt.Errorf("logging: %s directive %q: %w", EnvVar, d, err)
		}
		l.set(module, level)
	}
	slices.SortFunc(l.dirs, func(a, b directive) int {
		if c := cmp.Compare(len(b.module), len(a.module)); c != 0 {
			return c
		}
		return strings.Compare(a.module, b.module)
	})
	return l, nil
}

// LevelsFromEnv parses the KMB_LOG environment variable with [ParseLevels].
func LevelsFromEnv(def slog.Level) (Levels, error) {
	return ParseLevels(os.Getenv(EnvVar), def)
}

func (l *Levels) set(module string, level slog.Level) {
	for i := range l.dirs {
		if l.dirs[i].module == module {
			l.dirs[i].level = level
			return
		}
	}
	l.dirs = append(l.dirs, directive{module, level})
}

// For returns the minimum level for module: that of the longest directive
// naming module or one of its ancestors, else the default. A directive
// names an ancestor when it is a prefix of module that ends at a "_", "::"
// or "." boundary, so "kmb" covers "kmb_vsr" and "kmb::vsr" but not
// "kmbx". Module names are case-sensitive.
//
// For is meant for deriving loggers, not for each record: handlers call it
// once per derived logger and cache the answer.
func (l Levels) For(module string) slog.Level {
	for _, d := range l.dirs {
		if covers(d.module, module) {
			return d.level
		}
	}
	return l.def
}

// covers reports whether a directive for prefix applies to module.
func covers(prefix, module string) bool {
	rest, ok := strings.CutPrefix(module, prefix)
	if !ok {
		return false
	}
	return rest == "" || rest[0] == '_' || rest[0] == '.' || strings.HasPrefix(rest, "::")
}
