// Package strictbin decodes the strict binary encodings of the store: the
// op the log stores (package log) and the replication message that carries
// ops between replicas (package wire). Both packages encode with
// encoding/binary and decode with a Decoder from here.
//
// The decoding is strict for two reasons.
//
// Every value has exactly one encoding. encoding/binary.Uvarint accepts
// padded varints (0x80 0x00 for 0); a Decoder rejects them, as it rejects
// varints that overflow 64 bits, fields cut short and, through its callers,
// trailing bytes. So every accepted input re-encodes to exactly the same
// bytes: a backup appends to its log the bytes the primary encoded, a
// checksum covers the only encoding of what it protects, and the fuzz tests
// can demand that decode followed by encode is the identity.
//
// Lengths are checked against the input before anything is allocated. The
// input comes from disk or from the network and may be corrupt or hostile,
// so a length prefix or a count is a claim, not a fact: a Decoder returns
// the bytes behind a length only after checking that they are there (and,
// where the caller gives one, that the length is within its limit), and
// returns them aliasing the input. Callers validate a whole record this
// way before they allocate anything for it, so rejected input costs no
// allocation and accepted input costs allocations bounded by its size.
//
// A Decoder's first error sticks and turns later reads into no-ops that
// return zero values, so a caller reads a run of fields and checks Err
// once. Every error wraps the sentinel error of the Errors the caller gave
// to NewDecoder (log.ErrMalformedOp, wire.ErrMalformedMessage), so each
// package keeps its own error identity and message texts.
package strictbin
