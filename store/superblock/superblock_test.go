package superblock

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok, _, err := Read(dir); ok || err != nil {
		t.Fatalf("empty dir: ok=%v err=%v", ok, err)
	}
	for _, sb := range []Superblock{
		{NodeID: 1},
		{NodeID: 1, Commit: 1},
		{NodeID: 3, View: 7, LogView: 6, Commit: 1 << 40, Promised: 99},
		{NodeID: 255, View: ^uint64(0), LogView: ^uint64(0), Commit: ^uint64(0), Promised: ^uint64(0)},
		{NodeID: 4, View: 9, LogView: 9, Commit: 40, Epoch: 2, Config: []uint64{4, 1, 2}, ConfigOp: 41},
		{NodeID: 9, Epoch: ^uint64(0), Config: manyIDs(MaxConfig)},
	} {
		if err := Write(dir, sb); err != nil {
			t.Fatal(err)
		}
		got, ok, rep, err := Read(dir)
		if err != nil || !ok || !reflect.DeepEqual(got, sb) || rep.Version != 3 || rep.Seq != 1 || len(rep.Damaged)+len(rep.Stale) != 0 {
			t.Fatalf("wrote %+v, read %+v ok=%v rep=%+v err=%v", sb, got, ok, rep, err)
		}
		if _, err := os.Stat(filepath.Join(dir, FileName+".tmp")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temporary file left: %v", err)
		}
	}
}

func TestFileWritesInPlace(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, Superblock{NodeID: 2}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := uint64(1); i <= 5; i++ {
		sb := Superblock{NodeID: 2, View: i, LogView: i - 1, Commit: 10 * i}
		if err := f.Write(sb); err != nil {
			t.Fatal(err)
		}
		got, _, rep, err := Read(dir)
		if err != nil || !reflect.DeepEqual(got, sb) || rep.Seq != i+1 {
			t.Fatalf("after write %d: %+v %+v %v", i, got, rep, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Size() != FileSize {
		t.Fatalf("file size %v, %v", fi, err)
	}
}

// TestDamagedCopies damages copies the ways a disk can and checks that a
// valid copy is always found, the newest one, and the damage reported.
func TestDamagedCopies(t *testing.T) {
	old := Superblock{NodeID: 1, View: 3, LogView: 3, Commit: 7}
	cur := Superblock{NodeID: 1, View: 4, LogView: 4, Commit: 9}
	oldBlock, curBlock := encodeCopy(old, 5), encodeCopy(cur, 6)
	file := func(blocks ...[]byte) []byte { return bytes.Join(blocks, nil) }
	flipped := bytes.Clone(curBlock)
	flipped[20] ^= 1
	zero := make([]byte, BlockSize)
	tests := []struct {
		name           string
		b              []byte
		want           Superblock
		damaged, stale []int
		err            string
	}{
		{"all current", file(curBlock, curBlock, curBlock, curBlock), cur, nil, nil, ""},
		{"one bit flipped", file(curBlock, flipped, curBlock, curBlock), cur, []int{1}, nil, ""},
		{"crash during the first half", file(curBlock, zero, oldBlock, oldBlock), cur, []int{1}, []int{2, 3}, ""},
		{"crash before the first half landed", file(flipped, zero, oldBlock, oldBlock), old, []int{0, 1}, nil, ""},
		{"crash during the second half", file(curBlock, curBlock, curBlock, oldBlock), cur, nil, []int{3}, ""},
		{"misdirected write over a copy", file(curBlock, curBlock, bytes.Repeat([]byte{0xab}, BlockSize), curBlock), cur, []int{2}, nil, ""},
		{"three copies lost", file(zero, zero, zero, curBlock), cur, []int{0, 1, 2}, nil, ""},
		{"cut short", file(curBlock, curBlock)[:BlockSize+30], cur, []int{1, 2, 3}, nil, ""},
		{"every copy damaged", file(flipped, zero, zero, flipped), Superblock{}, nil, nil, "no valid copy"},
		{"empty", nil, Superblock{}, nil, nil, "no valid copy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep, err := Decode(tt.b)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Decode = %+v, %v; want an error mentioning %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) || !reflect.DeepEqual(rep.Damaged, tt.damaged) || !reflect.DeepEqual(rep.Stale, tt.stale) {
				t.Fatalf("Decode = %+v %+v %v; want %+v damaged %v stale %v", got, rep, err, tt.want, tt.damaged, tt.stale)
			}
		})
	}
}

func TestCopyCorruptionDetected(t *testing.T) {
	good := encodeCopy(Superblock{NodeID: 1, View: 2}, 1)
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"flipped byte":  {func() []byte { b := bytes.Clone(good); b[20] ^= 1; return b }(), "checksum mismatch"},
		"short":         {good[:10], "not a kmb superblock"},
		"wrong magic":   {append([]byte("KMBSUPEX"), good[8:]...), "not a kmb superblock"},
		"empty":         {nil, "not a kmb superblock"},
		"sequence zero": {encodeCopy(Superblock{NodeID: 1}, 0), "sequence number 0"},
	} {
		if _, _, err := decodeCopy(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: decodeCopy = %v, want %q", name, err, c.want)
		}
	}
}

