package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
)

// goldenOp is the op whose encoding is pinned in testdata/op_v2.golden.
// Changing the encoding means a new version, not a new golden file.
func goldenOp() *Op {
	op := goldenOpV1()
	op.Principal = "acme-writer"
	op.Chain = ChainHash(Chain{1, 2, 3}, op)
	return op
}

// goldenOpV1 is the op pinned in testdata/op_v1.golden, as DecodeOpV1
// returns it.
func goldenOpV1() *Op {
	return &Op{
		Op:            300,
		View:          2,
		Timestamp:     1_700_000_000_123_456_789,
		Tenant:        "acme",
		FirstPosition: 1000,
		ClientID:      7,
		RequestID:     42,
		Entries: []Entry{
			{Key: "user:1", Value: []byte(`{"name":"ada"}`)},
			{Key: "user:2", Value: []byte(`null`)},
		},
	}
}

func TestOpGolden(t *testing.T) {
	b := AppendOp(nil, goldenOp())
	fuzzseed.Golden(t, *update, "op_v2.golden", b)
	op, err := DecodeOp(b)
	if err != nil {
		t.Fatal(err)
	}
	assertOpEqual(t, op, goldenOp())
	if c := ChainHash(Chain{1, 2, 3}, &op); c != op.Chain {
		t.Fatalf("chain hash of the decoded op = %x, stored %x", c, op.Chain)
	}
}

// TestDecodeOpV1 reads the version-1 encoding that logs written before
// version 2 hold, for their migration.
func TestDecodeOpV1(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "op_v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	op, err := DecodeOpV1(b)
	if err != nil {
		t.Fatal(err)
	}
	assertOpEqual(t, op, goldenOpV1())
	if _, err := DecodeOp(b); err == nil {
		t.Fatal("DecodeOp accepted a version-1 op")
	}
	if _, err := DecodeOpV1(AppendOp(nil, goldenOp())); err == nil {
		t.Fatal("DecodeOpV1 accepted a version-2 op")
	}
	marker, err := DecodeOpV1([]byte{1, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0})
	if err != nil || marker.Kind != KindMarker {
		t.Fatalf("version-1 op without tenant and entries = %+v, %v; want a marker", marker, err)
	}
}

func TestOpRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		op   Op
	}{
		{"zero", Op{}},
		{"no entries", Op{Op: 1, View: 1, Tenant: "t", FirstPosition: 1}},
		{"empty key and value", Op{Op: 1, FirstPosition: 1, Entries: []Entry{{}}}},
		{"empty tenant", Op{Op: 9, FirstPosition: 3, Entries: []Entry{{Key: "k", Value: []byte("1")}}}},
		{"negative timestamp", Op{Op: 1, Timestamp: -1, FirstPosition: 1, Entries: []Entry{{Key: "k", Value: []byte(`"v"`)}}}},
		{"max varints", Op{
			Op: math.MaxUint64, View: math.MaxUint64, Timestamp: math.MinInt64, Tenant: "t",
			FirstPosition: math.MaxUint64, ClientID: math.MaxUint64, RequestID: math.MaxUint64,
			Entries: []Entry{{Key: "k", Value: []byte("0")}},
		}},
		{"mixed empty values", Op{Op: 2, FirstPosition: 5, Tenant: "t", Entries: []Entry{
			{Key: "a", Value: []byte("1")}, {Key: "b"}, {Key: "", Value: []byte(`{}`)},
		}}},
		{"large value", Op{Op: 3, FirstPosition: 1, Tenant: "big", Entries: []Entry{
			{Key: "blob", Value: bytes.Repeat([]byte("x"), 1<<16)},
		}}},
		{"binary bytes", Op{Op: 4, FirstPosition: 1, Tenant: "\x00\xff", Entries: []Entry{
			{Key: "\x80\x81", Value: []byte{0, 0xff}},
		}}},
		{"golden", *goldenOp()},
		{"marker", Op{Op: 5, View: 1, Kind: KindMarker, FirstPosition: 9, Chain: Chain{0xff}}},
		{"admin", Op{Op: 6, Kind: KindAdmin, FirstPosition: 9, Principal: "root", Entries: []Entry{{Key: "token_reload", Value: []byte(`{"tokens":3}`)}}}},
		{"config", Op{Op: 7, Kind: KindConfig, FirstPosition: 10, Entries: []Entry{{Key: "replicas", Value: []byte(`{}`)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendOp(nil, &tt.op)
			if n := EncodedSize(&tt.op); n != len(b) {
				t.Fatalf("EncodedSize = %d, encoding has %d bytes", n, len(b))
			}
			got, err := DecodeOp(b)
			if err != nil {
				t.Fatalf("DecodeOp: %v", err)
			}
			assertOpEqual(t, got, &tt.op)
			if again := AppendOp(nil, &got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
			}
		})
	}
}

func TestAppendOpAppends(t *testing.T) {
	prefix := []byte("prefix")
	b := AppendOp(append([]byte(nil), prefix...), goldenOp())
	if !bytes.HasPrefix(b, prefix) || !bytes.Equal(b[len(prefix):], AppendOp(nil, goldenOp())) {
		t.Fatalf("AppendOp did not append after the existing bytes")
	}
}

func TestDecodeOpDoesNotAlias(t *testing.T) {
	b := AppendOp(nil, goldenOp())
	op, err := DecodeOp(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	assertOpEqual(t, op, goldenOp())

	// Appending to one value must not overwrite the next one, although
	// they share an allocation.
	_ = append(op.Entries[0].Value, "XXXX"...)
	if string(op.Entries[1].Value) != "null" {
		t.Fatalf("append to a value overwrote its neighbour: %q", op.Entries[1].Value)
	}
}

func TestDecodeOpSharing(t *testing.T) {
	b := AppendOp(nil, goldenOp())
	op, err := DecodeOpSharing(b)
	if err != nil {
		t.Fatal(err)
	}
	assertOpEqual(t, op, goldenOp())
	for i, e := range op.Entries {
		if len(e.Value) == 0 {
			continue
		}
		if at := bytes.Index(b, e.Value); at < 0 || &b[at] != &e.Value[0] || cap(e.Value) != len(e.Value) {
			t.Fatalf("entry %d: value %q is not a capped slice of the input", i, e.Value)
		}
	}
	// The strings are copies: the input may be dropped for them.
	clear(b)
	if op.Tenant != goldenOp().Tenant || op.Entries[0].Key != goldenOp().Entries[0].Key {
		t.Fatalf("tenant %q and key %q changed with the input", op.Tenant, op.Entries[0].Key)
	}
	// Appending to one value must not overwrite the bytes after it.
	b = AppendOp(nil, goldenOp())
	op, _ = DecodeOpSharing(b)
	_ = append(op.Entries[0].Value, "XXXX"...)
	if again, err := DecodeOpSharing(b); err != nil {
		t.Fatalf("append to a value overwrote the input: %v", err)
	} else {
		assertOpEqual(t, again, goldenOp())
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeOpSharing(b) }); n > 2 {
		t.Fatalf("DecodeOpSharing allocates %v times, want at most 2 (the strings and the entries)", n)
	}
}

func TestDecodeOpRejects(t *testing.T) {
	valid := AppendOp(nil, goldenOp())
	// Offsets into valid, from the layout documented at AppendOp: version
	// (1), op 300 (2), view (1), timestamp (8), kind (1), tenant length (1).
	const opAt, kindAt, tenantLenAt = 1, 12, 13
	entryCountAt := len(valid) - ChainSize - (1 + 6 + 1 + 14 + 1 + 6 + 1 + 4) - 1
	body := valid[:len(valid)-ChainSize]
	// chained appends a chain hash to a hand-made op body.
	chained := func(b []byte) []byte { return append(bytes.Clone(b), make([]byte, ChainSize)...) }
	system := func(k Kind, tenant string, entries []Entry) []byte {
		op := *goldenOp()
		op.Kind, op.Tenant, op.Entries = k, tenant, entries
		return AppendOp(nil, &op)
	}

	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "shorter than any op"},
		{"only a chain hash", make([]byte, ChainSize), "shorter than any op"},
		{"version 0", patch(valid, 0, 0), "unknown version 0"},
		{"version 1", patch(valid, 0, 1), "unknown version 1"},
		{"version 3", patch(valid, 0, 3), "unknown version 3"},
		{"trailing byte", append(bytes.Clone(valid), 0), "1 trailing bytes"},
		{"truncated by one", valid[:len(valid)-1], "exceeds record"},
		{"truncated in timestamp", chained(body[:6]), "truncated timestamp"},
		{"truncated varint", chained([]byte{opVersion, 0x80}), "truncated op"},
		{"varint over 64 bits", chained(append(append([]byte{opVersion}, bytes.Repeat([]byte{0xff}, 9)...), 0x02)), "overflows"},
		{"non-minimal op", append([]byte{opVersion, 0xac, 0x82, 0x00}, valid[3:]...), "non-minimal varint for op"},
		{"non-minimal zero", chained([]byte{opVersion, 0x80, 0x00}), "non-minimal varint for op"},
		{"unknown kind", patch(valid, kindAt, 4), "unknown kind 4"},
		{"marker with a tenant", system(KindMarker, "acme", nil), `marker op with tenant "acme"`},
		{"admin op with a tenant", system(KindAdmin, "acme", goldenOp().Entries), `admin op with tenant "acme"`},
		{"marker with entries", system(KindMarker, "", goldenOp().Entries), "marker op with 2 entries"},
		{"tenant length beyond record", patch(valid, tenantLenAt, 0x7f), "tenant length 127 exceeds record"},
		{"entry count beyond record", patch(valid, entryCountAt, 0x7f), "entry count 127 exceeds record"},
		{"entry count too low", patch(valid, entryCountAt, 1), "trailing bytes"},
		{"huge entry count", chained(append(bytes.Clone(valid[:entryCountAt]), 0xff, 0xff, 0xff, 0xff, 0x0f)), "exceeds record"},
		{"huge key length", chained(append(bytes.Clone(valid[:entryCountAt]), 1, 0xff, 0xff, 0xff, 0xff, 0x0f)), "key length 4294967295 exceeds record"},
	}
	if valid[opAt] != 0xac || valid[kindAt] != byte(KindData) || valid[tenantLenAt] != 4 || valid[entryCountAt] != 2 {
		t.Fatalf("golden layout changed; fix the offsets in this test: %x", valid)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeOp(tt.b)
			if err == nil {
				t.Fatalf("DecodeOp(%x) succeeded", tt.b)
			}
			if !errors.Is(err, ErrMalformedOp) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("DecodeOp(%x) = %v, want ErrMalformedOp mentioning %q", tt.b, err, tt.want)
			}
		})
	}
}

