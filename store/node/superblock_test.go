package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/store/vsr"
)

func TestSuperblockRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := readSuperblock(dir); ok || err != nil {
		t.Fatalf("empty dir: ok=%v err=%v", ok, err)
	}
	want := superblock{NodeID: 3, State: vsr.HardState{View: 7, LogView: 6, Commit: 12345}}
	if err := writeSuperblock(dir, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := readSuperblock(dir)
	if err != nil || !ok || got != want {
		t.Fatalf("read back %+v ok=%v err=%v", got, ok, err)
	}
	want.State.View = 8
	if err := writeSuperblock(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := readSuperblock(dir); got != want {
		t.Fatalf("after overwrite %+v", got)
	}
}

func TestSuperblockCorruptionDetected(t *testing.T) {
	dir := t.TempDir()
	if err := writeSuperblock(dir, superblock{NodeID: 1, State: vsr.HardState{View: 2}}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, superblockName)
	b, _ := os.ReadFile(p)
	b[20] ^= 1
	os.WriteFile(p, b, 0o644)
	if _, _, err := readSuperblock(dir); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("corrupt superblock: %v", err)
	}
	os.WriteFile(p, b[:10], 0o644)
	if _, _, err := readSuperblock(dir); err == nil {
		t.Fatal("short superblock accepted")
	}
}
