package superblock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/kmb-db/kmb/store/internal/durable"
)

// FileName is the superblock's name in a data dir.
const FileName = "superblock"

const (
	magic   = "KMBSUPER"
	version = 3

	// Copies is the number of copies of the superblock in its file.
	Copies = 4
	// BlockSize is the size of each copy's block.
	BlockSize = 4096
	// FileSize is the size of a file of version 2 or 3.
	FileSize = Copies * BlockSize

	// copySizeV2 is the encoded length of a version-2 copy before its
	// padding; a version-3 copy adds the configuration (see encodeCopy).
	copySizeV2 = 8 + 2 + 8*6 + 4
	versionV2  = 2

	// MaxConfig bounds the replicas of a configuration the superblock
	// holds (a copy must fit its block).
	MaxConfig = 256

	versionV1 = 1
	sizeV1    = 8 + 2 + 8*4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Superblock is the content of the file.
type Superblock struct {
	NodeID  uint64
	View    uint64
	LogView uint64
	Commit  uint64
	// Promised is a log length the replica may have acknowledged and no
	// longer holds (see vsr.HardState.Promised); 0 for none.
	Promised uint64
	// Epoch, Config and ConfigOp are the replica's configuration (see
	// vsr.HardState): the epoch, its members' ids in order (empty before
	// the first reconfiguration: the configured replicas), and a config op
	// in the log that has not started its epoch. Version 3.
	Epoch    uint64
	Config   []uint64
	ConfigOp uint64
}

// Report says what Read found besides the superblock.
type Report struct {
	Version uint16 // the file's format version
	Seq     uint64 // sequence number of the copy read (versions 2 and 3)
	// Damaged lists the copies that are unreadable or fail their checks;
	// Stale those that are valid but hold an older sequence number.
	Damaged []int
	Stale   []int
}

// encodeCopy returns one block holding sb with sequence number seq:
// magic, version, then seq, node id, view, log view, commit, promised,
// epoch and config op (8 bytes each), the number of config ids (2 bytes)
// and the ids (8 bytes each), then a CRC-32C of all that.
func encodeCopy(sb Superblock, seq uint64) []byte {
	b := make([]byte, 0, BlockSize)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint16(b, version)
	for _, v := range []uint64{seq, sb.NodeID, sb.View, sb.LogView, sb.Commit, sb.Promised, sb.Epoch, sb.ConfigOp} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(sb.Config)))
	for _, id := range sb.Config {
		b = binary.LittleEndian.AppendUint64(b, id)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return b[:BlockSize]
}

// contentLen is the length of a version-3 copy of sb before its padding.
func contentLen(sb Superblock) int { return 8 + 2 + 8*8 + 2 + 8*len(sb.Config) + 4 }

// decodeCopy parses one block of version 2 or 3.
func decodeCopy(b []byte) (Superblock, uint64, error) {
	sb, seq, _, err := decodeCopyVersion(b)
	return sb, seq, err
}

func decodeCopyVersion(b []byte) (Superblock, uint64, uint16, error) {
	if len(b) < copySizeV2 || string(b[:8]) != magic {
		return Superblock{}, 0, 0, errors.New("not a kmb superblock")
	}
	v := binary.LittleEndian.Uint16(b[8:])
	size := copySizeV2
	switch v {
	case versionV2:
	case version:
		const fixed = 8 + 2 + 8*8 + 2
		if len(b) < fixed+4 {
			return Superblock{}, 0, 0, errors.New("truncated copy")
		}
		n := int(binary.LittleEndian.Uint16(b[fixed-2:]))
		if n > MaxConfig {
			return Superblock{}, 0, 0, fmt.Errorf("%d config ids, more than %d", n, MaxConfig)
		}
		size = fixed + 8*n + 4
		if len(b) < size {
			return Superblock{}, 0, 0, errors.New("truncated copy")
		}
	default:
		return Superblock{}, 0, 0, fmt.Errorf("unknown version %d", v)
	}
	if got, want := crc32.Checksum(b[:size-4], castagnoli), binary.LittleEndian.Uint32(b[size-4:]); got != want {
		return Superblock{}, 0, 0, errors.New("checksum mismatch")
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[10+8*i:]) }
	seq := u(0)
	if seq == 0 {
		return Superblock{}, 0, 0, errors.New("sequence number 0")
	}
	sb := Superblock{NodeID: u(1), View: u(2), LogView: u(3), Commit: u(4), Promised: u(5)}
	if v == version {
		sb.Epoch, sb.ConfigOp = u(6), u(7)
		n := int(binary.LittleEndian.Uint16(b[10+8*8:]))
		for i := range n {
			sb.Config = append(sb.Config, binary.LittleEndian.Uint64(b[10+8*8+2+8*i:]))
		}
	}
	return sb, seq, v, nil
}

