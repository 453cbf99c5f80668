//go:build linux

package superblock

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data: the superblock's size never changes, so the
// metadata fsync would add is not needed to read it back.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
