package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goldenManifest lists the golden segment and a checkpoint time past it.
func goldenManifest(t testing.TB) Manifest {
	t.Helper()
	_, info, err := encodeSegment(goldenOps())
	if err != nil {
		t.Fatal(err)
	}
	part := info
	part.Name = PartKey(info.LastOp, info.FirstOp, info.LastOp)
	snap := SnapshotInfo{
		ID: SnapshotID(info.LastOp), Op: info.LastOp, Position: info.LastPosition,
		TimestampUnixNano: info.LastTimestampUnixNano, CreatedUnixNano: 1_760_000_012_000_000_000,
		Parts: []SegmentInfo{part},
	}
	return Manifest{
		Version:                     ManifestVersion,
		RepositoryID:                "00112233445566778899aabbccddeeff",
		CreatedUnixNano:             1_759_999_999_000_000_000,
		Generation:                  3,
		Segments:                    []SegmentInfo{info},
		Checkpoint:                  Checkpoint{Op: 4, Position: 4, TimestampUnixNano: 1_760_000_010_000_000_000},
		Snapshots:                   []SnapshotInfo{snap},
		TaskPausedUnixNano:          1_760_000_011_000_000_000,
		LastSnapshotSuccessUnixNano: 1_760_000_012_000_000_000,
		LastVerifySuccessUnixNano:   1_760_000_005_000_000_000,
	}
}

func TestManifestGolden(t *testing.T) {
	m := goldenManifest(t)
	checkGolden(t, "manifest_v2.json", encodeManifest(&m))

	b, err := os.ReadFile(filepath.Join("testdata", "manifest_v2.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("golden manifest parses to\n%+v\nwant\n%+v", got, m)
	}
	// The golden manifest describes the golden segment.
	seg, err := os.ReadFile(filepath.Join("testdata", "segment_v1_ops_v2.kseg.zst"))
	if err != nil {
		t.Fatal(err)
	}
	_, info, _ := encodeSegment(goldenOps())
	if uint64(len(seg)) != info.StoredBytes {
		t.Fatalf("golden segment is %d bytes, manifest says %d", len(seg), info.StoredBytes)
	}
}

// The checksum covers the canonical content, so that a change anywhere
// is caught, and only the canonical content, so that reformatting is not.
func TestManifestChecksumCanonical(t *testing.T) {
	m := goldenManifest(t)
	stored := encodeManifest(&m)
	var compact bytes.Buffer
	if err := json.Compact(&compact, stored); err != nil {
		t.Fatal(err)
	}
	if _, err := parseManifest(compact.Bytes()); err != nil {
		t.Fatalf("compacted manifest refused: %v", err)
	}
	var c Manifest
	json.Unmarshal(stored, &c)
	c.Checksum = ""
	if sum := c.checksum(); !strings.Contains(string(stored), sum) {
		t.Fatalf("stored manifest does not carry the checksum %s of its canonical content", sum)
	}
}

func TestManifestCorruption(t *testing.T) {
	m := goldenManifest(t)
	good := string(encodeManifest(&m))
	noChecksum, _ := json.Marshal(&m)
	// reseal recomputes the checksum, to test the consistency checks
	// that come after it.
	reseal := func(edit func(*Manifest)) string {
		c := goldenManifest(t)
		edit(&c)
		return string(encodeManifest(&c))
	}
	for _, tc := range []struct {
		name, data, want string
	}{
		{"changed number", strings.Replace(good, `"generation": 3`, `"generation": 4`, 1), "checksum mismatch"},
		{"changed checkpoint", strings.Replace(good, `"op": 4`, `"op": 5`, 1), "checksum mismatch"},
		{"changed checksum", strings.Replace(good, `"checksum": "`, `"checksum": "0`, 1), "checksum mismatch"},
		{"no checksum", string(noChecksum), "no checksum"},
		{"unknown member", strings.Replace(good, `"checksum"`, `"checksum2"`, 1), "unknown field"},
		{"truncated", good[:len(good)/2], "not valid JSON"},
		{"empty", "", "not valid JSON"},
		{"not an object", "[1,2,3]", "not valid JSON"},
		{"no version", `{"repository_id":"x"}`, "no version"},
		{"newer version", strings.Replace(good, `"version": 2`, `"version": 3`, 1), "version 3; this kmbd reads version 2"},
		{"older version", strings.Replace(good, `"version": 2`, `"version": 1`, 1), "version 1; this kmbd reads version 2"},
		{"trailing data", good + "{}", "not valid JSON"},
		{"segment gap", reseal(func(m *Manifest) { m.Segments = append(m.Segments, m.Segments[0]) }), "starts at op 1, want op 5"},
		{"segments after nothing", reseal(func(m *Manifest) { m.Snapshots = nil; m.Segments[0].FirstOp = 2 }), "no snapshot holds the ops before"},
		{"segments past snapshot", reseal(func(m *Manifest) { m.Snapshots[0].Op = 1 }), "id does not match"},
		{"snapshot past checkpoint", reseal(func(m *Manifest) { m.Snapshots[0].Op, m.Snapshots[0].ID = 5, SnapshotID(5) }), "past the checkpoint"},
		{"snapshot part gap", reseal(func(m *Manifest) { m.Snapshots[0].Parts[0].FirstOp = 2 }), "starts at op 2, want op 1"},
		{"snapshot part name", reseal(func(m *Manifest) { m.Snapshots[0].Parts[0].Name = m.Segments[0].Name }), "name does not match"},
		{"snapshot without parts", reseal(func(m *Manifest) { m.Snapshots[0].Parts = nil }), "no parts"},
		{"wrong name", reseal(func(m *Manifest) { m.Segments[0].LastOp = 5; m.Checkpoint.Op = 5 }), "name does not match"},
		{"checkpoint ahead", reseal(func(m *Manifest) { m.Checkpoint.Op = 9 }), "checkpoint at op 9"},
		{"checkpoint time behind", reseal(func(m *Manifest) { m.Checkpoint.TimestampUnixNano = 1 }), "checkpoint time"},
		{"entries", reseal(func(m *Manifest) { m.Segments[0].Entries = 9 }), "do not hold its 9 entries"},
		{"bad sha", reseal(func(m *Manifest) { m.Segments[0].SHA256 = "xyz" }), "not 64 hex digits"},
		{"no id", reseal(func(m *Manifest) { m.RepositoryID = "" }), "no repository id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseManifest([]byte(tc.data))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrCorruptManifest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want ErrCorruptManifest containing %q", err, tc.want)
			}
		})
	}
}
