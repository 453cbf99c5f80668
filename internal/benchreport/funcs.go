package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

// Span is a min–max pair; the formatting functions print it as "a–b", or
// as one number when both ends print the same.
type Span struct{ Min, Max float64 }

// funcs returns the template functions over the results directory.
//
// Go benchmarks (FILE is a group, e.g. "primitives" for primitives.txt;
// BENCH a name as printed without the -P suffix, or with it to pick one
// GOMAXPROCS of a -cpu list, -1 for the runs printed without a suffix):
//
//	median FILE BENCH UNIT   median over the runs (go test -count)
//	min, max FILE BENCH UNIT the smallest and largest run
//	minmax FILE BENCH UNIT   both, as a Span
//	runs FILE BENCH          the number of runs
//	maxOf FILE REGEXP UNIT   largest value over every benchmark matching
//	span X Y ...             the smallest and largest of numbers, as a Span
//
// kmbd bench results (FILE is e.g. "kmbd-nodes3" for kmbd-nodes3.json):
//
//	result FILE FIELD           a field of the run (or of a --compare series)
//	variant FILE NAME FIELD     a field of one variant of a --compare series
//	roundRatio FILE NAME BASE   median over rounds of NAME's entries/s over
//	                            BASE's in the same round
//
// Template helpers:
//
//	list X Y ...   a list, for range and for a define's argument
//
// Where and how (from the .meta files bench.sh writes):
//
//	command FILE   the exact command that produced FILE
//	meta FILE KEY  another line of FILE.meta (date, load, ...)
//	machine        a Machine: CPU, GOOS, GOARCH, Go, NumCPU, Kernel, Note,
//	               First, Last, Groups
//
// Numbers (each takes a number or a Span as its last argument):
//
//	commas X       integer with thousands separators: 293,063
//	sig N X        N significant digits: 1.77, 12.9, 6.40, 124,000
//	fixed N X      N decimals: 0.34
//	si N X         N significant digits with k, M or G: 552k, 3.09M
//	bytes X        decimal B, KB, MB, GB: 9.8 KB, 189 KB, 1.0 MB
//	ms X, us X     nanoseconds to milliseconds, microseconds
//	pct X          X × 100
//	change R       a ratio as a signed change: 0.973 → -2.7%, 1.02 → +2.0%
//	add, sub, mul, div A B
//
// Every function fails, naming the file and what is missing, rather than
// print an empty or zero figure.
func funcs(r *results) template.FuncMap {
	stat := func(f func([]float64) any) func(file, bench, unit string) (any, error) {
		return func(file, bench, unit string) (any, error) {
			bf, err := r.benchFile(file)
			if err != nil {
				return nil, err
			}
			vs, err := bf.values(bench, unit)
			if err != nil {
				return nil, err
			}
			return f(vs), nil
		}
	}
	return template.FuncMap{
		"median": stat(func(vs []float64) any { return median(vs) }),
		"min":    stat(func(vs []float64) any { return slices.Min(vs) }),
		"max":    stat(func(vs []float64) any { return slices.Max(vs) }),
		"minmax": stat(func(vs []float64) any { return Span{slices.Min(vs), slices.Max(vs)} }),
		"runs": func(file, bench string) (int, error) {
			bf, err := r.benchFile(file)
			if err != nil {
				return 0, err
			}
			rs, err := bf.lookup(bench)
			return len(rs), err
		},
		"maxOf": func(file, pattern, unit string) (float64, error) {
			bf, err := r.benchFile(file)
			if err != nil {
				return 0, err
			}
			vs, err := bf.matching(pattern, unit)
			if err != nil {
				return 0, err
			}
			return slices.Max(vs), nil
		},
		"span": func(xs ...any) (Span, error) {
			if len(xs) == 0 {
				return Span{}, fmt.Errorf("span: no numbers")
			}
			var vs []float64
			for _, x := range xs {
				v, err := toFloat(x)
				if err != nil {
					return Span{}, fmt.Errorf("span: %v", err)
				}
				vs = append(vs, v)
			}
			return Span{slices.Min(vs), slices.Max(vs)}, nil
		},
		"list":       func(xs ...any) []any { return xs },
		"result":     r.field,
		"variant":    r.variant,
		"roundRatio": r.roundRatio,
		"command":    func(file string) (string, error) { return r.metaValue(file, "command") },
		"meta":       r.metaValue,
		"machine":    r.loadMachine,

		"commas": func(x any) (string, error) {
			return format(x, func(v float64) string { return group(strconv.FormatFloat(math.Round(v), 'f', 0, 64)) })
		},
		"sig": func(n int, x any) (string, error) {
			if n < 1 {
				return "", fmt.Errorf("sig %d: at least one digit", n)
			}
			return format(x, func(v float64) string { return sig(n, v) })
		},
		"fixed": func(n int, x any) (string, error) {
			if n < 0 {
				return "", fmt.Errorf("fixed %d: negative decimals", n)
			}
			return format(x, func(v float64) string { return group(noNegZero(strconv.FormatFloat(v, 'f', n, 64))) })
		},
		"si": func(n int, x any) (string, error) {
			if n < 1 {
				return "", fmt.Errorf("si %d: at least one digit", n)
			}
			return format(x, func(v float64) string { return si(n, v) })
		},
		"bytes": func(x any) (string, error) { return format(x, byteSize) },
		"ms":    func(x any) (any, error) { return mapNum(x, func(v float64) float64 { return v / 1e6 }) },
		"us":    func(x any) (any, error) { return mapNum(x, func(v float64) float64 { return v / 1e3 }) },
		"pct":   func(x any) (any, error) { return mapNum(x, func(v float64) float64 { return v * 100 }) },
		"change": func(x any) (string, error) {
			return format(x, func(v float64) string {
				s := noNegZero(strconv.FormatFloat((v-1)*100, 'f', 1, 64))
				if !strings.HasPrefix(s, "-") {
					s = "+" + s
				}
				return s + "%"
			})
		},
		"add": arith("add", func(a, b float64) float64 { return a + b }),
		"sub": arith("sub", func(a, b float64) float64 { return a - b }),
		"mul": arith("mul", func(a, b float64) float64 { return a * b }),
		"div": func(a, b any) (float64, error) {
			x, y, err := twoNums("div", a, b)
			if err != nil {
				return 0, err
			}
			if y == 0 {
				return 0, fmt.Errorf("div: division of %v by zero", x)
			}
			return x / y, nil
		},
	}
}

