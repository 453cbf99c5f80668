package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

const fixtures = "testdata/results"

func renderString(t *testing.T, dir, text string) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	err := render(&buf, "test.tmpl", text, dir)
	return buf.String(), err
}

func mustRender(t *testing.T, dir, text string) string {
	t.Helper()
	out, err := renderString(t, dir, text)
	if err != nil {
		t.Fatalf("render %q: %v", text, err)
	}
	return out
}

func TestParseBench(t *testing.T) {
	f, err := os.Open(filepath.Join(fixtures, "primitives.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bf, err := parseBench("primitives.txt", f)
	if err != nil {
		t.Fatal(err)
	}
	if len(bf.results) != 13 {
		t.Fatalf("%d results, want 13", len(bf.results))
	}
	r := bf.results[1]
	if r.name != "BenchmarkCounterInc/kmb-loop" || r.procs != 2 || r.iters != 717321606 ||
		r.values["ns/op"] != 1.67 || r.values["B/op"] != 0 || len(r.values) != 3 {
		t.Errorf("second result: %+v", r)
	}
	if r := bf.results[0]; r.procs != 1 || r.name != "BenchmarkCounterInc/kmb-loop" {
		t.Errorf("a name without -P: %+v", r)
	}
	if got := bf.config["cpu"]; len(got) != 1 || got[0] != "Intel(R) Xeon(R) Processor" {
		t.Errorf("cpu: %q", got)
	}
	if r.pkg != "github.com/kmb-db/kmb/telemetry/metric/bench" {
		t.Errorf("pkg %q", r.pkg)
	}
}

func TestParseBenchErrors(t *testing.T) {
	for _, in := range []string{
		"BenchmarkX-2 100 5 ns/op 7\n",
		"BenchmarkX-2 100 five ns/op\n",
		"BenchmarkX-2 100\n",
	} {
		if _, err := parseBench("bad.txt", strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "bad.txt:1") {
			t.Errorf("%q: error %v, want one at bad.txt:1", in, err)
		}
	}
	// A name alone and log output are not results.
	bf, err := parseBench("ok.txt", strings.NewReader("BenchmarkX\nBenchmarkX-2 log output here\nBenchmarkX-2 10 3 ns/op\n"))
	if err != nil || len(bf.results) != 1 {
		t.Fatalf("%v %+v", err, bf)
	}
}

func TestMedianAndRange(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		// -cpu 1 ran three times: the middle one.
		{`{{median "primitives" "BenchmarkCounterInc/kmb-loop-1" "ns/op"}}`, "1.79"},
		// -cpu 2 ran four times: the mean of the middle two (1.67, 1.69).
		{`{{median "primitives" "BenchmarkCounterInc/kmb-loop-2" "ns/op" | sig 3}}`, "1.68"},
		{`{{median "primitives.txt" "BenchmarkCounterInc/kmb-sharded-2" "ns/op"}}`, "11.2"},
		{`{{minmax "primitives" "BenchmarkCounterInc/kmb-sharded-1" "ns/op" | sig 3}}`, "12.7–13.1"},
		{`{{min "primitives" "BenchmarkCounterInc/kmb-loop-2" "ns/op"}} {{max "primitives" "BenchmarkCounterInc/kmb-loop-2" "ns/op"}}`, "1.65 1.7"},
		{`{{runs "primitives" "BenchmarkCounterInc/kmb-loop-2"}}`, "4"},
		{`{{maxOf "primitives" "." "allocs/op"}}`, "0"},
		// One GOMAXPROCS in the file: the name without -P is enough.
		{`{{median "render" "BenchmarkMetricsRender/tenants=10" "ns/op" | ms | sig 3}}`, "0.553"},
		{`{{minmax "render" "BenchmarkMetricsRender/tenants=10" "ns/op" | ms | sig 2}}`, "0.52–0.58"},
		{`{{median "render" "BenchmarkMetricsRender/tenants=10000" "B/op" | bytes}}`, "8.6 MB"},
		{`{{minmax "render" "BenchmarkMetricsRender/tenants=10" "B/op" | bytes}}`, "189 KB"},
		{`{{median "render" "BenchmarkMetricsRender/tenants=10000" "allocs/op" | commas}}`, "111,257"},
		// Several packages in one file.
		{`{{median "wire" "BenchmarkTransport/prepare_ok" "msgs/s" | si 2}}`, "2.1M"},
		{`{{median "wire" "BenchmarkAppendMessage" "ns/op" | us | sig 2}} µs`, "1.7 µs"},
	} {
		if got := mustRender(t, fixtures, tc.tmpl); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
}

func TestMissingData(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{`{{median "nosuch" "BenchmarkX" "ns/op"}}`, "nosuch.txt: no such file"},
		{`{{median "primitives" "BenchmarkCounter/kmb-loop" "ns/op"}}`, "primitives.txt: no benchmark BenchmarkCounter/kmb-loop"},
		{`{{median "primitives" "BenchmarkCounterInc/kmb-loop-8" "ns/op"}}`, "no benchmark BenchmarkCounterInc/kmb-loop-8 (have BenchmarkCounterInc/kmb-loop, BenchmarkCounterInc/kmb-loop-2"},
		{`{{median "primitives" "BenchmarkCounterInc/kmb-loop" "ns/op"}}`, "ran at GOMAXPROCS 1,2; name one: BenchmarkCounterInc/kmb-loop-1, BenchmarkCounterInc/kmb-loop-2"},
		{`{{median "primitives" "BenchmarkCounterInc/kmb-loop-2" "entries/s"}}`, "primitives.txt: BenchmarkCounterInc/kmb-loop-2 has no entries/s (units: B/op, allocs/op, ns/op)"},
		{`{{median "wire" "BenchmarkSame" "ns/op"}}`, "wire.txt: BenchmarkSame is in several packages"},
		{`{{maxOf "primitives" "Nothing" "ns/op"}}`, `primitives.txt: no benchmark matches "Nothing"`},
		{`{{median "../results/primitives" "BenchmarkX" "ns/op"}}`, "a name in the results directory is expected"},
		{`{{result "kmbd-nodes3" "p9999_ms"}}`, `kmbd-nodes3.json: no field "p9999_ms"`},
		{`{{result "kmbd-nodes1" "p99_ms"}}`, "kmbd-nodes1.json: no such file"},
		{`{{result "kmbd-interrupted" "p99_ms"}}`, "kmbd-interrupted.json: the run was interrupted"},
		{`{{result "primitives.meta" "x"}}`, "primitives.meta.json: no such file"},
		{`{{variant "kmbd-nodes3" "off" "runs"}}`, "kmbd-nodes3.json: no compare list"},
		{`{{variant "compare-telemetry" "backup" "median_p99_ms"}}`, `compare-telemetry.json: no variant "backup" (have "off", "metrics", "full", "metrics+backup")`},
		{`{{variant "compare-telemetry" "metrics+backup" "ratio_to_baseline"}}`, "compare-telemetry.json: variant metrics+backup: no completed run (3 failed)"},
		{`{{variant "compare-telemetry" "full" "p99_ms"}}`, `compare-telemetry.json: variant full: no field "p99_ms"`},
		{`{{roundRatio "compare-telemetry" "full" "off"}}`, "compare-telemetry.json: variant full has 1 failed runs"},
		{`{{command "nosuch"}}`, "nosuch.meta: no such file"},
		{`{{meta "primitives" "rounds"}}`, "primitives.meta: no rounds"},
		{`{{div 1 0}}`, "division of 1 by zero"},
		{`{{sig 3 "x"}}`, "is not a number"},
	} {
		out, err := renderString(t, fixtures, tc.tmpl)
		if err == nil {
			t.Errorf("%s rendered %q, want an error", tc.tmpl, out)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.tmpl, err, tc.want)
		}
	}
}