// Encode returns a whole file holding sb in every copy.
func Encode(sb Superblock) []byte { return encodeFile(sb, 1) }

func encodeFile(sb Superblock, seq uint64) []byte {
	b := make([]byte, 0, FileSize)
	block := encodeCopy(sb, seq)
	for range Copies {
		b = append(b, block...)
	}
	return b
}

// Decode parses a superblock file of either version: the valid copy with
// the highest sequence number. It fails only when no copy is valid.
func Decode(b []byte) (Superblock, Report, error) {
	if len(b) == sizeV1 {
		sb, err := decodeV1(b)
		return sb, Report{Version: versionV1}, err
	}
	var rep Report
	var best Superblock
	var firstErr error
	seqs := make([]uint64, Copies)
	for i := range Copies {
		var block []byte
		if lo := i * BlockSize; lo < len(b) {
			block = b[lo:min(len(b), lo+BlockSize)]
		}
		sb, seq, v, err := decodeCopyVersion(block)
		if err != nil {
			rep.Damaged = append(rep.Damaged, i)
			if firstErr == nil {
				firstErr = fmt.Errorf("copy %d: %w", i, err)
			}
			continue
		}
		seqs[i] = seq
		if seq > rep.Seq {
			best, rep.Seq, rep.Version = sb, seq, v
		}
	}
	if rep.Seq == 0 {
		rep.Version = version
		return Superblock{}, rep, fmt.Errorf("no valid copy (%w)", firstErr)
	}
	for i, seq := range seqs {
		if seq != 0 && seq < rep.Seq {
			rep.Stale = append(rep.Stale, i)
		}
	}
	return best, rep, nil
}

// decodeV1 parses a version-1 file.
func decodeV1(b []byte) (Superblock, error) {
	if len(b) != sizeV1 || string(b[:8]) != magic {
		return Superblock{}, errors.New("not a kmb superblock")
	}
	if got, want := crc32.Checksum(b[:sizeV1-4], castagnoli), binary.LittleEndian.Uint32(b[sizeV1-4:]); got != want {
		return Superblock{}, errors.New("checksum mismatch")
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != versionV1 {
		return Superblock{}, fmt.Errorf("unknown version %d", v)
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[10+8*i:]) }
	return Superblock{NodeID: u(0), View: u(1), LogView: u(2), Commit: u(3)}, nil
}

// Read returns the superblock of dir, whether one exists, and what it
// found of the copies.
func Read(dir string) (Superblock, bool, Report, error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Superblock{}, false, Report{}, nil
	}
	if err != nil {
		return Superblock{}, false, Report{}, err
	}
	sb, rep, err := Decode(b)
	if err != nil {
		return Superblock{}, false, rep, fmt.Errorf("superblock %s: %w", path, err)
	}
	return sb, true, rep, nil
}

// Write replaces dir's superblock durably and atomically with a new
// file: a data dir being created, or a version-1 file being
// upgraded. A running node writes through a File instead.
func Write(dir string, sb Superblock) error {
	return durable.WriteFile(dir, FileName, Encode(sb))
}

// File is a superblock file (version 2 or 3) open for writes in place.
type File struct {
	f   *os.File
	seq uint64 // of the last copy written or read
}

// Open opens dir's superblock (version 2 or 3) for writing; seq is the sequence
// number Read reported, which the next Write goes past.
func Open(dir string, seq uint64) (*File, error) {
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != FileSize {
		err = fmt.Errorf("superblock %s is %d bytes, want %d", f.Name(), fi.Size(), FileSize)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &File{f: f, seq: seq}, nil
}

// Write writes sb to every copy, in two halves each made durable before
// the next (see the package documentation).
func (f *File) Write(sb Superblock) error {
	block := encodeCopy(sb, f.seq+1)
	for half := 0; half < Copies; half += Copies / 2 {
		for i := half; i < half+Copies/2; i++ {
			if _, err := f.f.WriteAt(block, int64(i*BlockSize)); err != nil {
				return fmt.Errorf("write superblock copy %d: %w", i, err)
			}
		}
		if err := fdatasync(f.f); err != nil {
			return fmt.Errorf("sync superblock: %w", err)
		}
	}
	f.seq++
	return nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

var _ io.Closer = (*File)(nil)
