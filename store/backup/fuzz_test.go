package backup

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
	kmblog "github.com/kmb-db/kmb/store/log"
)

// segmentSeeds are the seed corpus of FuzzDecodeSegment, written to
// testdata/fuzz by TestFuzzSeeds -update.
func segmentSeeds(t testing.TB) map[string][]byte {
	golden, _, err := encodeSegment(goldenOps())
	if err != nil {
		t.Fatal(err)
	}
	big, _, err := encodeSegment(genOps(1, 1, 200, 1))
	if err != nil {
		t.Fatal(err)
	}
	two, _, _ := encodeSegment(goldenOps()[2:])
	first, _, _ := encodeSegment(goldenOps()[:2])
	flipped := bytes.Clone(golden)
	flipped[len(flipped)/2] ^= 0x04
	badCRC := rawRecords(goldenOps()...)
	badCRC[5] ^= 1
	return map[string][]byte{
		"golden":          golden,
		"200-ops":         big,
		"two-frames":      append(bytes.Clone(first), two...),
		"truncated":       golden[:len(golden)-7],
		"flipped":         flipped,
		"empty":           {},
		"no-records":      encoder().EncodeAll(nil, nil),
		"bad-crc":         encoder().EncodeAll(badCRC, nil),
		"uncompressed":    rawRecords(goldenOps()...),
		"skippable-frame": append([]byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4}, golden...),
	}
}

func manifestSeeds(t testing.TB) map[string][]byte {
	m := goldenManifest(t)
	good := encodeManifest(&m)
	empty := Manifest{Version: 1, RepositoryID: "x", Generation: 1}
	return map[string][]byte{
		"golden":    good,
		"empty":     encodeManifest(&empty),
		"truncated": good[:len(good)/2],
		"not-json":  []byte("manifest"),
	}
}

// TestFuzzSeeds keeps the checked-in seed corpora in step with the
// format: -update rewrites them.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range map[string]map[string][]byte{
		"FuzzDecodeSegment": segmentSeeds(t),
		"FuzzParseManifest": manifestSeeds(t),
	} {
		files := make(map[string][]byte, len(seeds))
		for name, data := range seeds {
			files[name] = fuzzseed.Marshal(data)
		}
		fuzzseed.Check(t, *update, target, files)
	}
}

// FuzzDecodeSegment feeds arbitrary bytes to the segment decoder. It must
// never panic, and must either refuse them with ErrCorruptSegment or
// return contiguous ops that round-trip through the writer.
func FuzzDecodeSegment(f *testing.F) {
	// One decoder for all inputs, as Verify and Restore reuse theirs:
	// what one input leaves in it must not change the next one's result.
	dec, err := newSegmentDecoder()
	if err != nil {
		f.Fatal(err)
	}
	defer dec.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeWith(dec, data)
		if err != nil {
			if !errors.Is(err, ErrCorruptSegment) {
				t.Fatalf("error %v does not wrap ErrCorruptSegment", err)
			}
			return
		}
		if len(ops) == 0 {
			t.Fatal("accepted an object without records")
		}
		ptrs := make([]*kmblog.Op, len(ops))
		for i := range ops {
			ptrs[i] = &ops[i]
			if i > 0 && (ops[i].Op != ops[i-1].Op+1 || ops[i].FirstPosition != ops[i-1].LastPosition()+1) {
				t.Fatalf("accepted ops that are not contiguous: %d then %d", ops[i-1].Op, ops[i].Op)
			}
		}
		stored, info, err := encodeSegment(ptrs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeAll(stored)
		if err != nil {
			t.Fatalf("re-encoded ops do not decode: %v", err)
		}
		if !reflect.DeepEqual(again, ops) {
			t.Fatal("ops changed through a re-encoding")
		}
		if info.FirstOp != ops[0].Op || info.LastOp != ops[len(ops)-1].Op {
			t.Fatalf("info %+v", info)
		}
	})
}

// FuzzParseManifest: a manifest is refused with ErrCorruptManifest or
// accepted, and an accepted one is written back to the same manifest.
func FuzzParseManifest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptManifest) {
				t.Fatalf("error %v does not wrap ErrCorruptManifest", err)
			}
			return
		}
		again, err := parseManifest(encodeManifest(&m))
		if err != nil {
			t.Fatalf("accepted manifest does not survive a rewrite: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("manifest changed through a rewrite:\n%+v\n%+v", again, m)
		}
	})
}