func TestKmbdResults(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{`{{result "kmbd-nodes3" "entries_per_sec" | commas}} entries/s, p99 {{result "kmbd-nodes3" "p99_ms" | sig 3}} ms`, "119,976 entries/s, p99 132 ms"},
		{`{{result "kmbd-nodes3.json" "telemetry"}} {{result "kmbd-nodes3" "nodes"}}`, "off 3"},
		{`{{result "compare-telemetry" "rounds"}}`, "3"},
		{`{{variant "compare-telemetry" "full" "median_entries_per_sec" | commas}}`, "114,500"},
		{`{{variant "compare-telemetry" "full" "ratio_to_baseline" | change}}`, "-4.6%"},
		{`{{variant "compare-telemetry" "off" "ratio_to_baseline" | change}}`, "+0.0%"},
		{`{{len (variant "compare-telemetry" "full" "runs")}} of {{add (len (variant "compare-telemetry" "full" "runs")) (variant "compare-telemetry" "full" "failed_runs")}}`, "2 of 3"},
		// A goal check: full telemetry at most 3% slower.
		{`{{$c := sub 1 (variant "compare-telemetry" "full" "ratio_to_baseline")}}{{if le $c 0.03}}met{{else}}missed by {{pct (sub $c 0.03) | fixed 1}} points{{end}}`, "missed by 1.6 points"},
		{`{{$c := sub 1 (variant "compare-telemetry" "metrics" "ratio_to_baseline")}}{{if le $c 0.01}}met ({{pct $c | fixed 1}}%){{else}}missed{{end}}`, "met (0.8%)"},
		// Per round: 119500/120000, 119000/118000, 118800/121000.
		{`{{roundRatio "compare-telemetry" "metrics" "off" | fixed 4}}`, "0.9958"},
		{`{{div (variant "compare-telemetry" "metrics" "median_entries_per_sec") (variant "compare-telemetry" "off" "median_entries_per_sec") | fixed 4}}`, "0.9917"},
	} {
		if got := mustRender(t, fixtures, tc.tmpl); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
}

