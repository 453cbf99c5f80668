package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// benchResult is one result line of Go benchmark output:
//
//	BenchmarkName/sub-P  N  v unit  v unit ...
type benchResult struct {
	pkg    string             // the pkg: line in force
	name   string             // without the -P suffix
	procs  int                // GOMAXPROCS: the -P suffix, 1 when there is none
	iters  int64              // N
	values map[string]float64 // unit -> value
}

// benchFile is one file of Go benchmark output.
type benchFile struct {
	name    string              // as named in errors, e.g. "primitives.txt"
	config  map[string][]string // key: value lines, distinct values in order
	results []benchResult
}

// procsSuffix is the -P that go test appends to a benchmark's name when
// GOMAXPROCS is not 1.
var procsSuffix = regexp.MustCompile(`^(.+)-([0-9]+)$`)

// configLine is a key: value line; the key starts with a lower-case letter
// and has no spaces, as in the Go benchmark data format.
var configLine = regexp.MustCompile(`^([a-z][^\s:]*):\s*(.*)$`)

// splitProcs splits a printed benchmark name into its name and GOMAXPROCS.
func splitProcs(s string) (string, int) {
	if m := procsSuffix.FindStringSubmatch(s); m != nil {
		if p, err := strconv.Atoi(m[2]); err == nil && p > 0 {
			return m[1], p
		}
	}
	return s, 1
}

// parseBench reads Go benchmark output: result lines and key: value
// configuration lines (goos, goarch, pkg, cpu, ...). Other lines (PASS, ok,
// a benchmark's log output) are skipped. A line that starts like a result
// (Benchmark..., then an iteration count) but does not parse is an error.
func parseBench(name string, r io.Reader) (*benchFile, error) {
	f := &benchFile{name: name, config: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	pkg := ""
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if strings.HasPrefix(line, "Benchmark") {
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue // a name printed before a benchmark's own output
			}
			iters, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				continue // not a result line
			}
			if len(fields) < 4 || len(fields)%2 != 0 {
				return nil, fmt.Errorf("%s:%d: result line without value-unit pairs: %q", name, lineNo, line)
			}
			res := benchResult{pkg: pkg, iters: iters, values: map[string]float64{}}
			res.name, res.procs = splitProcs(fields[0])
			for i := 2; i < len(fields); i += 2 {
				v, err := strconv.ParseFloat(fields[i], 64)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: value %q of unit %s: %v", name, lineNo, fields[i], fields[i+1], err)
				}
				res.values[fields[i+1]] = v
			}
			f.results = append(f.results, res)
			continue
		}
		if m := configLine.FindStringSubmatch(line); m != nil {
			key, val := m[1], strings.TrimSpace(m[2])
			if key == "pkg" {
				pkg = val
			}
			if !slices.Contains(f.config[key], val) {
				f.config[key] = append(f.config[key], val)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return f, nil
}

// lookup returns the results of one benchmark. bench is its name as
// printed without the -P suffix; when the file holds it at several
// GOMAXPROCS values (go test -cpu 1,2), bench must end in the -P to pick,
// -1 naming the runs printed without a suffix.
func (f *benchFile) lookup(bench string) ([]benchResult, error) {
	var out []benchResult
	for _, r := range f.results {
		if r.name == bench {
			out = append(out, r)
		}
	}
	if len(out) > 0 {
		var procs []int
		var pkgs []string
		for _, r := range out {
			if !slices.Contains(procs, r.procs) {
				procs = append(procs, r.procs)
			}
			if !slices.Contains(pkgs, r.pkg) {
				pkgs = append(pkgs, r.pkg)
			}
		}
		if len(pkgs) > 1 {
			return nil, fmt.Errorf("%s: %s is in several packages (%s)", f.name, bench, strings.Join(pkgs, ", "))
		}
		if len(procs) > 1 {
			slices.Sort(procs)
			var names []string
			for _, p := range procs {
				names = append(names, fmt.Sprintf("%s-%d", bench, p))
			}
			return nil, fmt.Errorf("%s: %s ran at GOMAXPROCS %s; name one: %s", f.name, bench, joinInts(procs), strings.Join(names, ", "))
		}
		return out, nil
	}
	if base, p := splitProcs(bench); base != bench {
		for _, r := range f.results {
			if r.name == base && r.procs == p {
				out = append(out, r)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s: no benchmark %s%s", f.name, bench, f.suggest(bench))
}

// suggest lists the benchmarks of the file that share bench's top-level
// name, or all of them, for an error message.
func (f *benchFile) suggest(bench string) string {
	top, _, _ := strings.Cut(bench, "/")
	top, _ = splitProcs(top)
	var same, all []string
	for _, r := range f.results {
		n := r.name
		if r.procs != 1 {
			n = fmt.Sprintf("%s-%d", r.name, r.procs)
		}
		if slices.Contains(all, n) {
			continue
		}
		all = append(all, n)
		if t, _, _ := strings.Cut(r.name, "/"); t == top {
			same = append(same, n)
		}
	}
	list := same
	if len(list) == 0 {
		list = all
	}
	if len(list) == 0 {
		return " (the file holds no results)"
	}
	more := ""
	if len(list) > 12 {
		more = fmt.Sprintf(", and %d more", len(list)-12)
		list = list[:12]
	}
	return " (have " + strings.Join(list, ", ") + more + ")"
}

// values returns the unit's value of every run of bench.
func (f *benchFile) values(bench, unit string) ([]float64, error) {
	rs, err := f.lookup(bench)
	if err != nil {
		return nil, err
	}
	var vs []float64
	for _, r := range rs {
		v, ok := r.values[unit]
		if !ok {
			var units []string
			for u := range r.values {
				units = append(units, u)
			}
			slices.Sort(units)
			return nil, fmt.Errorf("%s: %s has no %s (units: %s)", f.name, bench, unit, strings.Join(units, ", "))
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// matching returns the unit's values of every benchmark whose name (without
// -P) matches re, at any GOMAXPROCS.
func (f *benchFile) matching(pattern, unit string) ([]float64, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: pattern %q: %v", f.name, pattern, err)
	}
	var vs []float64
	for _, r := range f.results {
		if !re.MatchString(r.name) {
			continue
		}
		v, ok := r.values[unit]
		if !ok {
			return nil, fmt.Errorf("%s: %s has no %s", f.name, r.name, unit)
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%s: no benchmark matches %q", f.name, pattern)
	}
	return vs, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// median of vs, which is not empty: the middle value, or the mean of the
// middle two for an even count.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
