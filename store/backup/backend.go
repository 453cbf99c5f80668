package backup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Backend stores a repository's objects under slash-separated keys. The
// directory backend is the only one so far; an object store comes later
// and must keep the same contract:
//
//   - Put replaces the object atomically: a reader sees the old bytes or
//     the new ones, never a mix, and a crash part way leaves the old ones.
//     When Put returns nil the object is durable.
//   - Get returns the whole object, or an error wrapping ErrNotFound.
//   - List returns the keys that start with prefix (a plain string prefix,
//     not necessarily a folder), sorted.
//   - Delete removes the object; deleting a missing one is not an error.
//
// Keys are validated by ValidateKey. All methods are safe for concurrent
// use.
type Backend interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, key string) error
}

// ErrNotFound is wrapped by Backend.Get errors for a key that holds no
// object.
var ErrNotFound = errors.New("backup: object not found")

// ErrInvalidKey is wrapped by every error about a key that ValidateKey
// refuses.
var ErrInvalidKey = errors.New("backup: invalid object key")

// configKey names the setting that chooses the repository, in errors
// about its URL, so that an operator knows what to fix.
const configKey = "backup.repository"

// ValidateKey checks that key is a relative, slash-separated path that
// stays inside the repository: not empty, no leading or doubled slash, no
// backslash or NUL, and no component that is ".", ".." or starts with a
// dot (the directory backend keeps its temporary files under such names).
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%w %q: absolute", ErrInvalidKey, key)
	case strings.ContainsAny(key, "\\\x00"):
		return fmt.Errorf("%w %q: contains a backslash or NUL", ErrInvalidKey, key)
	}
	for _, c := range strings.Split(key, "/") {
		switch {
		case c == "":
			return fmt.Errorf("%w %q: empty path component", ErrInvalidKey, key)
		case c == "..":
			return fmt.Errorf("%w %q: \"..\" would leave the repository", ErrInvalidKey, key)
		case strings.HasPrefix(c, "."):
			return fmt.Errorf("%w %q: component %q starts with a dot", ErrInvalidKey, key, c)
		}
	}
	return nil
}

// OpenURL returns the backend that a backup.repository URL names:
//
//	file:///absolute/dir   a directory (local or mounted) that must exist
//	s3://bucket/prefix     not supported yet
//
// Errors name the backup.repository setting and the URL.
func OpenURL(rawURL string) (Backend, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("%s is empty: set it to file:///absolute/dir", configKey)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", configKey, rawURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("%s %q: a file URL needs an absolute path, as in file:///absolute/dir (host %q is not allowed)", configKey, rawURL, u.Host)
		}
		if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("%s %q: a file URL needs an absolute path, as in file:///absolute/dir", configKey, rawURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%s %q: a file URL takes no query or fragment", configKey, rawURL)
		}
		b, err := NewDirBackend(u.Path)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", configKey, rawURL, err)
		}
		return b, nil
	case "s3":
		return nil, fmt.Errorf("%s %q: s3 repositories are not supported yet; use file:///absolute/dir", configKey, rawURL)
	case "":
		return nil, fmt.Errorf("%s %q: not a URL; use file:///absolute/dir", configKey, rawURL)
	default:
		return nil, fmt.Errorf("%s %q: unsupported scheme %q; use file:///absolute/dir", configKey, rawURL, u.Scheme)
	}
}
