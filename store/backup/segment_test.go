package backup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// goldenOps are the ops of testdata/segment_v1.kseg.zst: two tenants, an
// op without entries, an empty value and a non-ASCII key.
func goldenOps() []*kmblog.Op {
	return chain(goldenOpsV1())
}

// goldenOpsV1 are goldenOps without chain hashes, as ops of the log's
// format version 1 decode: testdata/segment_v1.kseg.zst holds them, as a
// repository written before version 2 does.
func goldenOpsV1() []*kmblog.Op {
	return []*kmblog.Op{
		{Op: 1, View: 1, Timestamp: 1_760_000_000_000_000_000, Tenant: "acme", FirstPosition: 1, ClientID: 7, RequestID: 1,
			Entries: []kmblog.Entry{{Key: "a", Value: []byte(`{"n":1}`)}, {Key: "b", Value: []byte(`"two"`)}}},
		{Op: 2, View: 1, Timestamp: 1_760_000_000_000_000_000, Tenant: "globex", FirstPosition: 3,
			Entries: []kmblog.Entry{{Key: "clé", Value: nil}}},
		{Op: 3, View: 2, Timestamp: 1_760_000_001_500_000_000, Tenant: "acme", FirstPosition: 4},
		{Op: 4, View: 2, Timestamp: 1_760_000_002_000_000_000, Tenant: "acme", FirstPosition: 4, ClientID: 7, RequestID: 2,
			Entries: []kmblog.Entry{{Key: "a", Value: []byte(`{"n":2,"list":[1,2,3]}`)}}},
	}
}

// checkGolden compares got with the golden file name in testdata, or
// rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what this code writes (%d bytes, golden %d); if the format changed on purpose, run go test -update and bump the version", name, len(got), len(want))
	}
}

// The stored form of a segment is pinned: old objects must stay readable,
// and the same ops must compress to the same bytes (a retried write
// overwrites an object with identical bytes). A new zstd release that
// compresses differently fails the second half only: check that the old
// golden still decodes, then rewrite it with -update.
func TestSegmentGolden(t *testing.T) {
	stored, info, err := encodeSegment(goldenOps())
	if err != nil {
		t.Fatal(err)
	}
	if want := "segments/00000000000000000001-00000000000000000004.kseg.zst"; info.Name != want {
		t.Fatalf("name %s, want %s", info.Name, want)
	}
	if info.FirstPosition != 1 || info.LastPosition != 4 || info.Entries != 4 ||
		info.FirstTimestampUnixNano != 1_760_000_000_000_000_000 || info.LastTimestampUnixNano != 1_760_000_002_000_000_000 {
		t.Fatalf("info %+v", info)
	}
	if want := uint64(len(rawRecords(goldenOps()...))); info.RawBytes != want || info.StoredBytes != uint64(len(stored)) {
		t.Fatalf("sizes %+v, want raw %d", info, want)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "segment_v1_ops_v2.kseg.zst"))
	if err == nil {
		ops, err := decodeAll(golden)
		if err != nil {
			t.Fatalf("golden segment does not decode: %v", err)
		}
		assertOps(t, ops, goldenOps())
	}
	checkGolden(t, "segment_v1_ops_v2.kseg.zst", stored)

	// A segment of a repository written before the log's format version
	// 2 still decodes, with zero chain hashes.
	legacy, err := os.ReadFile(filepath.Join("testdata", "segment_v1.kseg.zst"))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := decodeAll(legacy)
	if err != nil {
		t.Fatalf("version-1 segment does not decode: %v", err)
	}
	want := goldenOpsV1()
	want[2].Kind = kmblog.KindData // version 1 had markers only without a tenant
	assertOps(t, ops, want)

	again, _, _ := encodeSegment(goldenOps())
	if !bytes.Equal(again, stored) {
		t.Fatal("encoding the same ops twice gave different bytes")
	}
}

