package log

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data and the metadata needed to read it back (its
// size), skipping timestamps: one journal write fewer than fsync on ext4.
//
// It uses f.Fd rather than SyscallConn because the closure Control needs
// would allocate on every sync; only the writer goroutine syncs and closes
// segment files, so the descriptor cannot be closed underneath the call.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		switch err {
		case nil:
			return nil
		case syscall.EINTR:
			continue
		default:
			return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
		}
	}
}
