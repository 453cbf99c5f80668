package transport

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
)

// goldenHello's frame is pinned in testdata/hello_v1.golden. Changing the
// handshake means a new protocol version, not a new golden file.
var goldenHello = hello{from: 2, to: 300, apiAddr: "10.0.0.2:7000"}

func TestHandshakeGolden(t *testing.T) {
	got := controlFrame(nil, func(b []byte) []byte { return appendHello(b, goldenHello) })
	got = append(got, controlFrame(nil, func(b []byte) []byte { return appendTimestamp(b, kindPing, 0x0102030405060708) })...)
	got = append(got, controlFrame(nil, func(b []byte) []byte { return appendTimestamp(b, kindPong, 0x0102030405060708) })...)
	fuzzseed.Golden(t, *update, "handshake_v1.golden", got)

	// The layout, field by field, of the hello payload.
	want := []byte{kindHello, 'K', 'M', 'B', 'R', protocolVersion, 2, 0xac, 0x02, 13}
	want = append(want, "10.0.0.2:7000"...)
	if p := appendHello(nil, goldenHello); !bytes.Equal(p, want) {
		t.Fatalf("hello payload\n got %x\nwant %x", p, want)
	}
}

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range []hello{
		goldenHello,
		{},
		{from: math.MaxUint64, to: math.MaxUint64, apiAddr: strings.Repeat("a", maxAPIAddrLen)},
	} {
		p := appendHello(nil, h)
		if len(p) > maxHelloSize {
			t.Errorf("%+v: %d bytes exceed maxHelloSize", h, len(p))
		}
		got, err := decodeHello(p)
		if err != nil || got != h {
			t.Errorf("decodeHello(appendHello(%+v)) = %+v, %v", h, got, err)
		}
	}
}

func TestDecodeHelloRejects(t *testing.T) {
	valid := appendHello(nil, goldenHello)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "expected a hello"},
		{"other kind", append([]byte{kindPing}, valid[1:]...), "expected a hello"},
		{"bad magic", append([]byte{kindHello, 'K', 'M', 'B', 'X'}, valid[5:]...), "bad hello magic"},
		{"other version", append(append([]byte{}, valid[:5]...), append([]byte{2}, valid[6:]...)...), "protocol version 2"},
		{"truncated id", valid[:6], "bad hello node id"},
		{"non-minimal id", append(append([]byte{}, valid[:6]...), 0x82, 0x00, 0x01, 0x00), "bad hello node id"},
		{"truncated target", valid[:7], "bad hello target id"},
		{"missing address length", valid[:9], "API address length"},
		{"address beyond input", valid[:len(valid)-1], "API address length"},
		{"trailing byte", append(append([]byte{}, valid...), 0), "API address length"},
		{"address too long", appendHello(nil, hello{apiAddr: strings.Repeat("a", maxAPIAddrLen+1)}), "API address length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := decodeHello(tt.in)
			if !errors.Is(err, errProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decodeHello = %+v, %v; want errProtocol mentioning %q", h, err, tt.want)
			}
		})
	}
}

func TestDecodeTimestamp(t *testing.T) {
	ping := appendTimestamp(nil, kindPing, -5)
	if ts, err := decodeTimestamp(ping, kindPing); err != nil || ts != -5 {
		t.Fatalf("round trip: %d, %v", ts, err)
	}
	for _, in := range [][]byte{nil, ping[:8], append(ping, 0), appendTimestamp(nil, kindPong, 1)} {
		if _, err := decodeTimestamp(in, kindPing); !errors.Is(err, errProtocol) {
			t.Errorf("decodeTimestamp(%x) = %v, want errProtocol", in, err)
		}
	}
}

// FuzzDecodeHello: decodeHello never panics, fails only with errProtocol,
// and what it accepts re-encodes to exactly its input.
func FuzzDecodeHello(f *testing.F) {
	for _, s := range helloSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHello(b)
		if err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("error does not wrap errProtocol: %v", err)
			}
			return
		}
		if enc := appendHello(nil, h); !bytes.Equal(enc, b) {
			t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", b, enc)
		}
		if len(b) > maxHelloSize {
			t.Fatalf("accepted a %d-byte hello, above maxHelloSize", len(b))
		}
	})
}

// FuzzDecodeTimestamp: the ping and pong decoder never panics and accepts
// exactly the canonical encodings.
func FuzzDecodeTimestamp(f *testing.F) {
	for _, s := range timestampSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, kind := range []byte{kindPing, kindPong} {
			ts, err := decodeTimestamp(b, kind)
			if err != nil {
				if !errors.Is(err, errProtocol) {
					t.Fatalf("error does not wrap errProtocol: %v", err)
				}
				continue
			}
			if enc := appendTimestamp(nil, kind, ts); !bytes.Equal(enc, b) {
				t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", b, enc)
			}
		}
	})
}

func helloSeeds() [][]byte {
	return [][]byte{
		appendHello(nil, goldenHello),
		appendHello(nil, hello{}),
		appendHello(nil, hello{from: math.MaxUint64, to: 1, apiAddr: strings.Repeat("a", maxAPIAddrLen)}),
		{kindHello, 'K', 'M', 'B', 'R'},
	}
}

func timestampSeeds() [][]byte {
	return [][]byte{appendTimestamp(nil, kindPing, 1), appendTimestamp(nil, kindPong, math.MaxInt64), {kindPing}}
}

// TestFuzzSeedCorpora keeps testdata/fuzz in step with the seeds above:
// -update rewrites it.
func TestFuzzSeedCorpora(t *testing.T) {
	fuzzseed.Check(t, *update, "FuzzDecodeHello", fuzzseed.Numbered(helloSeeds()))
	fuzzseed.Check(t, *update, "FuzzDecodeTimestamp", fuzzseed.Numbered(timestampSeeds()))
}
