package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/kmb-db/kmb/store/vsr"
)

// The superblock holds the replica's hard state: the view it entered, the
// last view in which it was normal, and a lower bound of the commit number,
// plus the node id that owns the data directory. It is small and replaced
// atomically: written to a temporary file, fsynced, renamed over the old
// one, and the directory fsynced.
//
//	[8]byte "KMBSUPER"
//	u16 LE  version (1)
//	u64 LE  node id
//	u64 LE  view
//	u64 LE  log view
//	u64 LE  commit
//	u32 LE  CRC32C of everything above
const (
	superblockName    = "superblock"
	superblockMagic   = "KMBSUPER"
	superblockVersion = 1
	superblockSize    = 8 + 2 + 8*4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type superblock struct {
	NodeID uint64
	State  vsr.HardState
}

// readSuperblock returns the superblock of dir and whether one exists.
func readSuperblock(dir string) (superblock, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, superblockName))
	if errors.Is(err, os.ErrNotExist) {
		return superblock{}, false, nil
	}
	if err != nil {
		return superblock{}, false, err
	}
	if len(b) != superblockSize || string(b[:8]) != superblockMagic {
		return superblock{}, false, fmt.Errorf("superblock %s: not a kmb superblock", filepath.Join(dir, superblockName))
	}
	if got, want := crc32.Checksum(b[:superblockSize-4], castagnoli), binary.LittleEndian.Uint32(b[superblockSize-4:]); got != want {
		return superblock{}, false, fmt.Errorf("superblock %s: checksum mismatch", filepath.Join(dir, superblockName))
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != superblockVersion {
		return superblock{}, false, fmt.Errorf("superblock %s: unknown version %d", filepath.Join(dir, superblockName), v)
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[10+8*i:]) }
	return superblock{NodeID: u(0), State: vsr.HardState{View: u(1), LogView: u(2), Commit: u(3)}}, true, nil
}

// writeSuperblock replaces dir's superblock durably.
func writeSuperblock(dir string, sb superblock) error {
	b := make([]byte, 0, superblockSize)
	b = append(b, superblockMagic...)
	b = binary.LittleEndian.AppendUint16(b, superblockVersion)
	for _, v := range []uint64{sb.NodeID, sb.State.View, sb.State.LogView, sb.State.Commit} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))

	tmp := filepath.Join(dir, superblockName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
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
	if err := os.Rename(tmp, filepath.Join(dir, superblockName)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