func patch(b []byte, at int, v byte) []byte {
	b = bytes.Clone(b)
	b[at] = v
	return b
}

func TestLastPosition(t *testing.T) {
	tests := []struct {
		first   uint64
		entries int
		want    uint64
	}{
		{1, 1, 1},
		{1, 3, 3},
		{10, 5, 14},
		{10, 0, 9}, // the next op still starts at 10
	}
	for _, tt := range tests {
		op := Op{FirstPosition: tt.first, Entries: make([]Entry, tt.entries)}
		if got := op.LastPosition(); got != tt.want {
			t.Errorf("LastPosition(first %d, %d entries) = %d, want %d", tt.first, tt.entries, got, tt.want)
		}
	}
}

func TestEncodeAllocs(t *testing.T) {
	op := goldenOp()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = AppendOp(buf[:0], op) }); n != 0 {
		t.Fatalf("AppendOp into a large enough buffer allocates %v times", n)
	}
	b := AppendOp(nil, op)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeOp(b) }); n > 3 {
		t.Fatalf("DecodeOp allocates %v times, want at most 3", n)
	}
}

// FuzzDecodeOp checks that DecodeOp never panics and that whatever it
// accepts re-encodes to the same bytes: an op has exactly one encoding.
func FuzzDecodeOp(f *testing.F) {
	for _, op := range fuzzSeedOps() {
		f.Add(AppendOp(nil, op))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		op, err := DecodeOp(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedOp) {
				t.Fatalf("error does not wrap ErrMalformedOp: %v", err)
			}
			return
		}
		if enc := AppendOp(nil, &op); !bytes.Equal(enc, b) {
			t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", b, enc)
		}
		if n := EncodedSize(&op); n != len(b) {
			t.Fatalf("EncodedSize = %d, input has %d bytes", n, len(b))
		}
		shared, err := DecodeOpSharing(b)
		if err != nil {
			t.Fatalf("DecodeOpSharing refuses what DecodeOp accepts: %v", err)
		}
		if enc := AppendOp(nil, &shared); !bytes.Equal(enc, b) {
			t.Fatalf("DecodeOpSharing decodes otherwise than DecodeOp:\n in %x\nout %x", b, enc)
		}
	})
}

func fuzzSeedOps() []*Op {
	ops := []*Op{goldenOp(), {}, {Op: 1, FirstPosition: 1, Entries: []Entry{{}}}}
	return append(ops, genOps(1, 1, 3, 1)...)
}

// le32 is a little-endian u32, for building frames by hand.
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
