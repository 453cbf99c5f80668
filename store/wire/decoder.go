package wire

import "github.com/kmb-db/kmb/store/internal/strictbin"

// messageErrors makes a decoder's errors wrap ErrMalformedMessage.
var messageErrors = &strictbin.Errors{Malformed: ErrMalformedMessage, Input: "message"}

// newDecoder returns a strict decoder of an encoded message, b. The first
// error sticks and turns later reads into no-ops, which keeps DecodeMessage
// free of an error check after every field.
func newDecoder(b []byte) strictbin.Decoder {
	return strictbin.NewDecoder(b, messageErrors)
}
