package log

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
)

func TestSegmentName(t *testing.T) {
	tests := []struct {
		name string
		op   uint64
		ok   bool
	}{
		{"00000000000000000001.seg", 1, true},
		{"18446744073709551615.seg", 18446744073709551615, true},
		{"18446744073709551616.seg", 0, false}, // overflows
		{"0000000000000000001.seg", 0, false},  // 19 digits
		{"00000000000000000001.seg.tmp", 0, false},
		{"0000000000000000000a.seg", 0, false},
		{"+0000000000000000001.seg", 0, false},
		{"00000000000000000001.log", 0, false},
	}
	for _, tt := range tests {
		op, ok := parseSegmentName(tt.name)
		if op != tt.op || ok != tt.ok {
			t.Errorf("parseSegmentName(%q) = %d, %v, want %d, %v", tt.name, op, ok, tt.op, tt.ok)
		}
		if tt.ok && segmentName(tt.op) != tt.name {
			t.Errorf("segmentName(%d) = %q, want %q", tt.op, segmentName(tt.op), tt.name)
		}
	}
}

func TestSegmentHeader(t *testing.T) {
	want := segmentHeader{firstOp: 77, firstPos: 300, prevChain: ChainHash(Chain{}, goldenOp())}
	good := appendSegmentHeader(nil, want)
	fuzzseed.Golden(t, *update, "segment_header_v2.golden", good)
	tests := []struct {
		name   string
		b      []byte
		reason string
	}{
		{"good", good, ""},
		{"empty", nil, reasonShortHeader},
		{"short", good[:segmentHeaderSize-1], reasonShortHeader},
		{"zeroed", make([]byte, segmentHeaderSize), reasonTornHeader},
		{"flipped first op", patch(good, 8, good[8]^1), reasonTornHeader},
		{"flipped position", patch(good, 16, good[16]^1), reasonTornHeader},
		{"flipped chain hash", patch(good, 30, good[30]^1), reasonTornHeader},
		{"flipped checksum", patch(good, segmentHeaderSize-1, good[segmentHeaderSize-1]^1), reasonTornHeader},
		{"bad magic", withCRC(patch(good, 0, 'X')), reasonHeaderInvalid},
		{"version 1", withCRC(patch(good, 6, 1)), reasonHeaderInvalid},
		{"version 3", withCRC(patch(good, 6, 3)), reasonHeaderInvalid},
		{"first op 0", appendSegmentHeader(nil, segmentHeader{firstPos: 1}), reasonHeaderInvalid},
		{"first position 0", appendSegmentHeader(nil, segmentHeader{firstOp: 1}), reasonHeaderInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := decodeSegmentHeader(tt.b)
			switch {
			case tt.reason == "" && (err != nil || h != want):
				t.Fatalf("decode = %+v, %v, want %+v", h, err, want)
			case tt.reason != "" && (err == nil || err.Reason != tt.reason):
				t.Fatalf("decode = %+v, %v, want reason %q", h, err, tt.reason)
			}
		})
	}
}

// withCRC recomputes the checksum of a hand-edited segment header.
func withCRC(h []byte) []byte {
	body := h[:segmentHeaderSize-4]
	return binary.LittleEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli))
}

// FuzzSegmentHeader checks that decodeSegmentHeader never panics and
// accepts only headers that encode back to the same bytes.
func FuzzSegmentHeader(f *testing.F) {
	f.Add(header(1, nil))
	f.Add(header(1<<40, nil))
	f.Add(make([]byte, segmentHeaderSize))
	f.Add([]byte(segmentMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeSegmentHeader(b)
		if err != nil {
			return
		}
		if enc := appendSegmentHeader(nil, h); !bytes.Equal(enc, b[:segmentHeaderSize]) {
			t.Fatalf("accepted %x, which encodes as %x", b[:segmentHeaderSize], enc)
		}
	})
}
