package superblock

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := Read(dir); ok || err != nil {
		t.Fatalf("empty dir: ok=%v err=%v", ok, err)
	}
	for _, sb := range []Superblock{
		{NodeID: 1},
		{NodeID: 1, Commit: 1},
		{NodeID: 3, View: 7, LogView: 6, Commit: 1 << 40},
		{NodeID: 255, View: ^uint64(0), LogView: ^uint64(0), Commit: ^uint64(0)},
	} {
		if err := Write(dir, sb); err != nil {
			t.Fatal(err)
		}
		got, ok, err := Read(dir)
		if err != nil || !ok || got != sb {
			t.Fatalf("wrote %+v, read %+v ok=%v err=%v", sb, got, ok, err)
		}
		if _, err := os.Stat(filepath.Join(dir, FileName+".tmp")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temporary file left: %v", err)
		}
	}
}

func TestCorruptionDetected(t *testing.T) {
	good := Encode(Superblock{NodeID: 1, View: 2})
	flipped := bytes.Clone(good)
	flipped[20] ^= 1
	badVersion := bytes.Clone(good)
	badVersion[8] = 9
	for name, c := range map[string]struct {
		b    []byte
		want string
	}{
		"flipped byte": {flipped, "checksum mismatch"},
		"short":        {good[:10], "not a kmb superblock"},
		"wrong magic":  {append([]byte("KMBSUPEX"), good[8:]...), "not a kmb superblock"},
		"empty":        {nil, "not a kmb superblock"},
	} {
		if _, err := Decode(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Decode = %v, want %q", name, err, c.want)
		}
	}
	// A version from the future, with a valid checksum, is refused too.
	b := bytes.Clone(badVersion[:Size-4])
	b = append(b, Encode(Superblock{})[Size-4:]...)
	if _, err := Decode(b); err == nil {
		t.Error("a superblock of another version was accepted")
	}
}

// testdata/kmbd_superblock_commit1.golden was written by kmbd itself: a
// single node (node_id 1) started on an empty data dir, sent one write,
// stopped with SIGTERM, started again, sent a second write and stopped. Its
// superblock says node 1, view 0, log view 0, commit 1.
func TestMatchesKmbd(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "kmbd_superblock_commit1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	want := Superblock{NodeID: 1, Commit: 1}
	if got := Encode(want); !bytes.Equal(got, golden) {
		t.Fatalf("Encode(%+v) = %x\nkmbd wrote %x", want, got, golden)
	}
	if got, err := Decode(golden); err != nil || got != want {
		t.Fatalf("Decode(golden) = %+v, %v", got, err)
	}
}
