package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Store is the current tokens file of a running node. Authenticate and
// Current are safe for concurrent use with Reload and take no lock.
type Store struct {
	path string
	set  atomic.Pointer[Set]
}

// Open reads and parses the tokens file at path.
func Open(path string) (*Store, error) {
	s := &Store{path: path}
	set, err := s.read()
	if err != nil {
		return nil, err
	}
	s.set.Store(set)
	return s, nil
}

// Path is the tokens file's path.
func (s *Store) Path() string { return s.path }

// Current is the set in force.
func (s *Store) Current() *Set { return s.set.Load() }

// Reload rereads the file. A file that does not parse changes nothing:
// the error names the line at fault and the old set stays in force.
func (s *Store) Reload() (*Set, error) {
	set, err := s.read()
	if err != nil {
		return nil, err
	}
	s.set.Store(set)
	return set, nil
}

func (s *Store) read() (*Set, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("auth.tokens_file %q: %w", s.path, err)
	}
	set, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("auth.tokens_file %q: %w", s.path, err)
	}
	return set, nil
}

// Authenticate returns the principal whose secret is secret, nil if none.
// It hashes the secret once and looks the hash up: how long that takes
// depends on the hash, which an attacker learns nothing from, and the
// final comparison runs in constant time. It does not allocate.
func (s *Store) Authenticate(secret string) *Principal {
	return s.set.Load().authenticate(secret)
}

func (set *Set) authenticate(secret string) *Principal {
	if secret == "" {
		return nil
	}
	// The bytes are only read: no copy of the secret is needed.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(secret), len(secret)))
	p, ok := set.bySecret[sum]
	if !ok {
		return nil
	}
	if subtle.ConstantTimeCompare(sum[:], p.hash[:]) != 1 {
		return nil
	}
	return p
}

// BearerSecret returns the secret of an "Authorization: Bearer <secret>"
// header value; ok is false for any other scheme or an empty secret.
func BearerSecret(header string) (secret string, ok bool) {
	const scheme = "Bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	secret = strings.TrimSpace(header[len(scheme):])
	return secret, secret != ""
}