func TestSegmentKey(t *testing.T) {
	if got := SegmentKey(1, 18446744073709551615); got != "segments/00000000000000000001-18446744073709551615.kseg.zst" {
		t.Fatalf("SegmentKey = %s", got)
	}
	for _, tc := range []struct {
		key         string
		first, last uint64
		ok          bool
	}{
		{"segments/00000000000000000001-00000000000000000009.kseg.zst", 1, 9, true},
		{"segments/00000000000000000005-00000000000000000005.kseg.zst", 5, 5, true},
		{"segments/00000000000000000000-00000000000000000009.kseg.zst", 0, 0, false}, // op 0
		{"segments/00000000000000000009-00000000000000000001.kseg.zst", 0, 0, false}, // backwards
		{"segments/1-9.kseg.zst", 0, 0, false},
		{"segments/00000000000000000001-00000000000000000009.kseg", 0, 0, false},
		{"other/00000000000000000001-00000000000000000009.kseg.zst", 0, 0, false},
		{"segments/0000000000000000000a-00000000000000000009.kseg.zst", 0, 0, false},
		{"segments/+0000000000000000001-00000000000000000009.kseg.zst", 0, 0, false},
		{"segments/99999999999999999999-99999999999999999999.kseg.zst", 0, 0, false}, // overflows u64
	} {
		first, last, ok := ParseSegmentKey(tc.key)
		if ok != tc.ok || first != tc.first || last != tc.last {
			t.Errorf("ParseSegmentKey(%q) = %d, %d, %v; want %d, %d, %v", tc.key, first, last, ok, tc.first, tc.last, tc.ok)
		}
	}
}

func TestSegmentRoundTripSizes(t *testing.T) {
	for _, n := range []int{1, 2, 10, 1000} {
		ops := genOps(41, 100, n, uint64(n))
		stored, info, err := encodeSegment(ops)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeAll(stored)
		if err != nil {
			t.Fatalf("%d ops: %v", n, err)
		}
		assertOps(t, got, ops)
		if info.FirstOp != 41 || info.LastOp != 40+uint64(n) || info.FirstPosition != 100 || info.LastPosition != ops[n-1].LastPosition() {
			t.Fatalf("%d ops: info %+v", n, info)
		}
	}
}

// A reader accepts concatenated zstd frames and skippable frames, so that
// a later writer may stream a segment in several frames.
func TestSegmentMultiFrame(t *testing.T) {
	first, _, _ := encodeSegment(goldenOps()[:1])
	rest, _, _ := encodeSegment(goldenOps()[1:])
	skippable := []byte{0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 0xaa, 0xbb}
	data := append(append(append([]byte{}, first...), skippable...), rest...)
	got, err := decodeAll(data)
	if err != nil {
		t.Fatal(err)
	}
	assertOps(t, got, goldenOps())
}

func TestEncodeSegmentRefusesHugeOp(t *testing.T) {
	op := &kmblog.Op{Op: 1, FirstPosition: 1, Tenant: "t",
		Entries: []kmblog.Entry{{Key: "k", Value: make([]byte, kmblog.MaxRecordSize)}}}
	if _, _, err := encodeSegment([]*kmblog.Op{op}); err == nil {
		t.Fatal("an op larger than a record accepted")
	}
}

// Every way a segment object can be damaged is caught, and the error
// says where.
func TestSegmentDecodeErrors(t *testing.T) {
	ops := goldenOps()
	good := rawRecords(ops...)
	compress := func(raw []byte) []byte { return encoder().EncodeAll(raw, nil) }
	stored := compress(good)
	gap := *ops[2]
	gap.Op = 9
	posGap := *ops[2]
	posGap.FirstPosition = 7
	badCRC := bytes.Clone(good)
	badCRC[4] ^= 1
	badLen := bytes.Clone(good)
	copy(badLen, []byte{0xff, 0xff, 0xff, 0x7f})
	zeroLen := append([]byte{0, 0, 0, 0, 0, 0, 0, 0}, good...)
	undecodable := rawRecord([]byte{9, 1, 1})
	flipped := bytes.Clone(stored)
	flipped[len(flipped)/2] ^= 0x40

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty object", nil, "no records"},
		{"no records", compress(nil), "no records"},
		{"not zstd", []byte("this is not a zstd stream at all"), "zstd"},
		{"truncated object", stored[:len(stored)-5], ""},
		{"flipped byte", flipped, ""},
		{"truncated record header", compress(good[:len(good)-len(rawRecords(ops[3]))+3]), "truncated record header"},
		{"truncated payload", compress(good[:len(good)-2]), "truncated record payload"},
		{"bad checksum", compress(badCRC), "record checksum mismatch"},
		{"length too large", compress(badLen), "record length"},
		{"zero length", compress(zeroLen), "record length 0"},
		{"undecodable op", compress(undecodable), "malformed op"},
		{"op gap", compress(rawRecords(ops[0], ops[1], &gap)), "record holds op 9, want op 3"},
		{"position gap", compress(rawRecords(ops[0], ops[1], &posGap)), "starts at position 7, want 4"},
		{"op zero", compress(rawRecords(&kmblog.Op{Op: 0, FirstPosition: 1, Tenant: "t"})), "start at 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeAll(tc.data)
			if err == nil {
				t.Fatal("decoded without error")
			}
			if !errors.Is(err, ErrCorruptSegment) {
				t.Fatalf("%v does not wrap ErrCorruptSegment", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
