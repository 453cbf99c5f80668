package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
	kmblog "github.com/kmb-db/kmb/store/log"
)

func TestMessageGolden(t *testing.T) {
	b := AppendMessage(nil, goldenMessage())
	fuzzseed.Golden(t, *update, "message_v2.golden", b)
	m, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	assertMessageEqual(t, &m, goldenMessage())
}

// The header fields sit at fixed offsets when every varint is one byte;
// pin them here too, so that a reader of the golden test sees the layout.
func TestMessageLayout(t *testing.T) {
	m := &Message{Type: TypeCommit, From: 1, To: 2, Epoch: 9, View: 3, LogView: 4, Op: 5, Commit: 6, Nonce: 7, Flags: FlagFresh, TraceParent: "tp"}
	want := []byte{Version, byte(TypeCommit), 1, 2, 9, 3, 4, 5, 6, 7, FlagFresh, 2, 't', 'p', 0, 0}
	if got := AppendMessage(nil, m); !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got %x\nwant %x", got, want)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"zero fields", Message{Type: TypeCommit}},
		{"max varints", Message{
			Type: TypeRecoveryResponse, From: math.MaxUint64, To: math.MaxUint64, View: math.MaxUint64,
			LogView: math.MaxUint64, Op: math.MaxUint64, Commit: math.MaxUint64, Nonce: math.MaxUint64,
			Flags: FlagNormal | FlagFresh,
		}},
		{"longest trace parent", Message{Type: TypePrepare, TraceParent: strings.Repeat("t", MaxTraceParentLen)}},
		{"empty op", Message{Type: TypeOps, Ops: []*kmblog.Op{{}}}},
		{"large op", Message{Type: TypePrepare, Ops: []*kmblog.Op{{Op: 1, FirstPosition: 1, Entries: []kmblog.Entry{
			{Key: "blob", Value: bytes.Repeat([]byte("x"), 1<<16)},
		}}}}},
		{"golden", *goldenMessage()},
	}
	for _, m := range messagesOfEveryType() {
		tests = append(tests, struct {
			name string
			m    Message
		}{m.Type.String(), m})
	}
	seen := map[Type]bool{}
	for _, tt := range tests {
		seen[tt.m.Type] = true
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.m.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			b := AppendMessage(nil, &tt.m)
			if n := EncodedSize(&tt.m); n != len(b) {
				t.Fatalf("EncodedSize = %d, encoding has %d bytes", n, len(b))
			}
			got, err := DecodeMessage(b)
			if err != nil {
				t.Fatalf("DecodeMessage: %v", err)
			}
			assertMessageEqual(t, &got, &tt.m)
			if again := AppendMessage(nil, &got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
			}
		})
	}
	for typ := Type(1); typ <= MaxType; typ++ {
		if !seen[typ] {
			t.Errorf("no round-trip case for %v", typ)
		}
	}
}

// Decoding copies: the caller may reuse its buffer.
func TestDecodeMessageDoesNotAlias(t *testing.T) {
	b := AppendMessage(nil, goldenMessage())
	m, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xff
	}
	assertMessageEqual(t, &m, goldenMessage())
}

// Each op's encoding as it arrived (Raw) is a copy of its own, which its
// decoded values are slices of: one copy of the bytes, and a value kept
// keeps only its own op's encoding alive.
func TestDecodeMessageRaw(t *testing.T) {
	want := &Message{Type: TypePrepare, Ops: []*kmblog.Op{
		{Op: 1, FirstPosition: 1, Tenant: "t", Entries: []kmblog.Entry{{Key: "a", Value: []byte(`"x"`)}}},
		{Op: 2, FirstPosition: 2, Tenant: "t", Entries: []kmblog.Entry{{Key: "b", Value: []byte(`"y"`)}}},
	}}
	b := AppendMessage(nil, want)
	m, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Raw) != len(want.Ops) {
		t.Fatalf("%d encodings for %d ops", len(m.Raw), len(want.Ops))
	}
	for i, op := range m.Ops {
		raw := m.Raw[i]
		if !bytes.Equal(raw, kmblog.AppendOp(nil, want.Ops[i])) || cap(raw) != len(raw) {
			t.Fatalf("op %d: Raw %x (cap %d) is not its encoding, capped", i, raw, cap(raw))
		}
		v := op.Entries[0].Value
		at := bytes.Index(raw, v)
		if at < 0 || &raw[at] != &v[0] {
			t.Fatalf("op %d: value %q is not a slice of its Raw", i, v)
		}
	}
	clear(b)
	assertMessageEqual(t, &m, want)
}

