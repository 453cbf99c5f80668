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
//	segment header, 20 bytes:
//	  [6]byte  magic "KMBSEG"
//	  u16 LE   format version (1)
//	  u64 LE   first op number, equal to the one in the file name
//	  u32 LE   CRC32C (Castagnoli) of the 16 bytes above
//
//	record (frame), 8 + n bytes:
//	  u32 LE   n, payload length; minOpSize <= n <= MaxRecordSize (16 MiB)
//	  u32 LE   CRC32C of the payload
//	  [n]byte  payload: one op encoded by AppendOp (version 1)
//
// The op encoding is documented at AppendOp. The same bytes travel in
// replication messages, so the decoder is strict: an op has exactly one
// encoding.
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
// # Durability
//
// Sync fdatasyncs the active segment and, after segments were created or
// removed, fsyncs the directory. TruncateAfter deletes the segments after
// the cut point newest first, fsyncs the directory, and only then
// truncates and syncs the segment holding the new last op. These orders
// guarantee that whatever a crash leaves behind is a valid log that
// differs from the last synced state only in the tail of its last segment.
// After a failed write or fsync the log refuses further writes: the kernel
// may have dropped the dirty pages, and only recovery knows what is on
// disk.
//
// # Recovery
//
// Open reads the segments in op order and verifies every record: length
// bounds, checksum, strict decoding, op contiguity and position contiguity
// (within and across segments). Then:
//
//   - A bad record in the last segment is a torn or corrupt tail: the file
//     is truncated at the start of that record and synced, one WARN line
//     names the segment, offset, bytes cut and reason, and RecoveryReport
//     says the same. Every record before it is kept.
//   - A last segment whose header is torn (short, or failing its checksum)
//     was being created when the process died, before any of it was
//     synced: once every other segment has been verified and its file name
//     shows that it continues the log, it is removed, with a WARN line. If
//     a valid record follows such a header, the segment held data and Open
//     fails instead.
//   - A bad record or header in any earlier segment cannot come from a
//     crash, since segments are synced before the next is created: Open
//     fails with an error naming the segment and offset, and truncates
//     nothing. Refusing to start is better than silently dropping
//     acknowledged ops; an operator (or VSR state transfer) must repair it.
//   - A header with a valid checksum but an unknown version, bad magic, or
//     a first op that does not fit is never treated as torn: Open fails.
//
// Open verifies everything before it cuts or removes anything, so an Open
// that fails has changed no file. It finishes by syncing the last segment (the previous process may
// have died with it only in the page cache) and logging the recovery
// summary at INFO.
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
