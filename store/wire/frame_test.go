package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/kmb-db/kmb/internal/fuzzseed"
	kmblog "github.com/kmb-db/kmb/store/log"
)

// rawFrame frames payload by hand, independently of FinishFrame.
func rawFrame(payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, payload...)
}

func TestFrameGolden(t *testing.T) {
	b, err := AppendFrame(nil, goldenMessage())
	if err != nil {
		t.Fatal(err)
	}
	fuzzseed.Golden(t, *update, "frame_v2.golden", b)
	if want := rawFrame(AppendMessage(nil, goldenMessage())); !bytes.Equal(b, want) {
		t.Fatalf("frame\n got %x\nwant %x", b, want)
	}
}

// countingWriter records every Write call.
type countingWriter struct {
	calls int
	buf   bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.calls++
	return w.buf.Write(p)
}

func TestWriteFrame(t *testing.T) {
	var w countingWriter
	var buf []byte
	var err error
	msgs := messagesOfEveryType()
	for i := range msgs {
		if buf, err = WriteFrame(&w, buf, &msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if w.calls != len(msgs) {
		t.Fatalf("%d Write calls for %d frames", w.calls, len(msgs))
	}
	fr := NewFrameReader(&w.buf)
	for i := range msgs {
		m, err := fr.Read()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		assertMessageEqual(t, &m, &msgs[i])
	}
	if _, err := fr.Read(); err != io.EOF {
		t.Fatalf("after the last frame: err = %v, want io.EOF", err)
	}

	// The buffer is reused: a second frame of the same size does not grow it.
	before := &buf[:1][0]
	if buf, err = WriteFrame(&w, buf, &msgs[0]); err != nil {
		t.Fatal(err)
	}
	if &buf[:1][0] != before {
		t.Error("WriteFrame did not reuse its buffer")
	}

	// A refused message writes nothing.
	calls := w.calls
	if _, err := WriteFrame(&w, buf, &Message{}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("WriteFrame of an invalid message: %v", err)
	}
	if w.calls != calls {
		t.Error("WriteFrame wrote an invalid message")
	}
}

func TestFinishFrameBounds(t *testing.T) {
	dst, start := StartFrame([]byte("prefix"))
	got, err := FinishFrame(dst, start)
	if !errors.Is(err, ErrFrameTooLarge) || string(got) != "prefix" {
		t.Fatalf("empty payload: %q, %v", got, err)
	}
	if testing.Short() {
		t.Skip("allocates 64 MiB")
	}
	dst, start = StartFrame(nil)
	dst = append(dst, make([]byte, MaxFrameSize+1)...)
	if got, err := FinishFrame(dst, start); !errors.Is(err, ErrFrameTooLarge) || len(got) != 0 {
		t.Fatalf("oversized payload: %d bytes, %v", len(got), err)
	}
	dst = dst[:FrameHeaderSize+MaxFrameSize]
	if _, err := FinishFrame(dst, start); err != nil {
		t.Fatalf("payload of exactly MaxFrameSize: %v", err)
	}
}

func TestFrameReaderRejects(t *testing.T) {
	good := rawFrame(AppendMessage(nil, goldenMessage()))
	payload := AppendMessage(nil, goldenMessage())
	badCRC := bytes.Clone(good)
	badCRC[4] ^= 1
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 0x80
	tests := []struct {
		name    string
		stream  []byte // follows one good frame
		limit   int
		wantErr error
	}{
		{"clean end", nil, 0, io.EOF},
		{"zero length", rawFrame(nil), 0, ErrCorruptFrame},
		{"length above MaxFrameSize", cat(binary.LittleEndian.AppendUint32(nil, MaxFrameSize+1), make([]byte, 4)), 0, ErrCorruptFrame},
		{"length above limit", good, len(payload) - 1, ErrCorruptFrame},
		{"bad checksum", badCRC, 0, ErrCorruptFrame},
		{"flipped payload bit", flipped, 0, ErrCorruptFrame},
		{"payload does not decode", rawFrame([]byte{Version, 0}), 0, ErrMalformedMessage},
		{"truncated header", good[:3], 0, io.ErrUnexpectedEOF},
		{"header only", good[:FrameHeaderSize], 0, io.ErrUnexpectedEOF},
		{"truncated payload", good[:len(good)-1], 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time, so that every short read path runs.
			fr := NewFrameReader(iotest.OneByteReader(bytes.NewReader(cat(good, tt.stream))))
			if tt.limit > 0 {
				fr.SetLimit(tt.limit)
			}
			if tt.limit == 0 {
				if _, err := fr.Read(); err != nil {
					t.Fatalf("the good frame: %v", err)
				}
			}
			m, err := fr.Read()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Read = %s, %v; want %v", describe(&m), err, tt.wantErr)
			}
			if tt.wantErr == ErrMalformedMessage && !errors.Is(err, ErrCorruptFrame) {
				t.Fatalf("a payload that does not decode is not ErrCorruptFrame: %v", err)
			}
		})
	}
}

// A header may claim any length up to MaxFrameSize; the reader allocates
// for the bytes that arrive, not for the claim.
func TestFrameReaderAllocationBoundedByInput(t *testing.T) {
	stream := cat(binary.LittleEndian.AppendUint32(nil, MaxFrameSize), make([]byte, 4+100))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := NewFrameReader(bytes.NewReader(stream)).ReadPayload(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	// The read-ahead buffer is 64 KiB, plus at most one 64 KiB chunk.
	if per := (after.TotalAlloc - before.TotalAlloc) / 10; per > 256<<10 {
		t.Errorf("a frame claiming 64 MiB with 100 bytes behind it allocated %d bytes", per)
	}
}

// Frames larger than the read-ahead and the retained buffer round-trip,
// interleaved with small ones.
func TestFrameReaderLargeFrames(t *testing.T) {
	big := &Message{Type: TypeOps, Ops: []*kmblog.Op{{Op: 1, FirstPosition: 1, Entries: []kmblog.Entry{
		{Key: "blob", Value: bytes.Repeat([]byte("v"), 3<<20)},
	}}}}
	small := &Message{Type: TypePrepareOK, Op: 1}
	var stream []byte
	var err error
	for _, m := range []*Message{big, small, big, small} {
		if stream, err = AppendFrame(stream, m); err != nil {
			t.Fatal(err)
		}
	}
	fr := NewFrameReader(bytes.NewReader(stream))
	for i, want := range []*Message{big, small, big, small} {
		got, err := fr.Read()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		assertMessageEqual(t, &got, want)
	}
}

func TestFrameReaderSetLimitClamps(t *testing.T) {
	fr := NewFrameReader(bytes.NewReader(nil))
	for _, tt := range []struct{ in, want int }{{-1, 1}, {0, 1}, {512, 512}, {MaxFrameSize + 1, MaxFrameSize}} {
		fr.SetLimit(tt.in)
		if fr.limit != tt.want {
			t.Errorf("SetLimit(%d): limit %d, want %d", tt.in, fr.limit, tt.want)
		}
	}
}
