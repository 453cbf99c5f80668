package wire

import "github.com/kmb-db/kmb/store/internal/strictbin"

// newDecoder returns a strict decoder of an encoded message, b, whose
// errors wrap ErrMalformedMessage. The first error sticks and turns later
// reads into no-ops, which keeps DecodeMessage free of an error check after
// every field.
func newDecoder(b []byte) strictbin.Decoder {
	return strictbin.NewDecoder(b, ErrMalformedMessage, "message")
}
