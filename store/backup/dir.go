package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kmb-db/kmb/store/internal/durable"
)

// DirBackend keeps each object in a file under a root directory, at the
// object's key. It is the file:// repository.
//
// Put writes a temporary file next to the target (".<name>.tmp-<random>"),
// fsyncs it, renames it over the target and fsyncs the directory, so an
// object is replaced atomically and durably; directories it creates are
// fsynced into their parents too. A crash can leave a temporary file
// behind: List never returns one, and ValidateKey refuses keys that could
// collide with one.
type DirBackend struct {
	root string
}

// NewDirBackend returns the backend rooted at dir, an absolute path to an
// existing directory. It does not create dir: a missing directory is more
// often an unmounted volume than a wish for a new repository on the root
// file system.
func NewDirBackend(dir string) (*DirBackend, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("repository directory %q is not an absolute path", dir)
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("repository directory %s does not exist: create it (or mount its volume) first", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("repository directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("repository path %s is not a directory", dir)
	}
	return &DirBackend{root: filepath.Clean(dir)}, nil
}

// Kind names the backend's type, "file", for metrics and logs.
func (b *DirBackend) Kind() string { return "file" }

// Root is the directory the backend stores objects in.
func (b *DirBackend) Root() string { return b.root }

func (b *DirBackend) path(key string) string {
	return filepath.Join(b.root, filepath.FromSlash(key))
}

// Put stores data at key atomically and durably.
func (b *DirBackend) Put(ctx context.Context, key string, data []byte) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dst := b.path(key)
	dir := filepath.Dir(dst)
	if err := b.mkdirs(path.Dir(key)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	ok = true
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// mkdirs creates the folders of the slash-separated relative path rel,
// fsyncing each new one into its parent so that a durable object is
// never in a folder that a crash can lose.
func (b *DirBackend) mkdirs(rel string) error {
	if rel == "." {
		return nil
	}
	parent := b.root
	for _, c := range strings.Split(rel, "/") {
		d := filepath.Join(parent, c)
		err := os.Mkdir(d, 0o755)
		switch {
		case err == nil:
			if err := durable.SyncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			if fi, serr := os.Stat(d); serr != nil || !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
		default:
			return err
		}
		parent = d
	}
	return nil
}

// Get returns the object at key, or an error wrapping ErrNotFound.
func (b *DirBackend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(b.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return data, nil
}

// List returns the sorted keys that start with prefix. It walks only the
// folder that prefix names up to its last slash.
func (b *DirBackend) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
		if err := ValidateKey(base); err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
	}
	start := b.root
	if base != "" {
		start = b.path(base)
	}
	var keys []string
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != start {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil // a temporary file, or not ours
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes the object at key; a missing object is not an error.
func (b *DirBackend) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.path(key)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := durable.SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
