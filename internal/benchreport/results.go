package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// results is a results directory of scripts/bench.sh, read as the
// template asks for its files:
//
//	NAME.txt   go test -bench output of a group
//	NAME.json  kmbd bench --json output (its last line is the result)
//	NAME.meta  key: value lines: the command, date, commit, go, goos,
//	           goarch, ncpu, kernel, load (load average at the start), note
type results struct {
	dir     string
	bench   map[string]*benchFile
	json    map[string]map[string]any
	meta    map[string]map[string]string
	machine *Machine
}

func newResults(dir string) *results {
	return &results{dir: dir, bench: map[string]*benchFile{}, json: map[string]map[string]any{}, meta: map[string]map[string]string{}}
}

// path returns the file's path in the directory: name, with ext added
// unless it already ends in it.
func (r *results) path(name, ext string) (string, string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", "", fmt.Errorf("results file %q: a name in the results directory is expected", name)
	}
	base := strings.TrimSuffix(name, ext) + ext
	return filepath.Join(r.dir, base), base, nil
}

func (r *results) read(name, ext string) ([]byte, string, error) {
	p, base, err := r.path(name, ext)
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, base, fmt.Errorf("%s: no such file in %s (scripts/bench.sh writes it)", base, r.dir)
	}
	if err != nil {
		return nil, base, err
	}
	return data, base, nil
}

