package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpora in testdata")

func sha(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

var goodFile = `# principals of the test cluster
[[token]]
name    = "acme-writer"
sha256  = "` + sha("s1") + `"
tenants = ["acme", "acme-eu"]
rights  = ["read", "write"]

[[token]]
name    = "auditor"
sha256  = "` + sha("s2") + `"
tenants = ["*"]
rights  = ["read", "audit"]
`

func TestParseAndAuthenticate(t *testing.T) {
	set, err := Parse([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 2 || strings.Join(set.Names(), ",") != "acme-writer,auditor" {
		t.Fatalf("names %v", set.Names())
	}
	if want := sha(goodFile); set.Digest() != want {
		t.Errorf("digest %s, want %s", set.Digest(), want)
	}
	w := set.authenticate("s1")
	if w == nil || w.Name != "acme-writer" {
		t.Fatalf("s1 authenticates as %+v", w)
	}
	for _, tt := range []struct {
		p      *Principal
		tenant string
		right  Right
		want   bool
	}{
		{w, "acme", Write, true},
		{w, "acme-eu", Read, true},
		{w, "acme", Read | Write, true},
		{w, "globex", Read, false},
		{w, "acme", Audit, false},
		{w, "acme", Admin, false},
		{set.ByName("auditor"), "anything", Read, true},
		{set.ByName("auditor"), "anything", Write, false},
	} {
		if got := tt.p.Allows(tt.tenant, tt.right); got != tt.want {
			t.Errorf("%s.Allows(%q, %v) = %v", tt.p.Name, tt.tenant, tt.right, got)
		}
	}
	for _, bad := range []string{"", "s3", "S1", "s1 ", sha("s1")} {
		if p := set.authenticate(bad); p != nil {
			t.Errorf("secret %q authenticates as %s", bad, p.Name)
		}
	}
	if got := set.ByName("auditor").Tenants(); len(got) != 1 || got[0] != "*" {
		t.Errorf("auditor tenants %v", got)
	}
}

func TestAuthenticateDoesNotAllocate(t *testing.T) {
	set, err := Parse([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.Repeat("x", 47) // longer than the stack buffer of a conversion
	if n := testing.AllocsPerRun(100, func() { set.authenticate(secret); set.authenticate("s1") }); n != 0 {
		t.Errorf("authenticate allocates %v times", n)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"syntax", "[[token]]\nname = \"a\nsha256 = 1\n", "line 2"},
		{"unknown key", "[[token]]\nname = \"a\"\nsecret = \"x\"\n", "line 3: unknown key token.secret"},
		{"bad hash", "[[token]]\nname = \"a\"\nsha256 = \"zz\"\ntenants = [\"a\"]\nrights = [\"read\"]\n", "line 1: token 1: sha256 of \"a\""},
		{"non-hex hash", "\n\n[[token]]\nname = \"a\"\nsha256 = \"" + strings.Repeat("g", 64) + "\"\ntenants = [\"a\"]\nrights = [\"read\"]\n", "line 3: token 1: sha256 of \"a\": not hex"},
		{"no name", "[[token]]\nsha256 = \"" + sha("x") + "\"\ntenants = [\"a\"]\nrights = [\"read\"]\n", "name \"\""},
		{"bad right", "[[token]]\nname = \"a\"\nsha256 = \"" + sha("x") + "\"\ntenants = [\"a\"]\nrights = [\"delete\"]\n", "right \"delete\""},
		{"no rights", "[[token]]\nname = \"a\"\nsha256 = \"" + sha("x") + "\"\ntenants = [\"a\"]\n", "rights of \"a\": empty"},
		{"bad tenant", "[[token]]\nname = \"a\"\nsha256 = \"" + sha("x") + "\"\ntenants = [\"Acme\"]\nrights = [\"read\"]\n", "tenants of \"a\": \"Acme\""},
		{"no tenants", "[[token]]\nname = \"a\"\nsha256 = \"" + sha("x") + "\"\nrights = [\"read\"]\n", "tenants of \"a\": empty"},
		{"name with space", "[[token]]\nname = \"a b\"\nsha256 = \"" + sha("x") + "\"\ntenants = [\"a\"]\nrights = [\"read\"]\n", "name \"a b\""},
		{"duplicate name", goodFile + "\n[[token]]\nname = \"auditor\"\nsha256 = \"" + sha("s9") + "\"\ntenants = [\"a\"]\nrights = [\"read\"]\n", "line 14: token 3: name \"auditor\" is used twice"},
		{"duplicate secret", goodFile + "[[token]]\nname = \"other\"\nsha256 = \"" + sha("s2") + "\"\ntenants = [\"a\"]\nrights = [\"read\"]\n", "line 13: token 3: same sha256 as \"auditor\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: %v; want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), sha("x")) {
				t.Errorf("the error quotes a hash: %v", err)
			}
		})
	}
}

func TestEmptyFileHasNoPrincipals(t *testing.T) {
	set, err := Parse([]byte("# nobody yet\n"))
	if err != nil || set.Len() != 0 || set.authenticate("x") != nil {
		t.Fatalf("Parse(empty) = %v, %v", set, err)
	}
}

func TestReloadKeepsTheOldSetOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.toml")
	if err := os.WriteFile(path, []byte(goodFile), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("[[token]]\nname = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("Reload of a bad file: %v", err)
	}
	if p := s.Authenticate("s1"); p == nil || p.Name != "acme-writer" {
		t.Fatal("the old set is gone after a failed reload")
	}
	next := "[[token]]\nname = \"new\"\nsha256 = \"" + sha("s7") + "\"\ntenants = [\"*\"]\nrights = [\"admin\"]\n"
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Authenticate("s1") != nil || s.Authenticate("s7") == nil {
		t.Fatal("Reload did not replace the set")
	}
}

func TestBearerSecret(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Bearer ": "", "Basic abc": "", "Bearerabc": "", "": ""} {
		got, ok := BearerSecret(in)
		if got != want || ok != (want != "") {
			t.Errorf("BearerSecret(%q) = %q, %v", in, got, ok)
		}
	}
}

func TestNewSecretAndBlockParse(t *testing.T) {
	secret, hash := NewSecret()
	other, _ := NewSecret()
	if secret == other || !strings.HasPrefix(secret, "kmb_") || len(secret) != 4+43 {
		t.Fatalf("secrets %q, %q", secret, other)
	}
	set, err := Parse([]byte(Block("ci-bot", hash, []string{"a", "b"}, []string{"read", "write"})))
	if err != nil {
		t.Fatal(err)
	}
	if p := set.authenticate(secret); p == nil || p.Name != "ci-bot" || !p.Allows("b", Write) || p.Allows("c", Read) {
		t.Fatalf("the printed block does not authenticate its secret: %+v", p)
	}
}

func parseSeeds() [][]byte {
	return [][]byte{
		[]byte(goodFile),
		[]byte(""),
		[]byte("[[token]]\nname = \"a\"\n"),
		[]byte("[[token]]\nname = \"a\"\nsha256 = \"" + sha("x") + "\"\ntenants = [\"*\", \"a\"]\nrights = [\"read\", \"read\"]\n"),
		[]byte("token = 1\n"),
		[]byte("[[token]]\n[[token]]\n"),
	}
}

// FuzzParse: Parse never panics, and a set it accepts is consistent: one
// principal per name and per hash, each with rights and tenants.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Parse(data)
		if err != nil {
			return
		}
		if len(set.byName) != set.Len() || len(set.bySecret) != set.Len() {
			t.Fatalf("%d names, %d by name, %d by secret", set.Len(), len(set.byName), len(set.bySecret))
		}
		for _, name := range set.Names() {
			p := set.ByName(name)
			if p == nil || p.Rights == 0 || (!p.all && len(p.tenants) == 0) || ValidName(name) != nil {
				t.Fatalf("inconsistent principal %q: %+v", name, p)
			}
			if set.bySecret[p.hash] != p {
				t.Fatalf("principal %q is not found by its hash", name)
			}
		}
	})
}

func TestFuzzSeedCorpora(t *testing.T) {
	fuzzseed.Check(t, *update, "FuzzParse", fuzzseed.Numbered(parseSeeds()))
}