func TestMachine(t *testing.T) {
	got := mustRender(t, fixtures, `{{with machine}}{{.CPU}}, {{.GOOS}}/{{.GOARCH}}, {{.Go}}, {{.NumCPU}} CPUs, {{.Kernel}}; {{.First}} to {{.Last}}{{range .Groups}}; {{.Name}} {{.Load}}{{with .Commit}} {{.}}{{end}}{{with .Note}} ({{.}}){{end}}{{end}}{{end}}`)
	want := "Intel(R) Xeon(R) Processor, linux/amd64, go1.26.8, 2 CPUs, Linux 6.18.44; 2026-11-22 03:01 UTC to 2026-11-22 03:05 UTC; primitives 1.50 1.20 0.90 0123abc (other work shared the machine); render 1.50 1.20 0.90 (other work shared the machine); wire 1.50 1.20 0.90 (other work shared the machine); kmbd-nodes3 1.50 1.20 0.90 (other work shared the machine); compare-telemetry 1.50 1.20 0.90 (other work shared the machine)"
	if got != want {
		t.Errorf("machine:\n got %q\nwant %q", got, want)
	}
	if got := mustRender(t, fixtures, `{{command "kmbd-nodes3"}}`); got != "kmbd bench --nodes 3 --clients 64 --batch 100 --duration 10s --json" {
		t.Errorf("command: %q", got)
	}

	// Results of another machine or Go version in the same directory.
	dir := t.TempDir()
	copyFixture(t, dir, "primitives.txt", "primitives.meta", "render.txt", "render.meta")
	meta := filepath.Join(dir, "render.meta")
	data, _ := os.ReadFile(meta)
	os.WriteFile(meta, bytes.Replace(data, []byte("go1.26.8"), []byte("go1.27.0"), 1), 0o644)
	if _, err := renderString(t, dir, `{{machine.Go}}`); err == nil || !strings.Contains(err.Error(), `render.meta has go "go1.27.0" but "go1.26.8" in primitives.meta`) {
		t.Errorf("different Go versions: %v", err)
	}
	os.WriteFile(meta, data, 0o644)
	txt := filepath.Join(dir, "render.txt")
	data, _ = os.ReadFile(txt)
	os.WriteFile(txt, bytes.Replace(data, []byte("Xeon(R) Processor"), []byte("EPYC"), 1), 0o644)
	if _, err := renderString(t, dir, `{{machine.CPU}}`); err == nil || !strings.Contains(err.Error(), "cpu") {
		t.Errorf("different CPUs: %v", err)
	}
	if _, err := renderString(t, t.TempDir(), `{{machine.CPU}}`); err == nil || !strings.Contains(err.Error(), "no .meta files") {
		t.Errorf("empty directory: %v", err)
	}
}

