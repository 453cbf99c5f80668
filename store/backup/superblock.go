package backup

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The superblock is the node's hard-state file in its data dir. Package
// node owns the format and reads it at start-up; a restore writes the
// same bytes so that the restored data dir starts as a node whose log is
// all committed:
//
//	[8]byte "KMBSUPER"
//	u16 LE  version (1)
//	u64 LE  node id
//	u64 LE  view
//	u64 LE  log view
//	u64 LE  commit
//	u32 LE  CRC32C of everything above
//
// 46 bytes in all. A test compares this writer's output with a superblock
// written by kmbd itself (testdata/kmbd_superblock_commit1.golden).
const (
	superblockName    = "superblock"
	superblockMagic   = "KMBSUPER"
	superblockVersion = 1
	superblockSize    = 8 + 2 + 8*4 + 4

	// restoredNodeID is the node a restored data dir belongs to: a
	// restore produces a single node, which runs as node_id 1.
	restoredNodeID = 1
)

// encodeSuperblock returns the superblock of node nodeID in view view,
// last normal in logView, with commit number commit.
func encodeSuperblock(nodeID, view, logView, commit uint64) []byte {
	b := make([]byte, 0, superblockSize)
	b = append(b, superblockMagic...)
	b = binary.LittleEndian.AppendUint16(b, superblockVersion)
	for _, v := range []uint64{nodeID, view, logView, commit} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// writeFileDurably writes data to dir/name through a temporary file that
// is fsynced and renamed into place, then fsyncs dir, as the node writes
// its superblock.
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
