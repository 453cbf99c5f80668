package node

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockDataDir takes the lock a running node holds on dir, for offline
// commands (kmbd log repair) that must not run beside one. Close the file
// to release it.
func LockDataDir(dir string) (*os.File, error) { return lockDataDir(dir) }

// lockDataDir takes an exclusive advisory lock on dir/LOCK so that two
// processes never write one log. The lock lives as long as the returned file
// stays open; the kernel releases it when the process dies, so a crash never
// leaves a stale lock behind.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data_dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data_dir %q is in use by another kmbd process (%s is locked)", dir, path)
	}
	return f, nil
}
