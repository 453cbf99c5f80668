// Package log is kmbd's on-disk log: a segmented, append-only, checksummed
// sequence of VSR operations ("ops"), each a batch of entries of one
// tenant, with crash recovery.
//
// # Use
//
// One goroutine, the node's event loop, writes: it calls Append for every
// request waiting in its queue and then Sync once, so that concurrent
// client writes share one fsync (group commit). Append encodes all its ops
// into one reused buffer and writes them with one syscall; nothing is
// durable or readable until Sync returns. Any number of goroutines call
// Read and Scan concurrently; they see exactly the ops up to DurableOp.
//
// # On-disk format
//
// The log is a directory of segment files named %020d.seg after the number
// of their first op, so that name order is op order. A segment is a header
// followed by records, with no padding and no footer:
//
//	segment header, 60 bytes (format version 2):
//	  [6]byte  magic "KMBSEG"
//	  u16 LE   format version (2)
//	  u64 LE   first op number, equal to the one in the file name
//	  u64 LE   first position: that of the first op's first entry
//	  [32]byte chain hash of the op before the first (zero for op 1)
//	  u32 LE   CRC32C (Castagnoli) of the 56 bytes above
//
//	record (frame), 8 + n bytes:
//	  u32 LE   n, payload length; minOpSize <= n <= MaxRecordSize (16 MiB)
//	  u32 LE   CRC32C of the payload
//	  [n]byte  payload: one op encoded by AppendOp (version 2)
//
// The op encoding is documented at AppendOp. The same bytes travel in
// replication messages, so the decoder is strict: an op has exactly one
// encoding. Each op ends with its chain hash, SHA-256 of the previous op's
// chain hash and the op's own encoding before it (ChainHash): the log is
// tamper-evident, and a segment is verifiable on its own from its header.
//
// Ops are numbered from 1 with no gaps, across segments: the first record
// of a segment holds the op named in its header, and each segment starts
// with the op after the last one of the segment before it. Entry positions
// are likewise global, 1-based and contiguous: op 1 starts at position 1
// and op n+1 starts where op n ends.
//
// The active (last) segment is sealed, and a new one started, before the
// first record that would start at or past SegmentSizeBytes, so a segment
// is never empty unless it is the last. The sealed segment is fsynced
// before anything is written to the new one.
//
// A log of format version 1 (ops without kind, principal and chain hash;
// 20-byte segment headers) is migrated by Open, segment by segment, each
// rewritten to a temporary file, synced and renamed over the old one.
//
// # Durability
//
// Sync fdatasyncs the active segment and, after segments were created or
// removed, fsyncs the directory. TruncateAfter deletes the segments after
// the cut point newest first, fsyncs the directory, and only then
// truncates and syncs the segment holding the new last op. These orders
// guarantee that whatever a crash leaves behind is a valid log that
// differs from the last synced state only in the tail of its last segment.
//
// An Append that finds the disk full (ENOSPC, EDQUOT) cuts off what it
// wrote, durably, removes the segments it created, and returns
// ErrDiskFull: the log is as it was and takes appends again once there is
// space. After any other failed write, and after any failed fsync, the log
// refuses further writes: the kernel may have dropped the dirty pages, and
// only recovery knows what is on disk.
//
// A log starts at op 1 unless a file START (see start.go) records where it
// starts: RemoveBefore deletes whole segments below an op, and Reset
// empties the log to start at any op.
//
// # Segment indexes
//
// When a segment is sealed, an index is written beside it (%020d.idx, see
// index.go): the offsets of its records and the op, position, chain hash
// and commit times it ends with, checksummed. Open trusts a sealed
// segment whose index checks out, describes its header and records its
// size, without reading it, so that Open reads the last segment alone and
// its cost does not grow with the log. A sealed segment without a valid
// index is read as below and indexed. Damage inside a trusted segment is
// then found by the read that meets it (its checksum fails: ErrCorrupt,
// never wrong data), and by Check and Config.VerifyAll, which read every
// record of every segment.
//
// # Recovery
//
// Open reads the segments it does not trust from their index in op order
// and verifies every record: length bounds, checksum, strict decoding, op
// and position contiguity (within and across segments) and the chain
// hash. At a bad record it looks for
// the next valid one (a record whose checksum holds and whose op can
// follow), so that damage is a run of bytes with the ops it held. Then:
//
//   - Damage in the last segment with nothing valid after it is what a
//     torn final write leaves: the file is truncated where the damage
//     starts and synced, one WARN line names the segment, offset, bytes cut
//     and reason, and RecoveryReport says the same.
//   - Any other damage (valid records follow it, in its segment or in a
//     later one: bit rot, a misdirected write) is corruption: cutting there
//     would drop acknowledged ops. Open fails with a CorruptionError naming
//     the segment, offset and ops, and changes nothing; Check lists it
//     without opening the log for writing. With TolerateCorruption, which a
//     replica of a cluster sets, Open keeps the log's length and holds the
//     damaged ops as faulty: Read and Scan refuse them (ErrFaulty), never
//     answering with wrong data, until Repair writes verified copies back
//     in place.
//   - A last segment whose header is torn (short, or failing its checksum)
//     was being created when the process died, before any of it was
//     synced: once every other segment has been verified and its file name
//     shows that it continues the log, it is removed, with a WARN line. If
//     a valid record follows such a header, the segment held data and Open
//     fails instead.
//   - A bad header of any earlier segment, a header with a valid checksum
//     but an unknown version or bad magic, or a segment that does not
//     continue the one before it, fails Open.
//
// Open verifies everything before it cuts or removes anything, so an Open
// that fails has changed no file. It finishes by syncing the last segment
// (the previous process may have died with it only in the page cache) and
// logging the recovery summary at INFO.
//
// # Concurrency
//
// Readers find records through an index of frame offsets per segment,
// guarded by an RWMutex that the writer takes only to publish the offsets
// of newly synced ops and to add or drop segments. Readers pread the
// segment files outside that lock and verify the checksum of every record
// they read. TruncateAfter and Close first wait for reads in flight, so a
// reader never sees bytes that are being cut.
package log
