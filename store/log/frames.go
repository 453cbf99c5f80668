package log

import (
	"fmt"
	"hash/crc32"
)

// Frames is a run of consecutive durable ops as the log stores them:
// each a frame of [u32 LE length][u32 LE CRC32C of the payload][the op
// encoded by AppendOp]. A backup stores these bytes as they are.
type Frames struct {
	Data        []byte
	Ops         int
	First, Last Op // the first and last ops, decoded
}

// AppendFrame appends op's frame to dst, as the log writes it.
func AppendFrame(dst []byte, op *Op) ([]byte, error) { return appendFrame(dst, op) }

// ReadFrames reads the frames of ops from, from+1, ... up to op last,
// stopping at the end of from's segment and, after the first frame, before
// maxBytes, into buf (grown as needed). Every frame's length and checksum
// are verified; the first and last are decoded, and must be ops from and
// from+Ops-1. Only durable ops are readable; safe concurrently with the
// writer, like Read.
func (l *Log) ReadFrames(from, last uint64, maxBytes int, buf []byte) (Frames, error) {
	if from == 0 || from > l.durableOp.Load() || last < from {
		return Frames{}, ErrNotFound
	}
	last = min(last, l.durableOp.Load())
	c, err := l.readChunk(from, last, int64(max(maxBytes, 1)), &buf)
	if err != nil {
		return Frames{}, fmt.Errorf("log: read frames: %w", err)
	}
	s, start, b := c.seg, c.start, c.b
	f := Frames{Data: b}
	lastAt := 0
	for off := 0; off < len(b); f.Ops++ {
		if len(b)-off < frameHeaderSize {
			return Frames{}, fmt.Errorf("log: read frames of %s at offset %d: %w", s.name, start+int64(off), &recordError{Reason: reasonShortRecord})
		}
		size, sum, rerr := parseFrameHeader(b[off:], int64(len(b)-off-frameHeaderSize))
		if rerr == nil && crc32.Checksum(b[off+frameHeaderSize:off+frameHeaderSize+size], castagnoli) != sum {
			rerr = &recordError{Reason: reasonChecksum}
		}
		if rerr != nil {
			return Frames{}, fmt.Errorf("log: read frames of %s at offset %d: %w", s.name, start+int64(off), rerr)
		}
		lastAt = off
		off += frameHeaderSize + size
	}
	var rerr *recordError
	if f.First, _, rerr = decodeFrameAt(b); rerr == nil {
		f.Last, _, rerr = decodeFrameAt(b[lastAt:])
	}
	if rerr == nil && (f.First.Op != from || f.Last.Op != from+uint64(f.Ops)-1) {
		rerr = &recordError{Reason: reasonOpGap, Err: fmt.Errorf("frames hold ops %d..%d, want %d..%d", f.First.Op, f.Last.Op, from, from+uint64(f.Ops)-1)}
	}
	if rerr != nil {
		return Frames{}, fmt.Errorf("log: read frames of %s at offset %d: %w", s.name, start, rerr)
	}
	return f, nil
}
