package backup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
)

// Backend stores a repository's objects under slash-separated keys.
// DirBackend and S3Backend keep this contract:
//
//   - Put replaces the object atomically: a reader sees the old bytes or
//     the new ones, never a mix, and a crash part way leaves the old ones.
//     When Put returns nil the object is durable.
//   - Get returns the whole object, or an error wrapping ErrNotFound.
//   - List returns the keys that start with prefix (a plain string prefix,
//     not necessarily a folder), sorted.
//   - Delete removes the object; deleting a missing one is not an error.
//   - Swap replaces the object only if it still holds given bytes,
//     atomically with respect to other Swaps (see Swapper): the manifest
//     is only ever written so, so that of two writers working from the
//     same manifest one fails rather than one's update being lost.
//
// Keys are validated by ValidateKey. All methods are safe for concurrent
// use.
type Backend interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, key string) error
	Swapper
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
//	s3://bucket/prefix     an S3 or S3-compatible bucket, under a key
//	                       prefix (which may be empty: s3://bucket)
//
// An s3 URL takes these query parameters, each at most once:
//
//	endpoint=URL           the service, http:// or https:// (which decides
//	                       TLS) and host[:port]; default https://s3.amazonaws.com
//	region=NAME            default us-east-1
//	path_style=true|false  address the bucket in the path rather than the
//	                       host name; default false; S3-compatible servers
//	                       and IP endpoints usually need true
//
// for example s3://kmb-backups/prod?endpoint=http://127.0.0.1:9000&path_style=true.
// Its credentials come from the environment: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, and AWS_SESSION_TOKEN for temporary ones; they
// never go in the URL.
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
		cfg, err := parseS3URL(rawURL, os.Getenv)
		if err != nil {
			return nil, err
		}
		b, err := NewS3Backend(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", configKey, rawURL, err)
		}
		return b, nil
	case "":
		return nil, fmt.Errorf("%s %q: not a URL; use file:///absolute/dir or s3://bucket/prefix", configKey, rawURL)
	default:
		return nil, fmt.Errorf("%s %q: unsupported scheme %q; use file:///absolute/dir or s3://bucket/prefix", configKey, rawURL, u.Scheme)
	}
}

// s3Query lists the query parameters of an s3 URL, for errors.
const s3Query = "endpoint=http(s)://host[:port], region=NAME, path_style=true|false"

// parseS3URL turns an s3:// backup.repository URL (see OpenURL) into an
// S3Config, with the credentials read through getenv. It checks
// everything NewS3Backend would, so that every mistake is reported with
// the setting's name.
func parseS3URL(rawURL string, getenv func(string) string) (S3Config, error) {
	bad := func(format string, args ...any) (S3Config, error) {
		return S3Config{}, fmt.Errorf("%s %q: %s", configKey, rawURL, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return S3Config{}, fmt.Errorf("%s %q: %w", configKey, rawURL, err)
	}
	if u.Scheme != "s3" {
		return bad("not an s3 URL")
	}
	if u.User != nil {
		// Do not repeat a secret back into logs.
		return S3Config{}, fmt.Errorf("%s %q: an s3 URL takes no user or password: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead", configKey, u.Redacted())
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("the bucket is empty: want s3://bucket or s3://bucket/prefix")
	}
	if u.Port() != "" {
		return bad("the host part is the bucket and takes no port: give the server as endpoint=http(s)://host:port")
	}
	if u.Fragment != "" || strings.HasSuffix(rawURL, "#") {
		return bad("an s3 URL takes no fragment")
	}
	cfg := S3Config{Bucket: u.Host, Prefix: u.Path}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("query: %v", err)
	}
	for _, name := range slices.Sorted(maps.Keys(query)) {
		values := query[name]
		if len(values) != 1 {
			return bad("query parameter %q is given %d times", name, len(values))
		}
		v := values[0]
		if v == "" {
			return bad("query parameter %q is empty (accepted: %s)", name, s3Query)
		}
		switch name {
		case "endpoint":
			cfg.Endpoint = v
		case "region":
			cfg.Region = v
		case "path_style":
			switch v {
			case "true":
				cfg.PathStyle = true
			case "false":
			default:
				return bad("path_style=%q: want true or false", v)
			}
		default:
			return bad("unknown query parameter %q (accepted: %s)", name, s3Query)
		}
	}
	cfg.AccessKey = getenv("AWS_ACCESS_KEY_ID")
	cfg.SecretKey = getenv("AWS_SECRET_ACCESS_KEY")
	cfg.SessionToken = getenv("AWS_SESSION_TOKEN")
	var missing []string
	if cfg.AccessKey == "" {
		missing = append(missing, "AWS_ACCESS_KEY_ID")
	}
	if cfg.SecretKey == "" {
		missing = append(missing, "AWS_SECRET_ACCESS_KEY")
	}
	if len(missing) > 0 {
		return bad("an s3 repository takes its credentials from the environment, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials): %s not set", strings.Join(missing, " and "))
	}
	t, err := cfg.check()
	if err != nil {
		return S3Config{}, fmt.Errorf("%s %q: %w", configKey, rawURL, err)
	}
	// Spell the defaults out, for whoever logs the configuration.
	cfg.Endpoint = t.endpoint.Scheme + "://" + t.endpoint.Host
	cfg.Region = t.region
	cfg.Prefix = strings.TrimSuffix(t.prefix, "/")
	return cfg, nil
}
