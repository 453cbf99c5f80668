package log

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// rawFrame frames an arbitrary payload with a correct checksum.
func rawFrame(payload []byte) []byte {
	b := le32(uint32(len(payload)))
	b = append(b, le32(crc32.Checksum(payload, castagnoli))...)
	return append(b, payload...)
}

func encodedFrame(op *Op) []byte {
	b, err := appendFrame(nil, op)
	if err != nil {
		panic(err)
	}
	return b
}

// TestTornTail damages the end of the last segment in the ways a crash or
// a bad disk can, and checks that Open cuts exactly the damaged suffix,
// says so, keeps every whole record before it, and lets appends go on.
func TestTornTail(t *testing.T) {
	const n = 10
	ops := genOps(1, 1, n, 1)
	nextOp, nextPos := next(ops)
	last := frameSize(ops[n-1])

	tests := []struct {
		name string
		// damage changes the last segment; lastAt is where op 10's record
		// starts in it and opAt(i) where op i's does.
		damage func(b []byte, lastAt int64) []byte
		kept   int    // whole ops left
		cut    int64  // bytes cut
		reason string // RecoveryReport.Reason
		// single marks cases that need every op in one segment.
		single bool
	}{
		{"garbage appended", func(b []byte, _ int64) []byte { return append(b, "garbage!garbage!"...) },
			n, 16, reasonBadLength, false},
		{"zeros appended", func(b []byte, _ int64) []byte { return append(b, make([]byte, 4096)...) },
			n, 4096, reasonBadLength, false},
		{"part of a frame header appended", func(b []byte, _ int64) []byte { return append(b, 1, 2, 3, 4, 5) },
			n, 5, reasonShortRecord, false},
		{"last record cut in half", func(b []byte, at int64) []byte { return b[:at+last/2] },
			n - 1, last / 2, reasonShortRecord, false},
		{"last record missing one byte", func(b []byte, _ int64) []byte { return b[:len(b)-1] },
			n - 1, last - 1, reasonShortRecord, false},
		{"last record's frame header cut", func(b []byte, at int64) []byte { return b[:at+3] },
			n - 1, 3, reasonShortRecord, false},
		{"payload byte flipped", func(b []byte, at int64) []byte { b[at+frameHeaderSize+10] ^= 1; return b },
			n - 1, last, reasonChecksum, false},
		{"checksum flipped", func(b []byte, at int64) []byte { b[at+5] ^= 0x80; return b },
			n - 1, last, reasonChecksum, false},
		{"length beyond the file", func(b []byte, at int64) []byte {
			binary.LittleEndian.PutUint32(b[at:], uint32(last))
			return b
		}, n - 1, last, reasonShortRecord, false},
		{"length below the minimum", func(b []byte, at int64) []byte {
			binary.LittleEndian.PutUint32(b[at:], 3)
			return b
		}, n - 1, last, reasonBadLength, false},
		{"length above the maximum", func(b []byte, at int64) []byte {
			binary.LittleEndian.PutUint32(b[at:], MaxRecordSize+1)
			return b
		}, n - 1, last, reasonBadLength, false},
		{"valid record skipping an op", func(b []byte, _ int64) []byte {
			return append(b, encodedFrame(withOp(genOps(nextOp, nextPos, 1, 2)[0], nextOp+1, nextPos))...)
		}, n, frameSize(genOps(nextOp, nextPos, 1, 2)[0]), reasonOpGap, false},
		{"valid record repeating the last op", func(b []byte, _ int64) []byte { return append(b, encodedFrame(ops[n-1])...) },
			n, last, reasonOpGap, false},
		{"valid record skipping a position", func(b []byte, _ int64) []byte {
			return append(b, encodedFrame(genOps(nextOp, nextPos+1, 1, 2)[0])...)
		}, n, frameSize(genOps(nextOp, nextPos+1, 1, 2)[0]), reasonPositionGap, false},
		{"valid checksum, unknown op version", func(b []byte, _ int64) []byte {
			payload := AppendOp(nil, genOps(nextOp, nextPos, 1, 2)[0])
			payload[0] = opVersion + 1
			return append(b, rawFrame(payload)...)
		}, n, frameSize(genOps(nextOp, nextPos, 1, 2)[0]), reasonDecode, false},
		{"valid checksum, trailing byte in payload", func(b []byte, _ int64) []byte {
			return append(b, rawFrame(append(AppendOp(nil, genOps(nextOp, nextPos, 1, 2)[0]), 0))...)
		}, n, frameSize(genOps(nextOp, nextPos, 1, 2)[0]) + 1, reasonDecode, false},
	}
	for _, segSize := range []int64{1 << 20, 600} {
		for _, tt := range tests {
			if tt.single && segSize < 1<<20 {
				continue
			}
			name := tt.name
			if segSize < 1<<20 {
				name += " in a later segment"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				l, _ := openTest(t, dir, segSize)
				mustAppendSync(t, l, ops...)
				segs := segmentFiles(t, dir)
				lastSeg := segs[len(segs)-1]
				if segSize < 1<<20 && len(segs) < 3 {
					t.Fatalf("want several segments, got %v", segs)
				}
				path := filepath.Join(dir, lastSeg)
				lastAt := fileSize(t, path) - last
				l.Close()
				mutateFile(t, path, func(b []byte) []byte { return tt.damage(b, lastAt) })
				damaged := fileSize(t, path)

				var logs bytes.Buffer
				l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: segSize}, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer l.Close()
				want := RecoveryReport{
					Segments:         len(segs),
					FirstOp:          1,
					LastOp:           uint64(tt.kept),
					TruncatedBytes:   tt.cut,
					TruncatedSegment: lastSeg,
					TruncatedOffset:  damaged - tt.cut,
					Reason:           tt.reason,
				}
				if rep := withoutIndexCounts(rep); !reflect.DeepEqual(rep, want) {
					t.Fatalf("report = %+v\n          want %+v", rep, want)
				}
				if got := fileSize(t, path); got != damaged-tt.cut {
					t.Fatalf("segment is %d bytes after recovery, want %d", got, damaged-tt.cut)
				}
				checkWarn(t, &logs, "log tail truncated", map[string]any{
					"segment": lastSeg, "offset": float64(want.TruncatedOffset),
					"bytes_cut": float64(tt.cut), "reason": tt.reason,
				})
				assertReadAll(t, l, ops[:tt.kept])
				if _, err := l.Read(uint64(tt.kept) + 1); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Read past the cut = %v, want ErrNotFound", err)
				}
				if l.SizeBytes() != dirSize(t, dir) {
					t.Fatalf("SizeBytes = %d, files hold %d", l.SizeBytes(), dirSize(t, dir))
				}

				// Appending continues from the last whole record, and the
				// result survives another restart without any cut.
				more := genOps(uint64(tt.kept)+1, ops[tt.kept-1].LastPosition()+1, 3, 5)
				mustAppendSync(t, l, more...)
				l.Close()
				l, rep = openTest(t, dir, segSize)
				if rep.TruncatedBytes != 0 || rep.LastOp != uint64(tt.kept)+3 {
					t.Fatalf("report after appending = %+v", rep)
				}
				assertReadAll(t, l, append(append([]*Op(nil), ops[:tt.kept]...), more...))
			})
		}
	}
}

