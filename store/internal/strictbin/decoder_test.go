package strictbin

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"
)

var errTest = errors.New("test: malformed thing")

var testErrors = &Errors{Malformed: errTest, Input: "thing"}

func newTest(b []byte) Decoder { return NewDecoder(b, testErrors) }

// cat concatenates byte slices.
func cat(bs ...[]byte) []byte { return slices.Concat(bs...) }

// uv is the minimal encoding of x.
func uv(x uint64) []byte { return binary.AppendUvarint(nil, x) }

// maxUvarint is the encoding of math.MaxUint64, the longest valid varint.
var maxUvarint = cat(bytes.Repeat([]byte{0xff}, 9), []byte{0x01})

// readCase is one read from a fresh Decoder over in: either it succeeds,
// returning want and consuming off bytes, or it fails with exactly wantErr
// (after the sentinel) and returns the zero value.
type readCase struct {
	name    string
	in      []byte
	want    any
	off     int
	wantErr string
}

func runReads(t *testing.T, read func(*Decoder) any, zero any, tests []readCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTest(tt.in)
			got := read(&d)
			err := d.Err()
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got %v, nil error; want error %q", got, tt.wantErr)
				}
				if !errors.Is(err, errTest) {
					t.Errorf("error %v does not wrap the sentinel", err)
				}
				if want := errTest.Error() + ": " + tt.wantErr; err.Error() != want {
					t.Errorf("error %q, want %q", err, want)
				}
				if !equal(got, zero) {
					t.Errorf("failed read returned %v, want %v", got, zero)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if d.Offset() != tt.off || d.Remaining() != len(tt.in)-tt.off {
				t.Errorf("offset %d remaining %d, want %d and %d", d.Offset(), d.Remaining(), tt.off, len(tt.in)-tt.off)
			}
		})
	}
}

func equal(a, b any) bool {
	if ab, ok := a.([]byte); ok {
		bb, ok := b.([]byte)
		return ok && bytes.Equal(ab, bb) && (ab == nil) == (bb == nil)
	}
	return a == b
}

func TestByte(t *testing.T) {
	runReads(t, func(d *Decoder) any { return d.Byte("kind") }, byte(0), []readCase{
		{name: "one", in: []byte{7}, want: byte(7), off: 1},
		{name: "first of two", in: []byte{0xff, 1}, want: byte(0xff), off: 1},
		{name: "empty", in: nil, wantErr: "truncated kind"},
	})
}

func TestUvarint(t *testing.T) {
	runReads(t, func(d *Decoder) any { return d.Uvarint("count") }, uint64(0), []readCase{
		{name: "zero", in: []byte{0}, want: uint64(0), off: 1},
		{name: "one byte max", in: []byte{0x7f}, want: uint64(127), off: 1},
		{name: "two bytes min", in: []byte{0x80, 0x01}, want: uint64(128), off: 2},
		{name: "300", in: []byte{0xac, 0x02}, want: uint64(300), off: 2},
		{name: "followed by more", in: []byte{0xac, 0x02, 0x80}, want: uint64(300), off: 2},
		{name: "max uint64", in: maxUvarint, want: uint64(math.MaxUint64), off: 10},
		{name: "empty", in: nil, wantErr: "truncated count"},
		{name: "truncated continuation", in: []byte{0x80}, wantErr: "truncated count"},
		{name: "truncated long", in: []byte{0xff, 0xff, 0xff}, wantErr: "truncated count"},
		{name: "overflow in tenth byte", in: cat(bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), wantErr: "count overflows 64 bits"},
		{name: "eleven bytes", in: cat(bytes.Repeat([]byte{0xff}, 10), []byte{0x01}), wantErr: "count overflows 64 bits"},
		{name: "padded zero", in: []byte{0x80, 0x00}, wantErr: "non-minimal varint for count"},
		{name: "padded zero, three bytes", in: []byte{0x80, 0x80, 0x00}, wantErr: "non-minimal varint for count"},
		{name: "padded 127", in: []byte{0xff, 0x00}, wantErr: "non-minimal varint for count"},
		{name: "padded 300", in: []byte{0xac, 0x82, 0x00}, wantErr: "non-minimal varint for count"},
		{name: "padded 1<<56", in: []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x00}, wantErr: "non-minimal varint for count"},
	})
}

func TestFixed64(t *testing.T) {
	le := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	runReads(t, func(d *Decoder) any { return d.Fixed64("timestamp") }, uint64(0), []readCase{
		{name: "little endian", in: le, want: uint64(0x0807060504030201), off: 8},
		{name: "followed by more", in: cat(le, []byte{9}), want: uint64(0x0807060504030201), off: 8},
		{name: "all ones", in: bytes.Repeat([]byte{0xff}, 8), want: uint64(math.MaxUint64), off: 8},
		{name: "empty", in: nil, wantErr: "truncated timestamp"},
		{name: "seven bytes", in: le[:7], wantErr: "truncated timestamp"},
	})
}

