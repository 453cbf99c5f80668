// Package faultfs is a file system for tests of the log (and of what runs
// on it) that injects the faults real disks have: I/O errors on writes,
// syncs and reads, a disk that fills up, bit flips in what is written and
// writes that land at the wrong offset. It wraps another log.FS (usually
// log.OS) and is safe for concurrent use.
package faultfs

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// Op is an operation a Rule matches.
type Op string

// Operations.
const (
	Write  Op = "write"  // WriteAt
	Sync   Op = "sync"   // Sync and Datasync
	Read   Op = "read"   // ReadAt
	Create Op = "create" // OpenFile with os.O_CREATE
)

// Rule makes matching operations fail or misbehave.
type Rule struct {
	Op Op
	// Path matches files whose name ends with it; empty matches every
	// file.
	Path string
	// After skips that many matching operations before the rule applies;
	// Times is how many it applies to then (0: every one after).
	After, Times int
	// Err is returned instead of doing the operation (nil: do it, but see
	// Flip and Shift).
	Err error
	// Flip, for writes, flips bit Flip-1 of the data written (counted from
	// the start of the write) and reports success: silent corruption.
	Flip int
	// Shift, for writes, writes the data Shift bytes away from where it
	// was meant to go and reports success: a misdirected write.
	Shift int64

	seen, applied int
}

// FS is the fault-injecting file system.
type FS struct {
	inner kmblog.FS

	mu    sync.Mutex
	rules []*Rule
	// space, when not negative, is how many bytes files may still grow
	// by; a write past it fails with ENOSPC after writing what fits.
	space int64
	sizes map[string]int64 // known sizes of the files opened through FS
}

// New wraps inner (log.OS when nil).
func New(inner kmblog.FS) *FS {
	if inner == nil {
		inner = kmblog.OS
	}
	return &FS{inner: inner, space: -1, sizes: map[string]int64{}}
}

// Add installs a rule.
func (f *FS) Add(r Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &r)
}

// Clear removes every rule.
func (f *FS) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// SetSpace limits how many more bytes files may grow by; negative means
// no limit. It models a full disk: writes fail with ENOSPC once the space
// is used, and succeed again when truncations or removals free some, or
// SetSpace grants more.
func (f *FS) SetSpace(bytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.space = bytes
}

// Space returns what SetSpace left.
func (f *FS) Space() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.space
}

// match returns the first rule that applies to op on name, counting the
// operation against every rule it matches.
func (f *FS) match(op Op, name string) *Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	var hit *Rule
	for _, r := range f.rules {
		if r.Op != op || !strings.HasSuffix(name, r.Path) {
			continue
		}
		r.seen++
		if r.seen <= r.After || (r.Times > 0 && r.applied >= r.Times) {
			continue
		}
		if hit == nil {
			r.applied++
			hit = r
		}
	}
	return hit
}

func pathErr(op, name string, err error) error { return &os.PathError{Op: op, Path: name, Err: err} }

func (f *FS) MkdirAll(dir string, perm os.FileMode) error { return f.inner.MkdirAll(dir, perm) }
func (f *FS) Rename(oldpath, newpath string) error        { return f.inner.Rename(oldpath, newpath) }
func (f *FS) ReadDir(dir string) ([]os.DirEntry, error)   { return f.inner.ReadDir(dir) }

func (f *FS) Remove(name string) error {
	if err := f.inner.Remove(name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if size, ok := f.sizes[name]; ok {
		if f.space >= 0 {
			f.space += size
		}
		delete(f.sizes, name)
	}
	return nil
}

func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (kmblog.File, error) {
	if flag&os.O_CREATE != 0 {
		if r := f.match(Create, name); r != nil && r.Err != nil {
			return nil, pathErr("open", name, r.Err)
		}
	}
	inner, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	var size int64
	if fi, err := inner.Stat(); err == nil && !fi.IsDir() {
		size = fi.Size()
	}
	f.mu.Lock()
	f.sizes[name] = size
	f.mu.Unlock()
	return &file{File: inner, fs: f, name: name}, nil
}

type file struct {
	kmblog.File
	fs   *FS
	name string
}

func (fl *file) ReadAt(b []byte, off int64) (int, error) {
	if r := fl.fs.match(Read, fl.name); r != nil && r.Err != nil {
		return 0, pathErr("read", fl.name, r.Err)
	}
	return fl.File.ReadAt(b, off)
}

func (fl *file) WriteAt(b []byte, off int64) (int, error) {
	r := fl.fs.match(Write, fl.name)
	if r != nil && r.Err != nil {
		return 0, pathErr("write", fl.name, r.Err)
	}
	if r != nil && r.Flip > 0 && r.Flip <= 8*len(b) {
		b = append([]byte(nil), b...)
		b[(r.Flip-1)/8] ^= 1 << ((r.Flip - 1) % 8)
	}
	at := off
	if r != nil {
		at += r.Shift
	}

	// Space: the write may grow the file by what lies past its end.
	fl.fs.mu.Lock()
	size := fl.fs.sizes[fl.name]
	grow := max(0, at+int64(len(b))-size)
	n := len(b)
	full := false
	if fl.fs.space >= 0 && grow > fl.fs.space {
		n = int(max(0, size+fl.fs.space-at))
		full = true
	}
	fl.fs.mu.Unlock()

	w, err := fl.File.WriteAt(b[:n], at)
	fl.fs.mu.Lock()
	if end := at + int64(w); end > fl.fs.sizes[fl.name] {
		if fl.fs.space >= 0 {
			fl.fs.space -= end - fl.fs.sizes[fl.name]
		}
		fl.fs.sizes[fl.name] = end
	}
	fl.fs.mu.Unlock()
	if err != nil {
		return w, err
	}
	if full {
		return w, pathErr("write", fl.name, syscall.ENOSPC)
	}
	return len(b), nil
}

func (fl *file) Truncate(size int64) error {
	if err := fl.File.Truncate(size); err != nil {
		return err
	}
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if old := fl.fs.sizes[fl.name]; old > size && fl.fs.space >= 0 {
		fl.fs.space += old - size
	}
	fl.fs.sizes[fl.name] = size
	return nil
}

func (fl *file) sync(do func() error) error {
	if r := fl.fs.match(Sync, fl.name); r != nil && r.Err != nil {
		return pathErr("sync", fl.name, r.Err)
	}
	return do()
}

func (fl *file) Sync() error     { return fl.sync(fl.File.Sync) }
func (fl *file) Datasync() error { return fl.sync(fl.File.Datasync) }

// Errors to inject.
var (
	EIO    error = syscall.EIO
	ENOSPC error = syscall.ENOSPC
)

func (r Rule) String() string {
	return fmt.Sprintf("%s %q after %d times %d err %v flip %d shift %d", r.Op, r.Path, r.After, r.Times, r.Err, r.Flip, r.Shift)
}
