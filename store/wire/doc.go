// Package wire defines the replication messages exchanged by kmbd replicas
// and their checksummed binary encoding.
//
// # Message encoding (version 2)
//
// Version 2 added Epoch, Data (checkpoint chunks for state transfer) and
// ops of the log's format version 2 (kind, principal, chain hash).
//
// AppendMessage writes, and DecodeMessage reads, one Message as:
//
//	u8       version (2)
//	u8       Type (1..MaxType)
//	uvarint  From
//	uvarint  To
//	uvarint  Epoch
//	uvarint  View
//	uvarint  LogView
//	uvarint  Op
//	uvarint  Commit
//	uvarint  Nonce
//	u8       Flags (only FlagNormal and FlagFresh may be set)
//	uvarint  len(TraceParent) (at most MaxTraceParentLen = 256), then its bytes
//	uvarint  len(Ops) (at most MaxOps = 65536), then per op:
//	         uvarint n, then n bytes: the op encoded by kmblog.AppendOp
//	uvarint  len(Data) (at most MaxDataLen = 8 MiB), then its bytes
//
// uvarint is encoding/binary's unsigned varint (7 bits a byte, low group
// first, high bit set on all but the last byte), always in its shortest
// form. The op encoding is the one the log stores, documented at
// kmblog.AppendOp, so a backup appends exactly the bytes the primary
// encoded.
//
// The decoder is strict, so that every accepted input re-encodes to exactly
// the same bytes: it rejects an unknown version, type or flag, a
// non-minimal or overflowing varint, a length or count above its limit or
// beyond the input, an op that kmblog.DecodeOp rejects, and trailing bytes.
// It never panics, and never allocates on the strength of a claim: every
// count and length is checked against its limit and against the bytes
// that remain, and every op's length prefix is checked, before anything is
// allocated for the ops. What it does allocate is bounded by a small
// multiple of the input.
//
// # Frames
//
// On a stream, each payload travels in a frame:
//
//	u32 LE   n, payload length; 1 <= n <= MaxFrameSize (64 MiB)
//	u32 LE   CRC32C (Castagnoli) of the payload
//	[n]byte  payload
//
// AppendFrame, WriteFrame and FrameReader.Read carry one encoded Message
// per frame. StartFrame, FinishFrame and FrameReader.ReadPayload carry any
// payload, which lets the transport add its own frame kinds around
// messages (see package transport).
//
// A reader that meets a bad length or checksum cannot find the next frame
// boundary, so FrameReader reports ErrCorruptFrame and the caller drops the
// connection. A reader never allocates more than twice the bytes that
// actually arrived, whatever length a header claims.
package wire
