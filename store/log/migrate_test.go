package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// appendOpV1 is the version-1 encoding of op, which logs written before
// version 2 hold: version 2 without kind, principal and chain hash.
func appendOpV1(dst []byte, op *Op) []byte {
	dst = append(dst, opVersionV1)
	dst = binary.AppendUvarint(dst, op.Op)
	dst = binary.AppendUvarint(dst, op.View)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(op.Timestamp))
	dst = binary.AppendUvarint(dst, uint64(len(op.Tenant)))
	dst = append(dst, op.Tenant...)
	dst = binary.AppendUvarint(dst, op.FirstPosition)
	dst = binary.AppendUvarint(dst, op.ClientID)
	dst = binary.AppendUvarint(dst, op.RequestID)
	dst = binary.AppendUvarint(dst, uint64(len(op.Entries)))
	for _, e := range op.Entries {
		dst = binary.AppendUvarint(dst, uint64(len(e.Key)))
		dst = append(dst, e.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(e.Value)))
		dst = append(dst, e.Value...)
	}
	return dst
}

// segmentV1 is a version-1 segment holding ops.
func segmentV1(ops []*Op) []byte {
	b := []byte(segmentMagic)
	b = binary.LittleEndian.AppendUint16(b, segmentVersionV1)
	b = binary.LittleEndian.AppendUint64(b, ops[0].Op)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	for _, op := range ops {
		b = append(b, rawFrame(appendOpV1(nil, op))...)
	}
	return b
}

// TestMigrateGoldenSegment opens a segment that version 1 wrote.
func TestMigrateGoldenSegment(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "segment_v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	first, second := goldenOpV1(), goldenOpV1()
	first.Op, first.FirstPosition = 1, 1
	second.Op, second.FirstPosition, second.Entries = 2, 3, second.Entries[:1]
	if !bytes.Equal(golden, segmentV1([]*Op{first, second})) {
		t.Fatal("segmentV1 does not write what version 1 wrote")
	}
	rechain(Chain{}, []*Op{first, second})

	dir := t.TempDir()
	writeFile(t, dir, segmentName(1), golden)
	var logs bytes.Buffer
	l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: 1 << 20}, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Migrated != 1 || rep.LastOp != 2 || rep.TruncatedBytes != 0 {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(logs.String(), "log migrated to format version 2") {
		t.Fatalf("no migration line in\n%s", logs.String())
	}
	assertReadAll(t, l, []*Op{first, second})
	more := genOps(3, second.LastPosition()+1, 2, 1)
	mustAppendSync(t, l, more...)
	l.Close()

	l, rep = openTest(t, dir, 1<<20)
	if rep.Migrated != 0 || rep.LastOp != 4 {
		t.Fatalf("second open: %+v", rep)
	}
	assertReadAll(t, l, append([]*Op{first, second}, more...))
}

// TestMigrate covers logs of several version-1 segments: whole, cut short
// by a crash part way through a migration, with a torn tail, and with
// damage a torn write cannot explain.
func TestMigrate(t *testing.T) {
	ops := genOps(1, 1, 30, 1)
	// Segments of 10 ops each.
	write := func(t *testing.T, dir string) {
		for i := 0; i < 30; i += 10 {
			writeFile(t, dir, segmentName(uint64(i)+1), segmentV1(ops[i:i+10]))
		}
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		kept    int    // ops after migration
		err     string // Open fails mentioning it
	}{
		{"three segments", func(t *testing.T, dir string) {}, 30, ""},
		{"interrupted after the first segment", func(t *testing.T, dir string) {
			// Migrate the first segment alone, as a crash right after its
			// rename would leave it, with a half-written next one.
			only := t.TempDir()
			writeFile(t, only, segmentName(1), segmentV1(ops[:10]))
			l, _ := openTest(t, only, 1<<20)
			l.Close()
			b, err := os.ReadFile(filepath.Join(only, segmentName(1)))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, segmentName(1), b)
			writeFile(t, dir, segmentName(11)+migratingExt, b[:50])
		}, 30, ""},
		{"torn tail", func(t *testing.T, dir string) {
			mutateFile(t, filepath.Join(dir, segmentName(21)), func(b []byte) []byte { return b[:len(b)-5] })
		}, 29, ""},
		{"damage in a sealed segment", func(t *testing.T, dir string) {
			mutateFile(t, filepath.Join(dir, segmentName(11)), func(b []byte) []byte { b[60] ^= 1; return b })
		}, 0, "not a torn write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir)
			tt.prepare(t, dir)
			l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: 1 << 20}, nil, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("open = %v, want an error mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if rep.LastOp != uint64(tt.kept) {
				t.Fatalf("report %+v, want %d ops", rep, tt.kept)
			}
			want := genOps(1, 1, tt.kept, 1)
			assertReadAll(t, l, want)
			if entries, _ := filepath.Glob(filepath.Join(dir, "*")); len(entries) != 3+2 {
				t.Fatalf("files left: %v, want 3 segments and the indexes of the 2 sealed ones", entries)
			}
		})
	}
}

// TestCheckRefusesVersion1 makes Check say how to migrate rather than
// report every record of a version-1 log as damaged.
func TestCheckRefusesVersion1(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, segmentName(1), segmentV1(genOps(1, 1, 3, 1)))
	if _, _, err := Check(Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "format version 1") {
		t.Fatalf("Check = %v", err)
	}
	if _, _, err := Check(Config{Dir: filepath.Join(dir, "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Check of a missing dir = %v", err)
	}
}
