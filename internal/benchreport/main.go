// Command benchreport renders BENCHMARKS.md from the results directory
// that scripts/bench.sh fills: Go benchmark output (one .txt per group),
// kmbd bench --json results (.json) and the command and conditions of each
// (.meta). The document is a text/template whose functions read figures
// from those files (see funcs); a figure that is missing fails the render
// with an error naming the file and benchmark, and the output file is left
// as it was.
//
//	go run ./internal/benchreport -in bench-results -template scripts/benchmarks.md.tmpl -out BENCHMARKS.md
//
// The output depends on the results and the template only, so rendering
// the same directory twice gives the same document.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/template"
)

func main() {
	in := flag.String("in", "bench-results", "results directory of scripts/bench.sh")
	tmpl := flag.String("template", "scripts/benchmarks.md.tmpl", "template of the document")
	out := flag.String("out", "-", "file to write, - for stdout")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "benchreport: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if err := run(*in, *tmpl, *out, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
		os.Exit(1)
	}
}

func run(in, tmplPath, out string, stdout io.Writer) error {
	if st, err := os.Stat(in); err != nil {
		return err
	} else if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", in)
	}
	text, err := os.ReadFile(tmplPath)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := render(&buf, filepath.Base(tmplPath), string(text), in); err != nil {
		return err
	}
	if out == "-" {
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	return writeFile(out, buf.Bytes())
}

// render executes the template over the results directory dir.
func render(w io.Writer, name, text, dir string) error {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs(newResults(dir))).Parse(text)
	if err != nil {
		return err
	}
	return t.Execute(w, nil)
}

// writeFile replaces path with data through a temporary file and a rename.
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
