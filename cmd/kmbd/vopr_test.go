package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVOPRCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"vopr", "--seed", "11", "--seeds", "2", "--ticks", "300"}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ok   seed=11 ") || !strings.HasPrefix(lines[1], "ok   seed=12 ") {
		t.Fatalf("output:\n%s", out.String())
	}
	// A seed replays exactly.
	var again bytes.Buffer
	run(t.Context(), []string{"vopr", "--seed", "11", "--ticks", "300"}, env(nil), &again, &errb)
	if strings.TrimSpace(again.String()) != lines[0] {
		t.Fatalf("seed 11 replayed differently:\n%s\n%s", lines[0], again.String())
	}
	if code := run(t.Context(), []string{"vopr", "--seeds", "0"}, env(nil), &out, &errb); code != 2 {
		t.Fatalf("--seeds 0 exit %d", code)
	}
}

// Bad flags of the live views exit 2 with one line, before anything runs
// or binds.
func TestVOPRViewsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"vopr", "dashboard", "--port", "70000"}, "kmbd vopr dashboard: --port 70000: must be 0..65535\n"},
		{[]string{"vopr", "dashboard", "--seeds", "0"}, "kmbd vopr dashboard: --seeds, --ticks and --replicas must be >= 1\n"},
		{[]string{"vopr", "dashboard", "extra"}, "kmbd vopr dashboard: unexpected argument \"extra\"\n"},
		{[]string{"vopr", "tui", "--ticks", "0"}, "kmbd vopr tui: --seeds, --ticks and --replicas must be >= 1\n"},
		{[]string{"vopr", "tui", "--nope"}, ""},
	} {
		var out, errb bytes.Buffer
		if code := run(t.Context(), c.args, env(nil), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d", c.args, code)
		}
		if c.want != "" && errb.String() != c.want {
			t.Errorf("%v: stderr %q, want %q", c.args, errb.String(), c.want)
		}
		if out.Len() != 0 {
			t.Errorf("%v: stdout %q", c.args, out.String())
		}
	}
}
