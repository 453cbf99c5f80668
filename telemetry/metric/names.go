package metric

import (
	"fmt"
	"strings"
)

// validMetricName reports whether name matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isLetter(c) || c == '_' || c == ':' || (i > 0 && isDigit(c))) {
			return false
		}
	}
	return true
}

// validLabelName reports whether name matches [a-zA-Z_][a-zA-Z0-9_]*.
func validLabelName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isLetter(c) || c == '_' || (i > 0 && isDigit(c))) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// checkNames panics unless name is a valid metric name and labelNames are
// valid, distinct and not reserved for kind.
func checkNames(name string, kind Kind, labelNames []string) {
	if !validMetricName(name) {
		panic(fmt.Sprintf("metric: invalid metric name %q: must match [a-zA-Z_:][a-zA-Z0-9_:]*", name))
	}
	for i, ln := range labelNames {
		switch {
		case !validLabelName(ln):
			panic(fmt.Sprintf("metric: %s: invalid label name %q: must match [a-zA-Z_][a-zA-Z0-9_]*", name, ln))
		case strings.HasPrefix(ln, "__"):
			panic(fmt.Sprintf("metric: %s: label name %q is reserved: names starting with __ are for Prometheus' internal use", name, ln))
		case kind == KindHistogram && ln == "le":
			panic(fmt.Sprintf("metric: %s: label name \"le\" is reserved for histogram buckets", name))
		}
		for _, prev := range labelNames[:i] {
			if prev == ln {
				panic(fmt.Sprintf("metric: %s: duplicate label name %q", name, ln))
			}
		}
	}
}
