package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/kmb-db/kmb/internal/apirules"
)

// Right is one thing a principal may do; a principal holds a set of them.
type Right uint8

// The rights of the tokens file's rights list.
const (
	Read  Right = 1 << iota // GET keys and log entries
	Write                   // POST entries
	Audit                   // read the audit trail (system ops)
	Admin                   // administrative actions
)

var rightNames = []struct {
	r    Right
	name string
}{{Read, "read"}, {Write, "write"}, {Audit, "audit"}, {Admin, "admin"}}

// String lists the rights in r, comma-separated.
func (r Right) String() string {
	var names []string
	for _, rn := range rightNames {
		if r&rn.r != 0 {
			names = append(names, rn.name)
		}
	}
	return strings.Join(names, ",")
}

// ParseRight parses one right's name.
func ParseRight(s string) (Right, error) {
	for _, rn := range rightNames {
		if s == rn.name {
			return rn.r, nil
		}
	}
	return 0, fmt.Errorf("right %q: accepted read, write, audit, admin", s)
}

// AllTenants in a tenants list grants every tenant.
const AllTenants = "*"

// Principal is one client identity and what it may do.
type Principal struct {
	Name    string
	Rights  Right
	tenants []string // sorted; nil when all
	all     bool
	hash    [sha256.Size]byte // of the secret; zero for a name-only principal
}

// Allows reports whether p holds right on tenant.
func (p *Principal) Allows(tenant string, right Right) bool {
	if p.Rights&right != right {
		return false
	}
	if p.all {
		return true
	}
	_, ok := slices.BinarySearch(p.tenants, tenant)
	return ok
}

// Tenants lists the tenants p may use, ["*"] for all.
func (p *Principal) Tenants() []string {
	if p.all {
		return []string{AllTenants}
	}
	return slices.Clone(p.tenants)
}

// Set is one parsed tokens file: principals by secret hash and by name.
// It is immutable.
type Set struct {
	bySecret map[[sha256.Size]byte]*Principal
	byName   map[string]*Principal
	names    []string // in file order
	digest   [sha256.Size]byte
}

// Len is the number of principals.
func (s *Set) Len() int { return len(s.names) }

// Names lists the principals in file order.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Digest is the SHA-256 of the file the set was parsed from, for logs and
// the audit trail: it names a version of the file without revealing it.
func (s *Set) Digest() string { return hex.EncodeToString(s.digest[:]) }

// ByName returns the principal called name, nil if none is.
func (s *Set) ByName(name string) *Principal { return s.byName[name] }

// tokensFile is the TOML shape.
type tokensFile struct {
	Token []tokenEntry `toml:"token"`
}

type tokenEntry struct {
	Name    string   `toml:"name"`
	SHA256  string   `toml:"sha256"`
	Tenants []string `toml:"tenants"`
	Rights  []string `toml:"rights"`
}

// maxNameLen bounds a principal's name, which the log stores with every
// entry it writes.
const maxNameLen = 128

// Parse parses a tokens file. An error names the line of the [[token]]
// table at fault (or of the TOML syntax error) and never quotes a hash.
func Parse(data []byte) (*Set, error) {
	var f tokensFile
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) && len(strict.Errors) > 0 {
			e := strict.Errors[0]
			row, _ := e.Position()
			return nil, fmt.Errorf("line %d: unknown key %s: accepted name, sha256, tenants, rights in [[token]] tables", row, strings.Join(e.Key(), "."))
		}
		var decErr *toml.DecodeError
		if errors.As(err, &decErr) {
			row, col := decErr.Position()
			return nil, fmt.Errorf("line %d column %d: %s", row, col, strings.Join(strings.Fields(decErr.Error()), " "))
		}
		return nil, fmt.Errorf("%s", strings.Join(strings.Fields(err.Error()), " "))
	}
	lines := tableLines(data)
	s := &Set{
		bySecret: make(map[[sha256.Size]byte]*Principal, len(f.Token)),
		byName:   make(map[string]*Principal, len(f.Token)),
		digest:   sha256.Sum256(data),
	}
	for i, t := range f.Token {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		p, hash, err := t.principal()
		if err != nil {
			return nil, fmt.Errorf("line %d: token %d: %w", line, i+1, err)
		}
		if _, dup := s.byName[p.Name]; dup {
			return nil, fmt.Errorf("line %d: token %d: name %q is used twice", line, i+1, p.Name)
		}
		if other, dup := s.bySecret[hash]; dup {
			return nil, fmt.Errorf("line %d: token %d: same sha256 as %q: every principal needs its own secret", line, i+1, other.Name)
		}
		p.hash = hash
		s.bySecret[hash], s.byName[p.Name] = p, p
		s.names = append(s.names, p.Name)
	}
	return s, nil
}

