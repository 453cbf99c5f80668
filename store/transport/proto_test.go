package transport

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
	"github.com/kmb-db/kmb/store/wire"
)

// goldenHello's frame is pinned in testdata/handshake_v2.golden. Changing
// the handshake means a new protocol version, not a new golden file.
var goldenHello = hello{from: 2, to: 300, apiAddr: "10.0.0.2:7000"}

// goldenSecretHello is a shared-secret hello, with its nonce.
var goldenSecretHello = hello{auth: authSecret, from: 1, to: 2, apiAddr: "a:1", nonce: [nonceSize]byte{0: 0xaa, 31: 0xbb}}

func TestHandshakeGolden(t *testing.T) {
	got := controlFrame(nil, func(b []byte) []byte { return appendHello(b, goldenHello) })
	got = append(got, controlFrame(nil, func(b []byte) []byte { return appendTimestamp(b, kindPing, 0x0102030405060708) })...)
	got = append(got, controlFrame(nil, func(b []byte) []byte { return appendTimestamp(b, kindPong, 0x0102030405060708) })...)
	got = append(got, controlFrame(nil, func(b []byte) []byte { return appendHello(b, goldenSecretHello) })...)
	got = append(got, controlFrame(nil, func(b []byte) []byte { return appendProof(b, bytes.Repeat([]byte{0x5a}, proofSize)) })...)
	fuzzseed.Golden(t, *update, "handshake_v2.golden", got)

	// The layout, field by field, of the hello payload.
	want := []byte{kindHello, 'K', 'M', 'B', 'R', 2, authNone, 2, 0xac, 0x02, 13}
	want = append(want, "10.0.0.2:7000"...)
	if p := appendHello(nil, goldenHello); !bytes.Equal(p, want) {
		t.Fatalf("hello payload\n got %x\nwant %x", p, want)
	}
	want = append([]byte{kindHello, 'K', 'M', 'B', 'R', 2, authSecret, 1, 2, 3, 'a', ':', '1'}, goldenSecretHello.nonce[:]...)
	if p := appendHello(nil, goldenSecretHello); !bytes.Equal(p, want) {
		t.Fatalf("secret hello payload\n got %x\nwant %x", p, want)
	}
}

// The frame MAC of a shared-secret session, pinned: HMAC-SHA256 of the
// frame counter (u64 LE) and the payload, under the direction's key,
// truncated to 16 bytes.
func TestSessionMAC(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, MinSecretSize)
	transcript := []byte("hellos")
	d, a := newSession(secret, transcript, true), newSession(secret, transcript, false)
	for i, payload := range [][]byte{{kindPing, 1, 2, 3, 4, 5, 6, 7, 8}, {kindMessage, 9}, {kindMessage, 9}} {
		sealed := d.seal(append([]byte(nil), payload...), 0)
		if len(sealed) != len(payload)+tagSize {
			t.Fatalf("sealed %d bytes", len(sealed))
		}
		key := keyed(secret, labelDiallerKey, transcript)
		m := hmac.New(sha256.New, key)
		m.Write(binary.LittleEndian.AppendUint64(nil, uint64(i)))
		m.Write(payload)
		if want := m.Sum(nil)[:tagSize]; !bytes.Equal(sealed[len(payload):], want) {
			t.Fatalf("frame %d: tag %x, want %x", i, sealed[len(payload):], want)
		}
		got, err := a.open(sealed)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("frame %d: open = %x, %v", i, got, err)
		}
	}
	// A replayed frame fails: the counter moved on.
	replay := newSession(secret, transcript, true).seal([]byte{kindMessage, 9}, 0)
	if _, err := a.open(replay); !errors.Is(err, wire.ErrCorruptFrame) {
		t.Fatalf("replayed frame: %v", err)
	}
	// A frame sealed in the other direction fails: reflection.
	b := newSession(secret, transcript, false)
	if _, err := newSession(secret, transcript, false).open(b.seal([]byte{kindPing, 1}, 0)); err == nil {
		t.Fatal("a reflected frame verified")
	}
	// A frame of another session fails.
	other := newSession(secret, []byte("other hellos"), true)
	if _, err := newSession(secret, transcript, false).open(other.seal([]byte{kindPing, 1}, 0)); err == nil {
		t.Fatal("a frame of another session verified")
	}
}

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range []hello{
		goldenHello,
		goldenSecretHello,
		{},
		{auth: authTLS, from: 1, to: 2},
		{auth: authSecret, from: math.MaxUint64, to: math.MaxUint64, apiAddr: strings.Repeat("a", maxAPIAddrLen), nonce: [nonceSize]byte{1, 2, 3}},
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
		{"other version", append(append([]byte{}, valid[:5]...), append([]byte{1}, valid[6:]...)...), "protocol version 1"},
		{"missing auth mode", valid[:6], "auth mode"},
		{"unknown auth mode", append(append([]byte{}, valid[:6]...), append([]byte{3}, valid[7:]...)...), "auth mode"},
		{"truncated id", valid[:7], "bad hello node id"},
		{"non-minimal id", append(append([]byte{}, valid[:7]...), 0x82, 0x00, 0x01, 0x00), "bad hello node id"},
		{"truncated target", valid[:8], "bad hello target id"},
		{"missing address length", valid[:10], "API address length"},
		{"secret hello without its nonce", appendHello(nil, hello{auth: authSecret})[:10], "API address length"},
		{"nonce on a hello without a secret", append(append([]byte{}, valid...), make([]byte, nonceSize)...), "API address length"},
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
		appendHello(nil, goldenSecretHello),
		appendHello(nil, hello{auth: authTLS, from: 3, to: 1, apiAddr: "h:1"}),
		{kindHello, 'K', 'M', 'B', 'R', 1, 3, 1, 0},
	}
}

func proofSeeds() [][]byte {
	return [][]byte{appendProof(nil, make([]byte, proofSize)), {kindProof}, appendProof(nil, make([]byte, proofSize+1))}
}

// FuzzDecodeProof: the proof decoder never panics and accepts exactly a
// kind byte and one MAC.
func FuzzDecodeProof(f *testing.F) {
	for _, s := range proofSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mac, err := decodeProof(b)
		if err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("error does not wrap errProtocol: %v", err)
			}
			return
		}
		if enc := appendProof(nil, mac); !bytes.Equal(enc, b) {
			t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", b, enc)
		}
	})
}

func timestampSeeds() [][]byte {
	return [][]byte{appendTimestamp(nil, kindPing, 1), appendTimestamp(nil, kindPong, math.MaxInt64), {kindPing}}
}

// TestFuzzSeedCorpora keeps testdata/fuzz in step with the seeds above:
// -update rewrites it.
func TestFuzzSeedCorpora(t *testing.T) {
	fuzzseed.Check(t, *update, "FuzzDecodeHello", fuzzseed.Numbered(helloSeeds()))
	fuzzseed.Check(t, *update, "FuzzDecodeTimestamp", fuzzseed.Numbered(timestampSeeds()))
	fuzzseed.Check(t, *update, "FuzzDecodeProof", fuzzseed.Numbered(proofSeeds()))
}
