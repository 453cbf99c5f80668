package superblock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/kmb-db/kmb/store/internal/durable"
)

// FileName is the superblock's name in a data dir.
const FileName = "superblock"

const (
	magic   = "KMBSUPER"
	version = 1
	// Size is the encoded length.
	Size = 8 + 2 + 8*4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Superblock is the content of the file.
type Superblock struct {
	NodeID  uint64
	View    uint64
	LogView uint64
	Commit  uint64
}

// Encode returns the file's bytes for sb.
func Encode(sb Superblock) []byte {
	b := make([]byte, 0, Size)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint16(b, version)
	for _, v := range []uint64{sb.NodeID, sb.View, sb.LogView, sb.Commit} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Decode parses a superblock, checking its size, magic, checksum and
// version.
func Decode(b []byte) (Superblock, error) {
	if len(b) != Size || string(b[:8]) != magic {
		return Superblock{}, errors.New("not a kmb superblock")
	}
	if got, want := crc32.Checksum(b[:Size-4], castagnoli), binary.LittleEndian.Uint32(b[Size-4:]); got != want {
		return Superblock{}, errors.New("checksum mismatch")
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != version {
		return Superblock{}, fmt.Errorf("unknown version %d", v)
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[10+8*i:]) }
	return Superblock{NodeID: u(0), View: u(1), LogView: u(2), Commit: u(3)}, nil
}

// Read returns the superblock of dir and whether one exists.
func Read(dir string) (Superblock, bool, error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Superblock{}, false, nil
	}
	if err != nil {
		return Superblock{}, false, err
	}
	sb, err := Decode(b)
	if err != nil {
		return Superblock{}, false, fmt.Errorf("superblock %s: %w", path, err)
	}
	return sb, true, nil
}

// Write replaces dir's superblock durably.
func Write(dir string, sb Superblock) error {
	return durable.WriteFile(dir, FileName, Encode(sb))
}