func TestBytes(t *testing.T) {
	runReads(t, func(d *Decoder) any { return d.Bytes("key length") }, []byte(nil), []readCase{
		{name: "empty value", in: []byte{0}, want: []byte{}, off: 1},
		{name: "three bytes", in: cat(uv(3), []byte("abc")), want: []byte("abc"), off: 4},
		{name: "followed by more", in: cat(uv(1), []byte("ab")), want: []byte("a"), off: 2},
		{name: "two-byte length", in: cat(uv(200), bytes.Repeat([]byte{'x'}, 200)), want: bytes.Repeat([]byte{'x'}, 200), off: 202},
		{name: "beyond input by one", in: cat(uv(3), []byte("ab")), wantErr: "key length 3 exceeds thing"},
		{name: "beyond empty input", in: uv(127), wantErr: "key length 127 exceeds thing"},
		{name: "huge length", in: maxUvarint, wantErr: "key length 18446744073709551615 exceeds thing"},
		{name: "length above MaxInt64", in: uv(1 << 63), wantErr: "key length 9223372036854775808 exceeds thing"},
		{name: "no length", in: nil, wantErr: "truncated key length"},
		{name: "truncated length", in: []byte{0x83}, wantErr: "truncated key length"},
		{name: "non-minimal length", in: []byte{0x81, 0x00, 'a'}, wantErr: "non-minimal varint for key length"},
		{name: "overflowing length", in: cat(bytes.Repeat([]byte{0xff}, 9), []byte{0x7f}), wantErr: "key length overflows 64 bits"},
	})
}

func TestLimitedBytes(t *testing.T) {
	limited := func(limit int) func(*Decoder) any {
		return func(d *Decoder) any { return d.LimitedBytes("op length", limit) }
	}
	runReads(t, limited(4), []byte(nil), []readCase{
		{name: "below limit", in: cat(uv(3), []byte("abc")), want: []byte("abc"), off: 4},
		{name: "at limit", in: cat(uv(4), []byte("abcd")), want: []byte("abcd"), off: 5},
		{name: "empty", in: []byte{0}, want: []byte{}, off: 1},
		{name: "above limit", in: cat(uv(5), []byte("abcde")), wantErr: "op length 5 exceeds limit 4"},
		{name: "above limit and beyond input", in: uv(1000), wantErr: "op length 1000 exceeds limit 4"},
		{name: "huge length", in: maxUvarint, wantErr: "op length 18446744073709551615 exceeds limit 4"},
		{name: "within limit, beyond input", in: cat(uv(4), []byte("abc")), wantErr: "op length 4 exceeds thing"},
		{name: "no length", in: nil, wantErr: "truncated op length"},
		{name: "non-minimal length", in: []byte{0x80, 0x00}, wantErr: "non-minimal varint for op length"},
		{name: "overflowing length", in: cat(bytes.Repeat([]byte{0x80}, 9), []byte{0x02}), wantErr: "op length overflows 64 bits"},
	})
	runReads(t, limited(0), []byte(nil), []readCase{
		{name: "zero limit, empty", in: []byte{0}, want: []byte{}, off: 1},
		{name: "zero limit, one byte", in: cat(uv(1), []byte("a")), wantErr: "op length 1 exceeds limit 0"},
	})
	runReads(t, limited(math.MaxInt), []byte(nil), []readCase{
		{name: "MaxInt limit, above it", in: uv(1 << 63), wantErr: "op length 9223372036854775808 exceeds limit 9223372036854775807"},
		{name: "MaxInt limit, beyond input", in: uv(1 << 62), wantErr: "op length 4611686018427387904 exceeds thing"},
	})
}

// The result of Bytes aliases the input rather than copying it.
func TestBytesAliasesInput(t *testing.T) {
	in := cat(uv(3), []byte("abc"))
	d := newTest(in)
	got := d.Bytes("value length")
	if &got[0] != &in[1] {
		t.Fatal("Bytes copied its result")
	}
}

