package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestValidateKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"manifest.json", true},
		{"segments/00000000000000000001-00000000000000000002.kseg.zst", true},
		{"a/b/c", true},
		{"", false},
		{"/etc/passwd", false},
		{"../outside", false},
		{"segments/../../outside", false},
		{"a/..", false},
		{"a/./b", false},
		{"a//b", false},
		{"a/", false},
		{"a\\b", false},
		{"a\x00b", false},
		{".hidden", false},
		{"segments/.x.tmp-123", false},
	} {
		err := ValidateKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, does not wrap ErrInvalidKey", tc.key, err)
		}
	}
}

func TestOpenURL(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url  string
		want string // substring of the error; "" for success
	}{
		{"file://" + dir, ""},
		{"file://localhost" + dir, ""},
		{"", "backup.repository is empty"},
		{"file://relative/dir", "needs an absolute path"},
		{"file:relative", "needs an absolute path"},
		{"file://" + dir + "?x=1", "no query"},
		{"file://" + filepath.Join(dir, "missing"), "does not exist"},
		{"file://" + file, "not a directory"},
		{"s3://bucket/prefix?regio=eu-west-1", `unknown query parameter "regio"`},
		{"http://example.com/x", `unsupported scheme "http"`},
		{"/just/a/path", "not a URL"},
	} {
		b, err := OpenURL(tc.url)
		if tc.want == "" {
			if err != nil {
				t.Errorf("OpenURL(%q): %v", tc.url, err)
			} else if got := b.(*DirBackend).Root(); got != dir {
				t.Errorf("OpenURL(%q) root %q, want %q", tc.url, got, dir)
			}
			continue
		}
		if err == nil {
			t.Errorf("OpenURL(%q) succeeded, want an error containing %q", tc.url, tc.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "backup.repository") {
			t.Errorf("OpenURL(%q) = %q, want it to contain %q and name backup.repository", tc.url, msg, tc.want)
		}
		if tc.url != "" && !strings.Contains(msg, tc.url) {
			t.Errorf("OpenURL(%q) = %q, does not name the URL", tc.url, msg)
		}
	}
}

func TestNewDirBackendNeedsAbsolutePath(t *testing.T) {
	if _, err := NewDirBackend("relative"); err == nil {
		t.Fatal("relative path accepted")
	}
}