// benchFile returns the parsed NAME.txt.
func (r *results) benchFile(name string) (*benchFile, error) {
	key := strings.TrimSuffix(name, ".txt")
	if f, ok := r.bench[key]; ok {
		return f, nil
	}
	data, base, err := r.read(key, ".txt")
	if err != nil {
		return nil, err
	}
	f, err := parseBench(base, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if len(f.results) == 0 {
		return nil, fmt.Errorf("%s: no benchmark results", base)
	}
	r.bench[key] = f
	return f, nil
}

// jsonResult returns the object on the last non-empty line of NAME.json.
// A run that was interrupted, or in which no request succeeded, is an
// error: its figures are not a result.
func (r *results) jsonResult(name string) (map[string]any, error) {
	key := strings.TrimSuffix(name, ".json")
	if obj, ok := r.json[key]; ok {
		return obj, nil
	}
	data, base, err := r.read(key, ".json")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	var obj map[string]any
	if err := json.Unmarshal([]byte(last), &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%s: the last line is not a JSON object (kmbd bench --json prints one)", base)
	}
	if v, _ := obj["interrupted"].(bool); v {
		return nil, fmt.Errorf("%s: the run was interrupted; its figures cover part of the measured time only", base)
	}
	if n, ok := obj["requests"].(float64); ok && n == 0 {
		return nil, fmt.Errorf("%s: no request succeeded in the run", base)
	}
	r.json[key] = obj
	return obj, nil
}

// field returns FIELD of the top-level object of NAME.json.
func (r *results) field(name, field string) (any, error) {
	obj, err := r.jsonResult(name)
	if err != nil {
		return nil, err
	}
	return getField(obj, field, strings.TrimSuffix(name, ".json")+".json")
}

// variant returns FIELD of the variant named NAME in the compare list of a
// kmbd bench --compare result.
func (r *results) variant(name, variant, field string) (any, error) {
	obj, err := r.jsonResult(name)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(name, ".json") + ".json"
	list, ok := obj["compare"].([]any)
	if !ok {
		return nil, fmt.Errorf("%s: no compare list (not a kmbd bench --compare result)", base)
	}
	var names []string
	for _, item := range list {
		v, _ := item.(map[string]any)
		n, _ := v["variant"].(string)
		if n != variant {
			names = append(names, fmt.Sprintf("%q", n))
			continue
		}
		where := fmt.Sprintf("%s: variant %s", base, variant)
		runs, _ := v["runs"].([]any)
		if len(runs) == 0 {
			failed, _ := v["failed_runs"].(float64)
			return nil, fmt.Errorf("%s: no completed run (%v failed)", where, failed)
		}
		return getField(v, field, where)
	}
	return nil, fmt.Errorf("%s: no variant %q (have %s)", base, variant, strings.Join(names, ", "))
}

// roundRatio is the median over the rounds of a --compare series of the
// variant's entries/s divided by the baseline's in the same round: each
// round runs every variant once, back to back, so the ratio within a round
// leaves out what changed between rounds. It needs every run of both
// variants to have completed (runs are listed in round order, without the
// failed ones).
func (r *results) roundRatio(name, variant, baseline string) (float64, error) {
	base := strings.TrimSuffix(name, ".json") + ".json"
	var runs [2][]any
	for i, v := range []string{variant, baseline} {
		x, err := r.variant(name, v, "runs")
		if err != nil {
			return 0, err
		}
		runs[i], _ = x.([]any)
		failed, err := r.variant(name, v, "failed_runs")
		if err != nil {
			return 0, err
		}
		if f, _ := failed.(float64); f != 0 {
			return 0, fmt.Errorf("%s: variant %s has %v failed runs; its runs cannot be paired by round", base, v, f)
		}
	}
	if len(runs[0]) != len(runs[1]) {
		return 0, fmt.Errorf("%s: variants %s and %s have %d and %d runs", base, variant, baseline, len(runs[0]), len(runs[1]))
	}
	ratios := make([]float64, len(runs[0]))
	for i := range runs[0] {
		a, err := toFloat(runs[0][i])
		if err != nil {
			return 0, fmt.Errorf("%s: variant %s run %d: %v", base, variant, i+1, err)
		}
		b, err := toFloat(runs[1][i])
		if err != nil || b == 0 {
			return 0, fmt.Errorf("%s: variant %s run %d: %v entries/s", base, baseline, i+1, runs[1][i])
		}
		ratios[i] = a / b
	}
	return median(ratios), nil
}

func getField(obj map[string]any, field, where string) (any, error) {
	v, ok := obj[field]
	if !ok {
		var keys []string
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return nil, fmt.Errorf("%s: no field %q (fields: %s)", where, field, strings.Join(keys, ", "))
	}
	if v == nil {
		return nil, fmt.Errorf("%s: %s is null", where, field)
	}
	return v, nil
}

// metaFile returns the key: value lines of NAME.meta.
func (r *results) metaFile(name string) (map[string]string, error) {
	key := strings.TrimSuffix(name, ".meta")
	if m, ok := r.meta[key]; ok {
		return m, nil
	}
	data, _, err := r.read(key, ".meta")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k != "" {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	r.meta[key] = m
	return m, nil
}

func (r *results) metaValue(name, key string) (string, error) {
	m, err := r.metaFile(name)
	if err != nil {
		return "", err
	}
	v, ok := m[key]
	if !ok || v == "" {
		return "", fmt.Errorf("%s.meta: no %s", strings.TrimSuffix(name, ".meta"), key)
	}
	return v, nil
}

// Machine describes where the results were measured, from every .meta
// and .txt file of the directory, which must agree.
type Machine struct {
	CPU    string // the cpu: line of go test
	GOOS   string
	GOARCH string
	Go     string // go version, e.g. go1.26.8
	NumCPU string // online CPUs
	Kernel string // uname -sr
	First  string // date the first group started
	Last   string // date the last group started
	Groups []Group
}

// Group is one results file's conditions, from its .meta.
type Group struct {
	Name    string // e.g. "primitives", "kmbd-nodes3"
	Date    string
	Commit  string // git describe --always --dirty of the tree, or empty
	Load    string // 1, 5 and 15-minute load averages at the start, or empty
	Note    string // KMB_BENCH_NOTE when the group ran, or empty
	Command string
}

func (r *results) loadMachine() (*Machine, error) {
	if r.machine != nil {
		return r.machine, nil
	}
	metas, err := filepath.Glob(filepath.Join(r.dir, "*.meta"))
	if err != nil {
		return nil, err
	}
	if len(metas) == 0 {
		return nil, fmt.Errorf("machine: no .meta files in %s (scripts/bench.sh writes one per group)", r.dir)
	}
	slices.Sort(metas)
	m := &Machine{}
	agreed := map[string]string{} // key -> "value (file)"
	fields := []struct {
		key      string
		dst      *string
		optional bool
	}{
		{"go", &m.Go, false}, {"goos", &m.GOOS, false}, {"goarch", &m.GOARCH, false},
		{"ncpu", &m.NumCPU, false}, {"kernel", &m.Kernel, false},
	}
	for _, p := range metas {
		name := strings.TrimSuffix(filepath.Base(p), ".meta")
		meta, err := r.metaFile(name)
		if err != nil {
			return nil, err
		}
		for _, f := range fields {
			v := meta[f.key]
			if v == "" && !f.optional {
				return nil, fmt.Errorf("machine: %s.meta has no %s", name, f.key)
			}
			if prev, ok := agreed[f.key]; ok && v != *f.dst {
				return nil, fmt.Errorf("machine: %s.meta has %s %q but %s: results from different machines or conditions", name, f.key, v, prev)
			}
			*f.dst = v
			agreed[f.key] = fmt.Sprintf("%q in %s.meta", v, name)
		}
		g := Group{Name: name, Date: meta["date"], Commit: meta["commit"], Load: meta["load"], Note: meta["note"], Command: meta["command"]}
		if g.Date == "" || g.Command == "" {
			return nil, fmt.Errorf("machine: %s.meta has no date or command", name)
		}
		m.Groups = append(m.Groups, g)
	}
	slices.SortStableFunc(m.Groups, func(a, b Group) int { return strings.Compare(a.Date, b.Date) })
	m.First, m.Last = m.Groups[0].Date, m.Groups[len(m.Groups)-1].Date

	txts, err := filepath.Glob(filepath.Join(r.dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	slices.Sort(txts)
	cpuFrom := ""
	for _, p := range txts {
		f, err := r.benchFile(strings.TrimSuffix(filepath.Base(p), ".txt"))
		if err != nil {
			return nil, err
		}
		for _, c := range f.config["cpu"] {
			if m.CPU != "" && c != m.CPU {
				return nil, fmt.Errorf("machine: %s has cpu %q but %s has %q", f.name, c, cpuFrom, m.CPU)
			}
			m.CPU, cpuFrom = c, f.name
		}
		for key, want := range map[string]string{"goos": m.GOOS, "goarch": m.GOARCH} {
			for _, v := range f.config[key] {
				if v != want {
					return nil, fmt.Errorf("machine: %s has %s %q but the .meta files %q", f.name, key, v, want)
				}
			}
		}
	}
	if m.CPU == "" {
		return nil, fmt.Errorf("machine: no cpu: line in any .txt file of %s", r.dir)
	}
	r.machine = m
	return m, nil
}