// checkWarn checks that logs hold exactly one WARN line, with message msg
// and the given attributes.
func checkWarn(t *testing.T, logs *bytes.Buffer, msg string, attrs map[string]any) {
	t.Helper()
	var warns []map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["level"] == "WARN" {
			warns = append(warns, rec)
		}
	}
	if len(warns) != 1 {
		t.Fatalf("got %d WARN lines, want 1:\n%s", len(warns), logs)
	}
	if warns[0]["msg"] != msg {
		t.Fatalf("WARN message %q, want %q", warns[0]["msg"], msg)
	}
	for k, v := range attrs {
		if warns[0][k] != v {
			t.Errorf("WARN attribute %s = %v (%T), want %v", k, warns[0][k], warns[0][k], v)
		}
	}
}

// TestCorruptEarlierSegment damages segments other than the last one:
// that cannot be a torn write, so Open must fail, name the segment, and
// leave every file as it was.
func TestCorruptEarlierSegment(t *testing.T) {
	const segSize = 1500
	ops := genOps(1, 1, 30, 1)
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string, segs []string)
		segment int    // index of the segment the error must name
		want    string // also in the error
	}{
		{"payload byte flipped", func(t *testing.T, dir string, segs []string) {
			mutateFile(t, filepath.Join(dir, segs[1]), func(b []byte) []byte { b[segmentHeaderSize+20] ^= 1; return b })
		}, 1, "offset 60 (221 bytes, op 7): checksum mismatch"},
		{"last record of the first segment cut", func(t *testing.T, dir string, segs []string) {
			mutateFile(t, filepath.Join(dir, segs[0]), func(b []byte) []byte { return b[:len(b)-3] })
		}, 0, reasonShortRecord},
		{"garbage after the first segment", func(t *testing.T, dir string, segs []string) {
			mutateFile(t, filepath.Join(dir, segs[0]), func(b []byte) []byte { return append(b, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0) })
		}, 0, reasonBadLength},
		{"header of a middle segment zeroed", func(t *testing.T, dir string, segs []string) {
			mutateFile(t, filepath.Join(dir, segs[2]), func(b []byte) []byte { clear(b[:segmentHeaderSize]); return b })
		}, 2, reasonTornHeader},
		{"middle segment missing", func(t *testing.T, dir string, segs []string) {
			if err := os.Remove(filepath.Join(dir, segs[2])); err != nil {
				t.Fatal(err)
			}
		}, 3, "want op"},
		{"first segment missing", func(t *testing.T, dir string, segs []string) {
			if err := os.Remove(filepath.Join(dir, segs[0])); err != nil {
				t.Fatal(err)
			}
		}, 1, "want op 1"},
		{"segment renamed", func(t *testing.T, dir string, segs []string) {
			op, _ := parseSegmentName(segs[1])
			if err := os.Rename(filepath.Join(dir, segs[1]), filepath.Join(dir, segmentName(op+1))); err != nil {
				t.Fatal(err)
			}
		}, -1, "header says first op"},
		{"unknown version in the last segment", func(t *testing.T, dir string, segs []string) {
			mutateFile(t, filepath.Join(dir, segs[len(segs)-1]), func(b []byte) []byte {
				copy(b, withCRC(patch(b[:segmentHeaderSize], 6, 3)))
				return b
			})
		}, -2, "unknown format version 3"},
		{"torn header of a last segment that does not follow", func(t *testing.T, dir string, segs []string) {
			writeFile(t, dir, segmentName(36), nil)
		}, -3, "ends at op 30"},
		{"torn header of the last segment, valid record after it", func(t *testing.T, dir string, segs []string) {
			mutateFile(t, filepath.Join(dir, segs[len(segs)-1]), func(b []byte) []byte { b[3] ^= 1; return b })
		}, -2, "a valid record follows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := openTest(t, dir, segSize)
			mustAppendSync(t, l, ops...)
			l.Close()
			segs := segmentFiles(t, dir)
			if len(segs) < 5 {
				t.Fatalf("want at least 5 segments, got %v", segs)
			}
			tt.damage(t, dir, segs)
			before := snapshotDir(t, dir)

			_, _, err := open(Config{Dir: dir, SegmentSizeBytes: segSize}, nil, nil)
			if err == nil {
				t.Fatal("open succeeded")
			}
			name := ""
			switch tt.segment {
			case -1:
				name = segmentFiles(t, dir)[1]
			case -2:
				name = segs[len(segs)-1]
			case -3:
				name = segmentName(36)
			default:
				name = segs[tt.segment]
			}
			if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("open = %v\nwant an error naming %s and mentioning %q", err, name, tt.want)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open = %v, want it to wrap ErrCorrupt", err)
			}
			if after := snapshotDir(t, dir); !mapsEqual(before, after) {
				t.Fatalf("a failed open changed the files")
			}
		})
	}
}