func TestDirBackend(t *testing.T) {
	ctx := context.Background()
	b, err := NewDirBackend(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b.Kind() != "file" {
		t.Errorf("Kind() = %q", b.Kind())
	}
	testBackendContract(t, b)

	// A temporary file left by a crash is never listed.
	if err := os.WriteFile(filepath.Join(b.Root(), "segments", ".b.tmp-123"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "segments/b", []byte("B2")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.List(ctx, "segments/"); err != nil || !reflect.DeepEqual(got, []string{"segments/b", "segments/deep/c"}) {
		t.Fatalf("List with a temporary file: %v %v", got, err)
	}
	// No temporary file of ours is left behind by Puts.
	matches, _ := filepath.Glob(filepath.Join(b.Root(), "*", ".*.tmp-*"))
	if len(matches) != 1 { // the one planted above
		t.Fatalf("temporary files: %v", matches)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(b.Root()), "x")); err == nil {
		t.Error("a key escaped the root")
	}
}

// testBackendContract checks the Backend contract on b, which must be
// empty. It leaves b holding manifest.json ("m2"), segments/b and
// segments/deep/c, and a few objects under "many/" and "conc/".
func testBackendContract(t *testing.T, b Backend) {
	t.Helper()
	ctx := context.Background()
	put := func(key, data string) {
		t.Helper()
		if err := b.Put(ctx, key, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	list := func(prefix string) []string {
		t.Helper()
		keys, err := b.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}

	if keys := list(""); len(keys) != 0 {
		t.Fatalf("empty backend lists %v", keys)
	}
	if keys := list("segments/"); len(keys) != 0 {
		t.Fatalf("missing folder lists %v", keys)
	}
	if _, err := b.Get(ctx, "manifest.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}

	put("manifest.json", "m1")
	put("segments/b", "B")
	put("segments/a", "A")
	put("segments/deep/c", "C")
	put("manifest.json", "m2") // overwrite
	put("empty", "")

	if got, err := b.Get(ctx, "manifest.json"); err != nil || string(got) != "m2" {
		t.Fatalf("Get after overwrite: %q %v", got, err)
	}
	if got, err := b.Get(ctx, "empty"); err != nil || len(got) != 0 {
		t.Fatalf("Get of an empty object: %q %v", got, err)
	}
	// Every byte value, and an object larger than any one read.
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := b.Put(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, "big"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("Get of a 3 MiB object: %d bytes, %v", len(got), err)
	}
	for _, k := range []string{"empty", "big"} {
		if err := b.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}

	for prefix, want := range map[string][]string{
		"":              {"manifest.json", "segments/a", "segments/b", "segments/deep/c"},
		"segments/":     {"segments/a", "segments/b", "segments/deep/c"},
		"segments/de":   {"segments/deep/c"},
		"seg":           {"segments/a", "segments/b", "segments/deep/c"},
		"man":           {"manifest.json"},
		"manifest.json": {"manifest.json"},
		"nothing/":      nil,
	} {
		if got := list(prefix); !reflect.DeepEqual(got, want) {
			t.Errorf("List(%q) = %v, want %v", prefix, got, want)
		}
	}

	if err := b.Delete(ctx, "segments/a"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "segments/a"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if err := b.Delete(ctx, "never/was"); err != nil {
		t.Fatalf("deleting a key that never was: %v", err)
	}
	if _, err := b.Get(ctx, "segments/a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}

	// Listing returns every key, sorted, however they were written.
	var many []string
	for i := range 37 {
		many = append(many, fmt.Sprintf("many/%03d", (i*11)%37))
	}
	for _, k := range many {
		put(k, k)
	}
	slices.Sort(many)
	if got := list("many/"); !reflect.DeepEqual(got, many) {
		t.Errorf("List(\"many/\") = %v, want %v", got, many)
	}

	// All methods are safe for concurrent use.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			key := fmt.Sprintf("conc/%d", i)
			for j := range 5 {
				data := fmt.Appendf(nil, "%d-%d", i, j)
				if err := b.Put(ctx, key, data); err != nil {
					t.Error(err)
					return
				}
				if got, err := b.Get(ctx, key); err != nil || !bytes.Equal(got, data) {
					t.Errorf("Get(%q) = %q %v, want %q", key, got, err, data)
					return
				}
				if _, err := b.List(ctx, "conc/"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := list("conc/"); len(got) != 8 {
		t.Errorf("List(\"conc/\") = %v", got)
	}

	for _, bad := range []string{"../x", "/abs", "a//b", ".tmp", "a/../b", "a/"} {
		if err := b.Put(ctx, bad, nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%q): %v", bad, err)
		}
		if _, err := b.Get(ctx, bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%q): %v", bad, err)
		}
		if err := b.Delete(ctx, bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q): %v", bad, err)
		}
	}
	if _, err := b.List(ctx, "../"); err == nil {
		t.Error("List(\"../\") accepted")
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Put(cancelled, "k", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: %v", err)
	}
	if _, err := b.Get(cancelled, "manifest.json"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v", err)
	}
	if _, err := b.List(cancelled, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context: %v", err)
	}
	if err := b.Delete(cancelled, "manifest.json"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a cancelled context: %v", err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a Put with a cancelled context stored its object: %v", err)
	}
	if got, err := b.Get(ctx, "manifest.json"); err != nil || string(got) != "m2" {
		t.Errorf("a Delete with a cancelled context removed its object: %q %v", got, err)
	}
}