// uv is a uvarint, for building messages by hand.
func uv(x uint64) []byte { return binary.AppendUvarint(nil, x) }

// cat joins byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// header is a valid message header up to and including the flags byte.
var header = []byte{Version, byte(TypePrepare), 1, 2, 0, 3, 0, 5, 4, 0, 0}

func TestDecodeMessageRejects(t *testing.T) {
	op := kmblog.AppendOp(nil, testOp(1, 1))
	valid := cat(header, uv(0), uv(1), uv(uint64(len(op))), op, uv(0))
	// big is an op long enough that a message of it and an empty op
	// passes the check of the op count against the message's length.
	bigOp := testOp(1, 1)
	bigOp.Entries = append(bigOp.Entries, kmblog.Entry{Key: "pad", Value: bytes.Repeat([]byte("1"), 100)})
	big := kmblog.AppendOp(nil, bigOp)
	if _, err := DecodeMessage(valid); err != nil {
		t.Fatalf("the base case is invalid: %v", err)
	}
	tests := []struct {
		name    string
		in      []byte
		wantOp  bool   // the error also wraps kmblog.ErrMalformedOp
		wantMsg string // a substring of the error
	}{
		{name: "empty", in: nil, wantMsg: "truncated version"},
		{name: "version 0", in: cat([]byte{0}, header[1:], uv(0), uv(0)), wantMsg: "unknown version 0"},
		{name: "version 1", in: cat([]byte{1}, header[1:], uv(0), uv(0)), wantMsg: "unknown version 1"},
		{name: "version 3", in: cat([]byte{3}, header[1:], uv(0), uv(0)), wantMsg: "unknown version 3"},
		{name: "type 0", in: cat(header[:1], []byte{0}, header[2:], uv(0), uv(0)), wantMsg: "unknown type 0"},
		{name: "type above max", in: cat(header[:1], []byte{byte(MaxType) + 1}, header[2:], uv(0), uv(0)), wantMsg: "unknown type 14"},
		{name: "non-minimal varint", in: cat(header[:2], []byte{0x81, 0x00}, header[3:], uv(0), uv(0)), wantMsg: "non-minimal varint for from"},
		{name: "varint overflow", in: cat(header[:2], bytes.Repeat([]byte{0xff}, 9), []byte{0x02}, header[3:], uv(0), uv(0)), wantMsg: "from overflows"},
		{name: "unknown flag", in: cat(header[:10], []byte{0x04}, uv(0), uv(0)), wantMsg: "unknown flags"},
		{name: "trace parent above limit", in: cat(header, uv(MaxTraceParentLen+1), bytes.Repeat([]byte("t"), MaxTraceParentLen+1), uv(0)), wantMsg: "exceeds limit 256"},
		{name: "trace parent beyond input", in: cat(header, uv(10), []byte("short")), wantMsg: "trace parent length 10 exceeds message"},
		{name: "op count above limit", in: cat(header, uv(0), uv(MaxOps+1)), wantMsg: "op count 65537 exceeds 65536"},
		{name: "op count beyond input", in: cat(header, uv(0), uv(3), uv(uint64(len(op))), op), wantMsg: "op count 3 exceeds message"},
		{name: "huge op count", in: cat(header, uv(0), uv(math.MaxUint64)), wantMsg: "op count"},
		{name: "op length beyond input", in: cat(header, uv(0), uv(1), uv(uint64(len(op))+1), op), wantMsg: "exceeds message"},
		{name: "second op truncated", in: cat(header, uv(0), uv(2), uv(uint64(len(op))), op, uv(uint64(len(op))), op[:len(op)-1]), wantMsg: "exceeds message"},
		{name: "ends after flags", in: header[:], wantMsg: "truncated trace parent length"},
		{name: "ends before op count", in: cat(header, uv(0)), wantMsg: "truncated op count"},
		{name: "empty op", in: cat(header, uv(0), uv(2), uv(0), uv(uint64(len(big))), big, uv(0)), wantOp: true, wantMsg: "op 0"},
		{name: "op shorter than a chain hash", in: cat(header, uv(0), uv(1), uv(3), []byte{2, 1, 1}, make([]byte, len(op)-3)), wantMsg: "trailing bytes"},
		{name: "op without its chain hash", in: cat(header, uv(0), uv(2), uv(uint64(len(op)-kmblog.ChainSize)), op[:len(op)-kmblog.ChainSize], uv(uint64(len(op))), op, uv(0)), wantOp: true, wantMsg: "op 0"},
		{name: "op with unknown version", in: cat(header, uv(0), uv(1), uv(uint64(len(op))), []byte{9}, op[1:], uv(0)), wantOp: true, wantMsg: "op 0"},
		{name: "op with trailing byte", in: cat(header, uv(0), uv(1), uv(uint64(len(op))+1), op, []byte{0}, uv(0)), wantOp: true, wantMsg: "op 0"},
		{name: "ends before data length", in: cat(header, uv(0), uv(0)), wantMsg: "truncated data length"},
		{name: "data above limit", in: cat(header, uv(0), uv(0), uv(MaxDataLen+1)), wantMsg: "exceeds limit"},
		{name: "data beyond input", in: cat(header, uv(0), uv(0), uv(10), []byte("short")), wantMsg: "data length 10 exceeds message"},
		{name: "trailing byte", in: cat(valid, []byte{0}), wantMsg: "1 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMessage(tt.in)
			if err == nil {
				t.Fatalf("decoded %s", describe(&m))
			}
			if !errors.Is(err, ErrMalformedMessage) {
				t.Errorf("error does not wrap ErrMalformedMessage: %v", err)
			}
			if got := errors.Is(err, kmblog.ErrMalformedOp); got != tt.wantOp {
				t.Errorf("errors.Is(err, ErrMalformedOp) = %v, want %v: %v", got, tt.wantOp, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

// Every proper prefix of a valid message is an error, never a panic.
func TestDecodeMessageRejectsEveryPrefix(t *testing.T) {
	b := AppendMessage(nil, goldenMessage())
	for n := range len(b) {
		if _, err := DecodeMessage(b[:n]); !errors.Is(err, ErrMalformedMessage) {
			t.Fatalf("prefix of %d bytes: err = %v", n, err)
		}
	}
}

// Counts and lengths are checked against the input before anything is
// allocated for them: a few bytes claiming thousands of ops cost nothing.
func TestDecodeMessageAllocationBoundedByInput(t *testing.T) {
	lies := [][]byte{
		cat(header, uv(0), uv(MaxOps)),
		cat(header, uv(0), uv(MaxOps), bytes.Repeat([]byte{0}, 1000)),
		cat(header, uv(200), make([]byte, 10)),
		cat(header, uv(0), uv(1), uv(MaxFrameSize)),
	}
	for _, b := range lies {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 100 {
			if _, err := DecodeMessage(b); err == nil {
				t.Fatalf("decoded %x", b)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 1024 {
			t.Errorf("rejecting %d bytes allocated %d bytes per call", len(b), per)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		m       Message
		wantMsg string
	}{
		{"type 0", Message{}, "unknown type 0"},
		{"type above max", Message{Type: MaxType + 1}, "unknown type 14"},
		{"unknown flag", Message{Type: TypeRecoveryResponse, Flags: 0x80}, "unknown flags 0x80"},
		{"trace parent too long", Message{Type: TypePrepare, TraceParent: strings.Repeat("t", MaxTraceParentLen+1)}, "trace parent of 257 bytes"},
		{"too many ops", Message{Type: TypeOps, Ops: make([]*kmblog.Op, MaxOps+1)}, "65537 ops"},
		{"nil op", Message{Type: TypeOps, Ops: []*kmblog.Op{testOp(1, 0), nil}}, "op 1 is nil"},
		{"data too long", Message{Type: TypeCheckpointChunk, Data: make([]byte, MaxDataLen+1)}, "data bytes exceed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Validate()
			if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Validate = %v, want ErrInvalidMessage mentioning %q", err, tt.wantMsg)
			}
			// Whatever Validate refuses, AppendFrame refuses too.
			dst := []byte("keep")
			got, err := AppendFrame(dst, &tt.m)
			if err == nil || !bytes.Equal(got, dst) {
				t.Fatalf("AppendFrame = %x, %v; want the input unchanged and an error", got, err)
			}
		})
	}
}

func TestAppendMessageDoesNotAllocate(t *testing.T) {
	m := benchPrepare()
	buf := make([]byte, 0, EncodedSize(m)+FrameHeaderSize)
	if n := testing.AllocsPerRun(100, func() { buf = AppendMessage(buf[:0], m) }); n != 0 {
		t.Errorf("AppendMessage: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendFrame(buf[:0], m) }); n != 0 {
		t.Errorf("AppendFrame: %v allocations", n)
	}
}