func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// opsFillingSegments returns how many of ops fill whole segments of
// segSize, so that appending the next op starts a new segment.
func opsFillingSegments(t *testing.T, ops []*Op, segSize int64) int {
	t.Helper()
	dir := t.TempDir()
	l, _ := openTest(t, dir, segSize)
	mustAppendSync(t, l, ops...)
	names := segmentFiles(t, dir)
	last, _ := parseSegmentName(names[len(names)-1])
	if last < 2 {
		t.Fatal("ops fill less than one segment")
	}
	return int(last - 1)
}

// TestTornSegmentHeader covers a crash while the last segment was being
// created: its header is short or torn, and it is removed.
func TestTornSegmentHeader(t *testing.T) {
	const segSize = 1500
	// Ops that fill whole segments: the next one starts a new segment.
	ops := genOps(1, 1, 30, 1)
	ops = ops[:opsFillingSegments(t, ops, segSize)]
	n := uint64(len(ops))
	tests := []struct {
		name   string
		tail   func() []byte // content of the extra last segment
		reason string
	}{
		{"empty file", func() []byte { return nil }, reasonShortHeader},
		{"short header", func() []byte { return header(n+1, ops)[:7] }, reasonShortHeader},
		{"zeroed header", func() []byte { return make([]byte, segmentHeaderSize) }, reasonTornHeader},
		{"zeroed header and data", func() []byte { return make([]byte, 4096) }, reasonTornHeader},
		{"torn header, torn record", func() []byte {
			h := header(n+1, ops)
			h[10] ^= 0xff
			return append(h, encodedFrame(genOps(n+1, ops[n-1].LastPosition()+1, 1, 1)[0])[:30]...)
		}, reasonTornHeader},
	}
	for _, only := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if only {
				name += ", only segment"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				kept := ops
				if only {
					kept = nil
				} else {
					l, _ := openTest(t, dir, segSize)
					mustAppendSync(t, l, ops...)
					l.Close()
				}
				torn := segmentName(uint64(len(kept)) + 1)
				content := tt.tail()
				if err := os.WriteFile(filepath.Join(dir, torn), content, 0o644); err != nil {
					t.Fatal(err)
				}
				segs := segmentFiles(t, dir)

				var logs bytes.Buffer
				l, rep, err := open(Config{Dir: dir, SegmentSizeBytes: segSize}, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer l.Close()
				want := RecoveryReport{
					Segments:         max(len(segs)-1, 1),
					LastOp:           uint64(len(kept)),
					TruncatedBytes:   int64(len(content)),
					TruncatedSegment: torn,
					Reason:           tt.reason,
				}
				if len(kept) > 0 {
					want.FirstOp = 1
				}
				if rep := withoutIndexCounts(rep); !reflect.DeepEqual(rep, want) {
					t.Fatalf("report = %+v\n          want %+v", rep, want)
				}
				checkWarn(t, &logs, "log segment with torn header removed", map[string]any{
					"segment": torn, "bytes_cut": float64(len(content)), "reason": tt.reason,
				})
				assertReadAll(t, l, kept)

				// The log goes on, creating the segment again.
				pos := uint64(1)
				if len(kept) > 0 {
					pos = kept[len(kept)-1].LastPosition() + 1
				}
				more := genOps(uint64(len(kept))+1, pos, 3, 4)
				mustAppendSync(t, l, more...)
				if _, err := os.Stat(filepath.Join(dir, torn)); err != nil {
					t.Fatalf("segment %s was not created again: %v", torn, err)
				}
				l.Close()
				l, rep = openTest(t, dir, segSize)
				if rep.TruncatedBytes != 0 {
					t.Fatalf("report after appending = %+v", rep)
				}
				assertReadAll(t, l, append(append([]*Op(nil), kept...), more...))
			})
		}
	}
}

