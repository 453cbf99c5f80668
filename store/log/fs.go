package log

import (
	"io"
	"os"
)

// FS is the file system the log lives on. The log reaches the disk only
// through it, so that tests can inject faults (package faultfs): errors on
// writes, syncs and reads, a full disk, bit flips and misdirected writes.
// Config.FS nil means the operating system's.
type FS interface {
	MkdirAll(dir string, perm os.FileMode) error
	// OpenFile opens a file (or, with os.O_RDONLY, a directory to sync).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	Rename(oldpath, newpath string) error
	ReadDir(dir string) ([]os.DirEntry, error)
}

// File is an open file of an FS.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	Name() string
	Stat() (os.FileInfo, error)
	Truncate(size int64) error
	// Sync is fsync; Datasync is fdatasync, which skips metadata that
	// reading the data back does not need.
	Sync() error
	Datasync() error
}

// OS is the operating system's file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(oldpath, newpath string) error        { return os.Rename(oldpath, newpath) }
func (osFS) ReadDir(dir string) ([]os.DirEntry, error)   { return os.ReadDir(dir) }

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

type osFile struct{ *os.File }

func (f osFile) Datasync() error { return fdatasync(f.File) }