// A run of fields reads in order, and the first error sticks: later reads
// return zero values, leave the offset alone and keep the first error.
func TestSequenceAndStickyError(t *testing.T) {
	in := cat([]byte{1}, uv(300), []byte{8, 0, 0, 0, 0, 0, 0, 0}, uv(2), []byte("hi"), uv(1), []byte("x"))
	d := newTest(in)
	if b, v, f, s, l := d.Byte("version"), d.Uvarint("op"), d.Fixed64("timestamp"), d.Bytes("tenant length"), d.LimitedBytes("key length", 1); b != 1 || v != 300 || f != 8 || string(s) != "hi" || string(l) != "x" {
		t.Fatalf("read %d %d %d %q %q", b, v, f, s, l)
	}
	if err := d.Err(); err != nil || d.Remaining() != 0 || d.Offset() != len(in) {
		t.Fatalf("after reading everything: err %v, offset %d, remaining %d", err, d.Offset(), d.Remaining())
	}

	d = newTest(cat([]byte{0x80, 0x00}, uv(7), []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	d.Uvarint("first")
	first := d.Err()
	if first == nil {
		t.Fatal("padded varint accepted")
	}
	d.Fail("custom %d", 1)
	if d.Byte("b") != 0 || d.Uvarint("u") != 0 || d.Fixed64("f") != 0 || d.Bytes("s") != nil || d.LimitedBytes("l", 10) != nil {
		t.Error("a read after an error returned a value")
	}
	if d.Err() != first || d.Offset() != 0 {
		t.Errorf("after further reads: err %v (want %v), offset %d (want 0)", d.Err(), first, d.Offset())
	}
}

// Rewind reads the same fields again, as DecodeOp and DecodeMessage do
// once they have validated their input.
func TestRewind(t *testing.T) {
	in := cat([]byte{9}, uv(2), []byte("ab"), uv(300))
	d := newTest(in)
	d.Byte("b")
	at := d.Offset()
	first, n := d.Bytes("s"), d.Uvarint("u")
	d.Rewind(at)
	if again := d.Bytes("s"); &again[0] != &first[0] || len(again) != len(first) {
		t.Errorf("after Rewind read %q at %p, first %q at %p", again, again, first, first)
	}
	if again := d.Uvarint("u"); again != n || n != 300 {
		t.Errorf("after Rewind read %d, first %d", again, n)
	}
	if d.Err() != nil || d.Remaining() != 0 {
		t.Errorf("err %v, %d bytes left", d.Err(), d.Remaining())
	}

	// An error sticks across a Rewind.
	d.Byte("past the end")
	err := d.Err()
	d.Rewind(at)
	if d.Err() != err || err == nil || d.Bytes("s") != nil {
		t.Errorf("Rewind cleared the error %v", err)
	}
}

func TestFail(t *testing.T) {
	d := newTest([]byte{1, 2})
	d.Byte("b")
	d.Fail("op count %d exceeds %d", 9, 8)
	d.Fail("second")
	err := d.Err()
	if !errors.Is(err, errTest) || err.Error() != "test: malformed thing: op count 9 exceeds 8" {
		t.Fatalf("error %v", err)
	}
	if d.Byte("b") != 0 || d.Offset() != 1 {
		t.Error("Fail did not stop the decoder")
	}
}

func TestUvarintLen(t *testing.T) {
	xs := []uint64{0, 1, math.MaxUint64}
	for s := 1; s < 64; s++ {
		xs = append(xs, 1<<s-1, 1<<s, 1<<s+1)
	}
	for _, x := range xs {
		if got, want := UvarintLen(x), len(uv(x)); got != want {
			t.Errorf("UvarintLen(%d) = %d, want %d", x, got, want)
		}
		d := newTest(uv(x))
		if got := d.Uvarint("x"); got != x || d.Err() != nil || d.Remaining() != 0 {
			t.Errorf("Uvarint(AppendUvarint(%d)) = %d, %v, %d bytes left", x, got, d.Err(), d.Remaining())
		}
	}
}

// Over every input of up to two bytes, Uvarint accepts exactly the
// minimal encodings: whatever it accepts re-encodes to the bytes it read.
func TestUvarintAcceptsOnlyMinimalEncodings(t *testing.T) {
	check := func(in []byte) {
		d := newTest(in)
		x := d.Uvarint("x")
		_, n := binary.Uvarint(in)
		if d.Err() != nil {
			if n > 0 && bytes.Equal(uv(x), in[:n]) {
				t.Errorf("%x: rejected a minimal encoding: %v", in, d.Err())
			}
			return
		}
		if !bytes.Equal(uv(x), in[:d.Offset()]) {
			t.Errorf("%x: accepted %d from a non-minimal encoding", in, x)
		}
	}
	check(nil)
	for i := range 1 << 8 {
		check([]byte{byte(i)})
	}
	for i := range 1 << 16 {
		check([]byte{byte(i), byte(i >> 8)})
	}
}

// Successful reads allocate nothing, so neither do the decoders built on
// them.
func TestReadsDoNotAllocate(t *testing.T) {
	in := cat([]byte{1}, maxUvarint, []byte{1, 2, 3, 4, 5, 6, 7, 8}, uv(3), []byte("abc"), uv(2), []byte("de"))
	var sink uint64
	n := testing.AllocsPerRun(100, func() {
		d := newTest(in)
		sink += uint64(d.Byte("b")) + d.Uvarint("u") + d.Fixed64("f")
		sink += uint64(len(d.Bytes("s")) + len(d.LimitedBytes("l", 2)) + d.Remaining() + d.Offset())
		d.Rewind(0)
		sink += uint64(d.Byte("b"))
		if d.Err() != nil {
			panic(d.Err())
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
	_ = sink
}
