package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	// FrameHeaderSize is the [u32 length][u32 CRC32C] prefix of a frame.
	FrameHeaderSize = 8

	// MaxFrameSize bounds a frame's payload. A header claiming more is
	// corrupt: four damaged bytes must not make a reader wait for, or
	// allocate, gigabytes.
	MaxFrameSize = 64 << 20

	// readBufferSize is the FrameReader's read-ahead, which lets a burst
	// of small frames cost one read syscall rather than two per frame.
	readBufferSize = 64 << 10

	// retainPayloadSize is the largest payload buffer a FrameReader keeps
	// between frames; one huge frame must not pin its buffer for the life
	// of a connection.
	retainPayloadSize = 1 << 20
)

// castagnoli is CRC32C, hardware accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptFrame is wrapped by FrameReader errors about frames that fail
// verification: a bad length, a bad checksum, or (from Read) a payload that
// does not decode. The stream cannot be trusted past such a frame.
var ErrCorruptFrame = errors.New("wire: corrupt frame")

// ErrFrameTooLarge is returned by FinishFrame (and so by AppendFrame and
// WriteFrame) for a payload above MaxFrameSize, or an empty one.
var ErrFrameTooLarge = errors.New("wire: frame payload size out of range")

// StartFrame appends room for a frame header to dst and returns the offset
// of the frame, for FinishFrame. Append the payload to the returned slice.
func StartFrame(dst []byte) ([]byte, int) {
	start := len(dst)
	return append(dst, make([]byte, FrameHeaderSize)...), start
}

// FinishFrame fills in the header of the frame that starts at dst[start]
// and holds everything after it as payload. If the payload is empty or
// larger than MaxFrameSize it returns dst[:start], dropping the frame, and
// an error wrapping ErrFrameTooLarge.
func FinishFrame(dst []byte, start int) ([]byte, error) {
	n := len(dst) - start - FrameHeaderSize
	if n < 1 || n > MaxFrameSize {
		return dst[:start], fmt.Errorf("%w: %d bytes, accepted 1..%d", ErrFrameTooLarge, n, MaxFrameSize)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(n))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+FrameHeaderSize:], castagnoli))
	return dst, nil
}

// AppendFrame appends one frame holding m to dst. If m fails Validate or
// its encoding exceeds MaxFrameSize it returns dst unchanged and the error.
// It does not allocate when dst has room for the frame.
func AppendFrame(dst []byte, m *Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst, start := StartFrame(dst)
	dst = AppendMessage(dst, m)
	return FinishFrame(dst, start)
}

// WriteFrame encodes m as one frame into buf, which it reuses from its
// start, and writes the frame with a single Write call. It returns the
// buffer, grown if need be, for the next call. A message that AppendFrame
// refuses is not written.
func WriteFrame(w io.Writer, buf []byte, m *Message) ([]byte, error) {
	buf, err := AppendFrame(buf[:0], m)
	if err != nil {
		return buf, err
	}
	_, err = w.Write(buf)
	return buf, err
}

// FrameReader reads frames from a stream through a read-ahead buffer. It
// is not safe for concurrent use.
type FrameReader struct {
	r     *bufio.Reader
	limit int
	hdr   [FrameHeaderSize]byte
	buf   []byte // payload buffer, reused between frames
}

// NewFrameReader returns a FrameReader reading r, accepting payloads up to
// MaxFrameSize.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, readBufferSize), limit: MaxFrameSize}
}

// SetLimit sets the largest payload the reader accepts, clamped to
// 1..MaxFrameSize. A peer that has not identified itself yet, for example,
// has no business sending megabytes.
func (fr *FrameReader) SetLimit(n int) {
	fr.limit = min(max(n, 1), MaxFrameSize)
}

// Read reads one frame and decodes its payload as a Message. Errors are
// io.EOF at a clean end of stream, an error wrapping io.ErrUnexpectedEOF
// for a stream that ends inside a frame, one wrapping ErrCorruptFrame for a
// frame that fails verification or decoding, or the underlying reader's.
func (fr *FrameReader) Read() (Message, error) {
	payload, err := fr.ReadPayload()
	if err != nil {
		return Message{}, err
	}
	m, err := DecodeMessage(payload)
	if err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrCorruptFrame, err)
	}
	return m, nil
}

// ReadPayload reads one frame and returns its verified payload, which
// aliases a buffer that the next call reuses. Errors are as for Read, minus
// decoding.
func (fr *FrameReader) ReadPayload() ([]byte, error) {
	if cap(fr.buf) > retainPayloadSize {
		fr.buf = nil
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, truncated(err, "header")
	}
	n := binary.LittleEndian.Uint32(fr.hdr[:])
	if n == 0 || n > uint32(fr.limit) {
		return nil, fmt.Errorf("%w: payload length %d, accepted 1..%d", ErrCorruptFrame, n, fr.limit)
	}
	payload, err := fr.readPayload(int(n))
	if err != nil {
		return nil, truncated(err, "payload")
	}
	if sum, want := crc32.Checksum(payload, castagnoli), binary.LittleEndian.Uint32(fr.hdr[4:]); sum != want {
		return nil, fmt.Errorf("%w: checksum %#08x, header says %#08x", ErrCorruptFrame, sum, want)
	}
	return payload, nil
}

// readPayload reads n bytes into fr.buf. It grows the buffer no faster than
// bytes arrive, so a header that lies about the length costs at most twice
// what the peer actually sent.
func (fr *FrameReader) readPayload(n int) ([]byte, error) {
	if n <= cap(fr.buf) {
		fr.buf = fr.buf[:n]
		_, err := io.ReadFull(fr.r, fr.buf)
		return fr.buf, err
	}
	buf := fr.buf[:0]
	for len(buf) < n {
		chunk := min(n-len(buf), max(len(buf), readBufferSize))
		if len(buf)+chunk > cap(buf) {
			grown := make([]byte, len(buf), len(buf)+chunk)
			copy(grown, buf)
			buf = grown
		}
		got, err := io.ReadFull(fr.r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+got]
		if err != nil {
			fr.buf = buf
			return nil, err
		}
	}
	fr.buf = buf
	return buf, nil
}

// truncated turns an end of stream inside a frame into io.ErrUnexpectedEOF
// (io.ReadFull reports io.EOF when it read nothing of the payload) and
// leaves a clean end before a header as io.EOF.
func truncated(err error, part string) error {
	switch {
	case err == io.EOF && part == "header":
		return io.EOF
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return fmt.Errorf("wire: stream ends inside a frame %s: %w", part, io.ErrUnexpectedEOF)
	}
	return err
}
