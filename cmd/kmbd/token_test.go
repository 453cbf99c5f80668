package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/auth"
)

// kmbd token new prints a secret once and a block that authenticates it
// with exactly the tenants and rights asked for.
func TestTokenNew(t *testing.T) {
	var out, errs bytes.Buffer
	if code := runToken([]string{"new", "--name", "acme-writer", "--tenants", "acme, acme-eu", "--rights", "read,write"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	lines := strings.Split(out.String(), "\n")
	secret := strings.TrimPrefix(lines[1], "# ")
	if !strings.HasPrefix(secret, "kmb_") {
		t.Fatalf("no secret on line 2: %q", out.String())
	}
	block := strings.Join(lines[3:], "\n")
	if strings.Contains(block, secret) {
		t.Fatal("the block holds the secret")
	}
	set, err := auth.Parse([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	p := set.ByName("acme-writer")
	if p == nil || !p.Allows("acme-eu", auth.Write) || p.Allows("globex", auth.Read) || p.Allows("acme", auth.Admin) {
		t.Fatalf("principal %+v", p)
	}
	for _, bad := range [][]string{
		{"new", "--name", "x", "--tenants", "Acme", "--rights", "read"},
		{"new", "--name", "x y", "--tenants", "a", "--rights", "read"},
		{"new", "--name", "x", "--tenants", "a", "--rights", "delete"},
		{"new", "--name", "x", "--tenants", "a"},
		{"rotate"},
		{},
	} {
		out.Reset()
		errs.Reset()
		if code := runToken(bad, &out, &errs); code != 2 || out.Len() != 0 {
			t.Errorf("%v: exit %d, printed %q", bad, code, out.String())
		}
	}
}