func copyFixture(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(fixtures, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{`{{commas 293063.4}} {{commas 868}} {{commas -1234567}}`, "293,063 868 -1,234,567"},
		{`{{sig 3 124031}} {{sig 3 1.7712}} {{sig 3 1.7}} {{sig 3 12.94}} {{sig 2 6.4}} {{sig 3 9.996}} {{sig 2 0.000345}} {{sig 3 0}}`, "124,000 1.77 1.70 12.9 6.4 10.0 0.00035 0"},
		{`{{fixed 2 0.3449}} {{fixed 0 1234.6}} {{fixed 1 -0.04}}`, "0.34 1,235 0.0"},
		{`{{si 3 552000}} {{si 3 3090000}} {{si 2 999}} {{si 3 999600}} {{si 2 1.5e9}}`, "552k 3.09M 1.0k 1.00M 1.5G"},
		{`{{bytes 9777}} {{bytes 79977}} {{bytes 188637}} {{bytes 1048541}} {{bytes 38}} {{bytes 9960}}`, "9.8 KB 80 KB 189 KB 1.0 MB 38 B 10 KB"},
		{`{{ms 2471388 | sig 2}} {{us 2700 | sig 2}} {{pct 0.0312 | fixed 1}}`, "2.5 2.7 3.1"},
		{`{{change 0.973}} {{change 1.02}} {{change 1}}`, "-2.7% +2.0% +0.0%"},
		{`{{span 14.2 13.1 13.9 | sig 2}} {{span 1.04 1.02 | sig 2}}`, "13–14 1.0"},
		{`{{add 1 2}} {{sub 1 0.25}} {{mul 3 0.5}} {{div 3 4}}`, "3 0.75 1.5 0.75"},
	} {
		if got := mustRender(t, fixtures, tc.tmpl); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
}

// TestRun renders a template file to an output file twice: the same bytes
// each time, and a failed render leaves the file as it was.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "doc.md.tmpl")
	out := filepath.Join(dir, "DOC.md")
	os.WriteFile(tmpl, []byte("# Doc\n\n`{{command \"render\"}}`: {{median \"render\" \"BenchmarkMetricsRender/tenants=10\" \"ns/op\" | ms | sig 2}} ms on {{machine.CPU}}\n"), 0o644)
	if err := run(fixtures, tmpl, out, nil); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(out)
	want := "# Doc\n\n`go test ./x -run '^$' -bench . -count 3`: 0.55 ms on Intel(R) Xeon(R) Processor\n"
	if string(first) != want {
		t.Fatalf("got %q, want %q", first, want)
	}
	if err := run(fixtures, tmpl, out, nil); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(out); !bytes.Equal(first, second) {
		t.Errorf("second render differs: %q", second)
	}
	os.WriteFile(tmpl, []byte("{{median \"render\" \"BenchmarkNone\" \"ns/op\"}}"), 0o644)
	err := run(fixtures, tmpl, out, nil)
	if err == nil || !strings.Contains(err.Error(), "render.txt: no benchmark BenchmarkNone") || !strings.Contains(err.Error(), "doc.md.tmpl:1") {
		t.Errorf("error %v, want one naming the file, the benchmark and the template line", err)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(after, first) {
		t.Errorf("a failed render changed the output: %q", after)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestTemplateParses checks the template of BENCHMARKS.md against the
// functions; rendering it needs a full results directory (scripts/bench.sh).
func TestTemplateParses(t *testing.T) {
	text, err := os.ReadFile("../../scripts/benchmarks.md.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := template.New("benchmarks.md.tmpl").Funcs(funcs(newResults(t.TempDir()))).Parse(string(text)); err != nil {
		t.Fatal(err)
	}
}