func (t tokenEntry) principal() (*Principal, [sha256.Size]byte, error) {
	var hash [sha256.Size]byte
	if err := ValidName(t.Name); err != nil {
		return nil, hash, err
	}
	if len(t.SHA256) != 2*sha256.Size {
		return nil, hash, fmt.Errorf("sha256 of %q: accepted 64 hex digits, the SHA-256 of the secret (kmbd token new prints it)", t.Name)
	}
	if _, err := hex.Decode(hash[:], []byte(t.SHA256)); err != nil {
		return nil, hash, fmt.Errorf("sha256 of %q: not hex: accepted 64 hex digits", t.Name)
	}
	p := &Principal{Name: t.Name}
	if len(t.Rights) == 0 {
		return nil, hash, fmt.Errorf("rights of %q: empty: accepted a list of read, write, audit, admin", t.Name)
	}
	for _, r := range t.Rights {
		right, err := ParseRight(r)
		if err != nil {
			return nil, hash, fmt.Errorf("rights of %q: %w", t.Name, err)
		}
		p.Rights |= right
	}
	if len(t.Tenants) == 0 {
		return nil, hash, fmt.Errorf("tenants of %q: empty: accepted tenant ids or [\"*\"]", t.Name)
	}
	for _, tenant := range t.Tenants {
		switch {
		case tenant == AllTenants:
			p.all = true
		case !ValidTenant(tenant):
			return nil, hash, fmt.Errorf("tenants of %q: %q: accepted [a-z0-9][a-z0-9_-]{0,63} or \"*\"", t.Name, tenant)
		default:
			p.tenants = append(p.tenants, tenant)
		}
	}
	if p.all {
		p.tenants = nil
	} else {
		slices.Sort(p.tenants)
		p.tenants = slices.Compact(p.tenants)
	}
	return p, hash, nil
}

// ValidName reports whether name can name a principal: 1..128 printable
// ASCII characters, no quotes or backslashes (it goes into logs, TOML and
// the audit trail as it is).
func ValidName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("name %q: accepted 1..%d printable ASCII characters", name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("name %q: accepted printable ASCII without spaces, quotes or backslashes", name)
		}
	}
	return nil
}

// ValidTenant reports whether id matches [a-z0-9][a-z0-9_-]{0,63}, the
// API's tenant ids.
func ValidTenant(id string) bool { return apirules.ValidTenant(id) }

// tableLines returns the 1-based line of each [[token]] header, in order.
func tableLines(data []byte) []int {
	var out []int
	for i, line := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "[[") && strings.TrimSpace(strings.Trim(strings.SplitN(l, "#", 2)[0], "[] \t")) == "token" {
			out = append(out, i+1)
		}
	}
	return out
}

// secretPrefix marks kmb secrets, so that secret scanners and people can
// tell one when they see it.
const secretPrefix = "kmb_"

// NewSecret returns a fresh random secret (256 bits) and the hex SHA-256
// that goes in the tokens file.
func NewSecret() (secret, sha string) {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	secret = secretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(secret))
	return secret, hex.EncodeToString(sum[:])
}

// Block returns the [[token]] table of a principal, as `kmbd token new`
// prints it.
func Block(name, sha string, tenants, rights []string) string {
	quote := func(xs []string) string {
		q := make([]string, len(xs))
		for i, x := range xs {
			q[i] = strconv.Quote(x)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprintf("[[token]]\nname    = %s\nsha256  = %q\ntenants = %s\nrights  = %s\n",
		strconv.Quote(name), sha, quote(tenants), quote(rights))
}

// Everyone returns a principal holding every right on every tenant: the
// identity of a client certificate when no tokens file says more.
func Everyone(name string) *Principal {
	return &Principal{Name: name, Rights: Read | Write | Audit | Admin, all: true}
}