func arith(name string, f func(a, b float64) float64) func(a, b any) (float64, error) {
	return func(a, b any) (float64, error) {
		x, y, err := twoNums(name, a, b)
		if err != nil {
			return 0, err
		}
		return f(x, y), nil
	}
}

func twoNums(name string, a, b any) (float64, float64, error) {
	x, err := toFloat(a)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %v", name, err)
	}
	y, err := toFloat(b)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %v", name, err)
	}
	return x, y, nil
}

func toFloat(x any) (float64, error) {
	var v float64
	switch n := x.(type) {
	case float64:
		v = n
	case float32:
		v = float64(n)
	case int:
		v = float64(n)
	case int64:
		v = float64(n)
	case uint64:
		v = float64(n)
	case json.Number:
		f, err := n.Float64()
		if err != nil {
			return 0, err
		}
		v = f
	default:
		return 0, fmt.Errorf("%v (%T) is not a number", x, x)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%v is not a finite number", v)
	}
	return v, nil
}

// mapNum applies f to a number or to both ends of a Span.
func mapNum(x any, f func(float64) float64) (any, error) {
	if s, ok := x.(Span); ok {
		return Span{f(s.Min), f(s.Max)}, nil
	}
	v, err := toFloat(x)
	if err != nil {
		return nil, err
	}
	return f(v), nil
}

// format prints a number, or a Span as "min–max" (one number when both
// ends print the same).
func format(x any, f func(float64) string) (string, error) {
	if s, ok := x.(Span); ok {
		a, b := f(s.Min), f(s.Max)
		if a == b {
			return a, nil
		}
		return a + "–" + b, nil
	}
	v, err := toFloat(x)
	if err != nil {
		return "", err
	}
	return f(v), nil
}

// group adds thousands separators to the integer part of a formatted
// number.
func group(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := sign + b.String()
	if hasFrac {
		out += "." + frac
	}
	return out
}

// roundSig rounds v to n significant digits and returns the number of
// decimals that shows them (0 when they are all in the integer part).
func roundSig(n int, v float64) (float64, int) {
	if v == 0 {
		return 0, 0
	}
	exp := int(math.Floor(math.Log10(math.Abs(v))))
	dec := n - 1 - exp
	p := math.Pow(10, float64(dec))
	r := math.Round(v*p) / p
	// Rounding up may add a digit (9.96 → 10.0): one decimal fewer.
	if r != 0 && int(math.Floor(math.Log10(math.Abs(r)))) > exp {
		dec--
	}
	return r, max(dec, 0)
}

// sig prints v with n significant digits (trailing zeros included: 1.70)
// and thousands separators.
func sig(n int, v float64) string {
	r, dec := roundSig(n, v)
	return group(noNegZero(strconv.FormatFloat(r, 'f', dec, 64)))
}

// si prints v with n significant digits and a k, M or G suffix.
func si(n int, v float64) string {
	r, _ := roundSig(n, v)
	for _, u := range []struct {
		div    float64
		suffix string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(r) >= u.div {
			return sig(n, r/u.div) + u.suffix
		}
	}
	return sig(n, r)
}

// byteSize prints a byte count in decimal units: one decimal below 10,
// none from 10.
func byteSize(v float64) string {
	unit := "B"
	for _, u := range []struct {
		div  float64
		name string
	}{{1e9, "GB"}, {1e6, "MB"}, {1e3, "KB"}} {
		if math.Abs(v) >= u.div {
			v, unit = v/u.div, u.name
			break
		}
	}
	if unit == "B" {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64) + " B"
	}
	dec := 0
	if math.Abs(v) < 9.95 {
		dec = 1
	}
	return strconv.FormatFloat(v, 'f', dec, 64) + " " + unit
}

// noNegZero turns a formatted negative zero ("-0", "-0.00") into zero.
func noNegZero(s string) string {
	if strings.HasPrefix(s, "-") && strings.Trim(s[1:], "0.") == "" {
		return s[1:]
	}
	return s
}
