package backup

import (
	"fmt"
	"os"
	"path/filepath"
)

// restoredNodeID is the node a restored data dir belongs to: a restore
// produces a single node, which runs as node_id 1. The superblock it writes
// is package superblock's.
const restoredNodeID = 1

// writeFileDurably writes data to dir/name through a temporary file that
// is fsynced and renamed into place, then fsyncs dir.
func writeFileDurably(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return syncDir(dir)
}
