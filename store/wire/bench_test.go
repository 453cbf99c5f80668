package wire

import (
	"bytes"
	"fmt"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// benchPrepare is a Prepare carrying one op of 100 entries of 100-byte
// values: a busy primary's typical message.
func benchPrepare() *Message {
	op := &kmblog.Op{Op: 1000, View: 2, Timestamp: 1_700_000_000_000_000_000, Tenant: "acme", FirstPosition: 100_000, ClientID: 42, RequestID: 7}
	for i := range 100 {
		op.Entries = append(op.Entries, kmblog.Entry{Key: fmt.Sprintf("user:%06d", i), Value: bytes.Repeat([]byte("v"), 100)})
	}
	return &Message{
		Type: TypePrepare, From: 1, To: 2, View: 2, Op: 1000, Commit: 998,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Ops:         []*kmblog.Op{op},
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	m := benchPrepare()
	buf := make([]byte, 0, EncodedSize(m))
	b.SetBytes(int64(EncodedSize(m)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMessage(buf[:0], m)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	m := benchPrepare()
	var buf []byte
	b.SetBytes(int64(EncodedSize(m) + FrameHeaderSize))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendFrame(buf[:0], m)
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	enc := AppendMessage(nil, benchPrepare())
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessage(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFrameReader reads back-to-back frames from memory: checksum,
// copy and decode.
func BenchmarkFrameReader(b *testing.B) {
	frame, err := AppendFrame(nil, benchPrepare())
	if err != nil {
		b.Fatal(err)
	}
	fr := NewFrameReader(&loopReader{b: bytes.Repeat(frame, 16)})
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fr.Read(); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader reads b over and over, forever.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}
