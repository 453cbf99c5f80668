package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

// kmbd audit export against a running node and from a stopped node's data
// dir, in every format; kmbd audit verify passes the files, against the
// live node too, and catches an altered record; bad input exits 2 and
// leaves no file.
func TestE2EAuditExportVerify(t *testing.T) {
	dir := t.TempDir()
	n := kmbdtest.StartNode(t, dir, debugLog)
	for i := 1; i <= 30; i++ {
		tenant := []string{"acme", "globex"}[i%2]
		body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":{"n":%d}},{"key":"k%d-b","value":"x,y \"z\""}]}`, i, i, i)
		if code, b := kmbdtest.HTTPDo(t, "POST", n.API+"/v1/tenants/"+tenant+"/entries", body); code != 200 {
			t.Fatalf("write %d: %d %s", i, code, b)
		}
	}
	addr := strings.TrimPrefix(n.API, "http://")
	today := time.Now().UTC().Format(time.DateOnly)
	out := t.TempDir()

	records := map[string]string{}
	for _, f := range []string{"json", "ndjson", "csv"} {
		file := filepath.Join(out, "export."+f)
		code, stdout, stderr := kmbdRun(t, "audit", "export", "--addr", addr, "--start", today, "--end", today, "--format", f, "--output", file)
		if code != 0 {
			t.Fatalf("export %s: exit %d\n%s\n%s", f, code, stdout, stderr)
		}
		if !strings.Contains(stdout, "records") || !strings.Contains(stdout, "60 in 30 ops") {
			t.Fatalf("export %s summary:\n%s", f, stdout)
		}
		if code, stdout, _ := kmbdRun(t, "audit", "verify", file, "--addr", addr); code != 0 || !strings.Contains(stdout, "intact") || !strings.Contains(stdout, "matches the cluster") {
			t.Fatalf("verify %s: exit %d\n%s", f, code, stdout)
		}
		records[f] = file
	}

	// One tenant's export checks out on its own and against the node.
	acme := filepath.Join(out, "acme.ndjson")
	if code, stdout, stderr := kmbdRun(t, "audit", "export", "--addr", addr, "--start", today, "--end", today, "--tenant", "acme", "--format", "ndjson", "--output", acme); code != 0 || !strings.Contains(stdout, "30 in 15 ops") {
		t.Fatalf("tenant export: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, _ := kmbdRun(t, "audit", "verify", acme, "--addr", addr); code != 0 {
		t.Fatalf("verify of the tenant export: exit %d\n%s", code, stdout)
	}

	// An altered record.
	b, err := os.ReadFile(records["ndjson"])
	if err != nil {
		t.Fatal(err)
	}
	altered := filepath.Join(out, "altered.ndjson")
	if err := os.WriteFile(altered, []byte(strings.Replace(string(b), `"n":7}`, `"n":8}`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := kmbdRun(t, "audit", "verify", altered); code != 3 || !strings.Contains(stdout, "CORRUPT") || !strings.Contains(stdout, "record 13 (op 7") {
		t.Fatalf("verify of an altered file: exit %d\n%s", code, stdout)
	}
	if code, _, _ := kmbdRun(t, "audit", "verify", filepath.Join(out, "missing.json")); code != 1 {
		t.Fatalf("verify of a missing file: exit %d, want 1", code)
	}

	// Bad input: exit 2, one line, no file.
	for _, args := range [][]string{
		{"--start", today, "--end", "2000-01-01"},
		{"--start", today, "--end", today, "--format", "xml"},
		{"--start", "yesterday", "--end", today},
	} {
		file := filepath.Join(out, "bad.json")
		full := append([]string{"audit", "export", "--addr", addr, "--output", file}, args...)
		code, _, stderr := kmbdRun(t, full...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Fatalf("%v left %s", args, file)
		}
	}
	if code, _, stderr := kmbdRun(t, "audit", "export", "--addr", addr, "--start", today, "--end", today, "--output", "/nonexistent/dir/out.json"); code != 2 {
		t.Fatalf("unwritable output: exit %d, %s", code, stderr)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 5 {
		t.Fatalf("temporary files left in %s: %v", out, entries)
	}

	// From the stopped node's data dir: the same ops.
	n.Stop(t)
	offline := filepath.Join(out, "offline.json")
	code, stdout, stderr := kmbdRun(t, "audit", "export", "--data-dir", dir, "--start", today, "--end", today, "--output", offline)
	if code != 0 || !strings.Contains(stdout, "60 in 30 ops") {
		t.Fatalf("offline export: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, _ := kmbdRun(t, "audit", "verify", offline); code != 0 {
		t.Fatalf("verify of the offline export: exit %d\n%s", code, stdout)
	}
}