func TestRecoveryLogging(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	l, _, err := open(Config{Dir: dir, SegmentSizeBytes: 1000}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustAppendSync(t, l, genOps(1, 1, 20, 1)...)
	l.Close()
	if _, _, err := open(Config{Dir: dir, SegmentSizeBytes: 1000}, logger, nil); err != nil {
		t.Fatal(err)
	}

	var rolls, summaries []map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		switch rec["msg"] {
		case "log segment rolled":
			rolls = append(rolls, rec)
		case "log recovered":
			summaries = append(summaries, rec)
		}
	}
	segs := segmentFiles(t, dir)
	if len(rolls) != len(segs)-1 {
		t.Fatalf("%d roll lines for %d segments", len(rolls), len(segs))
	}
	for i, r := range rolls {
		op, _ := parseSegmentName(segs[i+1])
		if r["level"] != "INFO" || r["segment"] != segs[i+1] || r["first_op"] != float64(op) {
			t.Errorf("roll line %v, want INFO segment=%s first_op=%d", r, segs[i+1], op)
		}
	}
	if len(summaries) != 2 {
		t.Fatalf("%d recovery summaries, want 2", len(summaries))
	}
	s := summaries[1]
	if s["level"] != "INFO" || s["segments"] != float64(len(segs)) || s["first_op"] != float64(1) || s["last_op"] != float64(20) {
		t.Errorf("recovery summary %v", s)
	}
	if _, ok := s["duration"]; !ok {
		t.Errorf("recovery summary has no duration: %v", s)
	}
}

func TestOpenIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"README", "00000000000000000001.seg.tmp", "1.seg"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, rep := openTest(t, dir, 1<<20)
	if !reflect.DeepEqual(rep, RecoveryReport{Segments: 1}) {
		t.Fatalf("report = %+v", rep)
	}
	mustAppendSync(t, l, genOps(1, 1, 2, 1)...)
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l, _ := openTest(t, dir, 1<<20)
	mustAppendSync(t, l, genOps(1, 1, 2, 1)...)
	if len(segmentFiles(t, dir)) != 1 {
		t.Fatal("no segment in the new directory")
	}
}