// testdata/kmbd_superblock_commit1.golden was written by kmbd itself
// (format version 1): a single node (node_id 1) started on an empty data
// dir, sent one write, stopped with SIGTERM, started again, sent a second
// write and stopped. Its superblock says node 1, view 0, log view 0,
// commit 1. Version 1 files are still read.
func TestReadsVersion1(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "kmbd_superblock_commit1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	want := Superblock{NodeID: 1, Commit: 1}
	if got, rep, err := Decode(golden); err != nil || !reflect.DeepEqual(got, want) || rep.Version != 1 {
		t.Fatalf("Decode(golden) = %+v, %+v, %v", got, rep, err)
	}
	bad := bytes.Clone(golden)
	bad[12] ^= 1
	if _, _, err := Decode(bad); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("damaged version 1 = %v", err)
	}
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing file = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), make([]byte, sizeV1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, 0); err == nil {
		t.Fatal("Open accepted a file that is not version 2")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Superblock{NodeID: 1, View: 2, Commit: 3}))
	golden, _ := os.ReadFile(filepath.Join("testdata", "kmbd_superblock_commit1.golden"))
	f.Add(golden)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, rep, err := Decode(b)
		if err != nil {
			return
		}
		if rep.Version != version {
			return
		}
		// Every copy Decode did not report holds exactly sb (padding
		// aside: the checksum covers the content only).
		n := contentLen(sb)
		again := encodeCopy(sb, rep.Seq)[:n]
		for i := range Copies {
			if slices.Contains(rep.Damaged, i) || slices.Contains(rep.Stale, i) {
				continue
			}
			if copy := b[i*BlockSize:]; !bytes.Equal(copy[:n], again) {
				t.Fatalf("copy %d accepted as %+v, which encodes differently", i, sb)
			}
		}
	})
}

func manyIDs(n int) []uint64 {
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(n - i)
	}
	return ids
}

// A version-2 file (before configurations) reads as version 2, with no
// configuration; the next write in place makes it version 3.
func TestReadsVersion2(t *testing.T) {
	dir := t.TempDir()
	v2 := make([]byte, 0, FileSize)
	block := make([]byte, 0, BlockSize)
	block = append(block, magic...)
	block = binary.LittleEndian.AppendUint16(block, versionV2)
	for _, v := range []uint64{5, 3, 7, 7, 100, 0} {
		block = binary.LittleEndian.AppendUint64(block, v)
	}
	block = binary.LittleEndian.AppendUint32(block, crc32.Checksum(block, castagnoli))
	block = block[:BlockSize]
	for range Copies {
		v2 = append(v2, block...)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), v2, 0o644); err != nil {
		t.Fatal(err)
	}
	sb, ok, rep, err := Read(dir)
	want := Superblock{NodeID: 3, View: 7, LogView: 7, Commit: 100}
	if err != nil || !ok || !reflect.DeepEqual(sb, want) || rep.Version != 2 || rep.Seq != 5 {
		t.Fatalf("read %+v ok=%v rep=%+v err=%v", sb, ok, rep, err)
	}
	f, err := Open(dir, rep.Seq)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb.Epoch, sb.Config = 1, []uint64{3, 1, 2}
	if err := f.Write(sb); err != nil {
		t.Fatal(err)
	}
	got, _, rep, err := Read(dir)
	if err != nil || !reflect.DeepEqual(got, sb) || rep.Version != 3 || rep.Seq != 6 {
		t.Fatalf("after a write: %+v rep=%+v err=%v", got, rep, err)
	}
}
