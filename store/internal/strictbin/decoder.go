package strictbin

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Decoder reads the fields of one encoded value, front to back. The zero
// Decoder is not usable; get one from NewDecoder. A Decoder is small and
// meant to live in a local variable: its methods do not allocate unless
// they fail.
type Decoder struct {
	b   []byte
	off int
	err error
	e   *Errors
}

// Errors says how a Decoder reports malformed input. A package keeps one
// in a variable for all its Decoders.
type Errors struct {
	// Malformed is wrapped by every error, which reads "<Malformed>: <what
	// went wrong>". It must not be nil.
	Malformed error
	// Input names the whole input in errors about lengths beyond it:
	// "tenant length 127 exceeds record".
	Input string
}

// NewDecoder returns a Decoder reading b from its start, reporting errors
// as e says.
func NewDecoder(b []byte, e *Errors) Decoder {
	return Decoder{b: b, e: e}
}

// Err is the first error the Decoder met, or nil.
func (d *Decoder) Err() error { return d.err }

// Offset is the number of bytes of the input read so far.
func (d *Decoder) Offset() int { return d.off }

// Remaining is the number of bytes of the input not read yet.
func (d *Decoder) Remaining() int { return len(d.b) - d.off }

// Rewind moves back to off, an offset Offset returned, to read the same
// fields again: callers validate a whole value before they allocate for
// it, then read it a second time to copy it out. It keeps any error.
func (d *Decoder) Rewind(off int) { d.off = off }

// Fail records the error "<Malformed>: <format, args>" unless the Decoder
// has already failed, which turns every later read into a no-op. Callers
// use it for the checks of their own format (limits on counts and the
// like), so that those errors stick as well.
func (d *Decoder) Fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{d.e.Malformed}, args...)...)
	}
}

// Byte reads one byte; field names it in errors.
func (d *Decoder) Byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.Remaining() < 1 {
		d.Fail("truncated %s", field)
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

// Uvarint reads an encoding/binary unsigned varint in its shortest form;
// field names it in errors. It rejects truncated varints, varints that
// overflow 64 bits, and padded ones, which binary.Uvarint accepts.
func (d *Decoder) Uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	// Most lengths, counts and small numbers fit in one byte.
	if d.off < len(d.b) && d.b[d.off] < 0x80 {
		d.off++
		return uint64(d.b[d.off-1])
	}
	x, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.Fail("truncated %s", field)
		return 0
	case n < 0:
		d.Fail("%s overflows 64 bits", field)
		return 0
	case n != UvarintLen(x):
		// binary.Uvarint accepts padded encodings (0x80 0x00 for 0);
		// accepting them would give one value two encodings.
		d.Fail("non-minimal varint for %s", field)
		return 0
	}
	d.off += n
	return x
}

// Fixed64 reads a little-endian uint64; field names it in errors.
func (d *Decoder) Fixed64(field string) uint64 {
	if d.err != nil {
		return 0
	}
	if d.Remaining() < 8 {
		d.Fail("truncated %s", field)
		return 0
	}
	d.off += 8
	return binary.LittleEndian.Uint64(d.b[d.off-8:])
}

// Bytes reads a Uvarint length followed by that many bytes; field names
// the length in errors. The length is checked against the bytes that
// remain before it is used. The result aliases the input.
func (d *Decoder) Bytes(field string) []byte {
	n := d.Uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(d.Remaining()) {
		d.Fail("%s %d exceeds %s", field, n, d.e.Input)
		return nil
	}
	d.off += int(n)
	return d.b[d.off-int(n) : d.off]
}

// LimitedBytes is Bytes for a length that must not exceed limit, which
// must not be negative. The limit is checked first, so a length above it
// is reported as such even where the input is shorter still.
func (d *Decoder) LimitedBytes(field string, limit int) []byte {
	n := d.Uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) {
		d.Fail("%s %d exceeds limit %d", field, n, limit)
		return nil
	}
	// As in Bytes; a call to a shared helper would not be inlined.
	if n > uint64(d.Remaining()) {
		d.Fail("%s %d exceeds %s", field, n, d.e.Input)
		return nil
	}
	d.off += int(n)
	return d.b[d.off-int(n) : d.off]
}

// UvarintLen is the number of bytes binary.AppendUvarint writes for x, and
// so the only length Uvarint accepts for x.
func UvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}
