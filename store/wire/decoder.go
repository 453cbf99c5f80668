package wire

import (
	"encoding/binary"
	"fmt"
)

// decoder reads the fields of an encoded message. The first error sticks
// and turns later reads into no-ops, which keeps DecodeMessage free of an
// error check after every field.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformedMessage}, args...)...)
	}
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 1 {
		d.fail("truncated %s", field)
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	// Most fields fit in one byte.
	if d.off < len(d.b) && d.b[d.off] < 0x80 {
		d.off++
		return uint64(d.b[d.off-1])
	}
	x, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail("truncated %s", field)
		return 0
	case n < 0:
		d.fail("%s overflows 64 bits", field)
		return 0
	case n != uvarintLen(x):
		// binary.Uvarint accepts padded encodings (0x80 0x00 for 0);
		// accepting them would give one message two encodings.
		d.fail("non-minimal varint for %s", field)
		return 0
	}
	d.off += n
	return x
}

// bytes reads a uvarint length, at most limit, followed by that many
// bytes; field names the length in errors. The result aliases the input.
func (d *decoder) bytes(field string, limit int) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) {
		d.fail("%s %d exceeds limit %d", field, n, limit)
		return nil
	}
	if n > uint64(d.remaining()) {
		d.fail("%s %d exceeds message", field, n)
		return nil
	}
	d.off += int(n)
	return d.b[d.off-int(n) : d.off]
}
