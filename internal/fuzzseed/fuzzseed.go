package fuzzseed

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// Marshal encodes the arguments of one fuzz seed as a file of the
// "go test fuzz v1" format. It knows the argument types of this module's
// fuzz targets, []byte and byte, and panics on any other.
func Marshal(args ...any) []byte {
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case byte:
			b = fmt.Appendf(b, "byte(%q)\n", v)
		default:
			panic(fmt.Sprintf("unsupported fuzz argument %T", a))
		}
	}
	return b
}

// Numbered returns the files of a seed corpus, by name: file seed-<i>
// holds seeds[i], either the one []byte argument of a fuzz target or, as
// a []any, all its arguments.
func Numbered[S []byte | []any](seeds []S) map[string][]byte {
	files := make(map[string][]byte, len(seeds))
	for i, s := range seeds {
		var b []byte
		switch s := any(s).(type) {
		case []byte:
			b = Marshal(s)
		case []any:
			b = Marshal(s...)
		}
		files["seed-"+strconv.Itoa(i)] = b
	}
	return files
}

// Check fails the test unless every file of files, by name, is in
// testdata/fuzz/<target> with exactly those contents; with update it
// writes them there first. Other files in that directory, such as
// crashers found by fuzzing, are left alone.
func Check(t testing.TB, update bool, target string, files map[string][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(dir, name)
		want := files[name]
		if got := readBack(t, update, path, want, "write the seed corpora"); !bytes.Equal(got, want) {
			t.Fatalf("%s is stale (run with -update)", path)
		}
	}
}

// Golden fails the test unless got equals the golden file testdata/name;
// with update it writes got there first.
func Golden(t testing.TB, update bool, name string, got []byte) {
	t.Helper()
	if want := readBack(t, update, filepath.Join("testdata", name), got, "create it"); !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file (run with -update if the change is intended):\n got %x\nwant %x", name, got, want)
	}
}

// readBack returns the contents of the file at path, after writing data
// there (and creating its directory) when update is set. A missing file
// fails the test with hint, what -update would do about it.
func readBack(t testing.TB, update bool, path string, data []byte, hint string) []byte {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to %s)", err, hint)
	}
	return b
}
