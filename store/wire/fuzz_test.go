package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
)

// FuzzDecodeMessage: DecodeMessage never panics, fails only with
// ErrMalformedMessage, and whatever it accepts re-encodes to exactly the
// input (the encoding is canonical) and decodes again to the same message.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range decodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("error does not wrap ErrMalformedMessage: %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded a message that Validate refuses: %v", err)
		}
		enc := AppendMessage(nil, &m)
		if !bytes.Equal(enc, b) {
			t.Fatalf("decode/encode is not the identity:\n in %x\nout %x", b, enc)
		}
		if n := EncodedSize(&m); n != len(b) {
			t.Fatalf("EncodedSize = %d, input has %d bytes", n, len(b))
		}
		again, err := DecodeMessage(enc)
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		assertMessageEqual(t, &again, &m)
	})
}

// FuzzFrameReader reads an arbitrary stream. Every frame it accepts
// re-encodes to exactly the bytes it consumed, and it stops with io.EOF
// only at the end of the stream, or with a truncation or corruption error.
func FuzzFrameReader(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		fr := NewFrameReader(bytes.NewReader(stream))
		off := 0
		for {
			m, err := fr.Read()
			if err != nil {
				switch {
				case err == io.EOF:
					if off != len(stream) {
						t.Fatalf("io.EOF at offset %d of %d", off, len(stream))
					}
				case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrCorruptFrame):
				default:
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			frame, err := AppendFrame(nil, &m)
			if err != nil {
				t.Fatalf("re-framing an accepted message: %v", err)
			}
			if !bytes.HasPrefix(stream[off:], frame) {
				t.Fatalf("frame at offset %d does not re-encode to its bytes", off)
			}
			off += len(frame)
		}
	})
}

func decodeSeeds() [][]byte {
	seeds := [][]byte{AppendMessage(nil, goldenMessage())}
	msgs := messagesOfEveryType()
	for i := range msgs {
		seeds = append(seeds, AppendMessage(nil, &msgs[i]))
	}
	return append(seeds, nil, []byte{Version}, cat(header, uv(0), uv(MaxOps)))
}

func frameSeeds() [][]byte {
	var all []byte
	msgs := messagesOfEveryType()
	for i := range msgs {
		all, _ = AppendFrame(all, &msgs[i])
	}
	golden, _ := AppendFrame(nil, goldenMessage())
	return [][]byte{
		all,
		golden,
		golden[:len(golden)-1],
		cat(golden, rawFrame([]byte{Version, 0})),
		cat(golden, []byte("GET / HTTP/1.1\r\n\r\n")),
		nil,
	}
}

// TestFuzzSeedCorpora keeps testdata/fuzz in step with the seeds above:
// -update rewrites it. The committed corpus may also hold crashers found
// by fuzzing, which this test leaves alone.
func TestFuzzSeedCorpora(t *testing.T) {
	fuzzseed.Check(t, *update, "FuzzDecodeMessage", fuzzseed.Numbered(decodeSeeds()))
	fuzzseed.Check(t, *update, "FuzzFrameReader", fuzzseed.Numbered(frameSeeds()))
}
