// Package backup keeps kmbd's committed log in a backup repository and
// restores a data dir from it, to the latest checkpoint, a position or a
// time.
//
// It has the repository format, Backends for directories and S3-compatible
// object stores, the writer (AppendSegment, AdvanceCheckpointTime,
// CreateSnapshot, ApplyRetention, SetPaused), Verify, Restore, and Task,
// the continuous backup task a node runs. Only Task touches a node, and
// only through the Source interface.
//
// # Backend
//
// A Backend stores objects under slash-separated keys (see Backend and
// ValidateKey). OpenURL turns the backup.repository setting into one:
//
//   - file:///absolute/dir gives a DirBackend, which replaces each object
//     atomically and durably (temporary file, fsync, rename, fsync of the
//     directory).
//   - s3://bucket/prefix?endpoint=URL&region=NAME&path_style=true|false
//     gives an S3Backend, for Amazon S3 or an S3-compatible object store
//     such as MinIO. The endpoint (default https://s3.amazonaws.com; its
//     http or https scheme decides TLS), region (default us-east-1) and
//     path_style (default false: the bucket is addressed by host name)
//     are optional; no other query parameter is accepted. The
//     credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and,
//     for temporary credentials, AWS_SESSION_TOKEN, never from the URL.
//     The bucket must exist. The object for key k is prefix/k (k itself
//     when the prefix is empty), so several repositories can share a
//     bucket under different prefixes.
//
// An S3Backend's Put is one PutObject request carrying a Content-MD5 that
// the store checks: the object is replaced whole or not at all, and is
// durable once the request succeeds. The store must give read-after-write
// consistency, so that a Get or List after a successful Put or Delete
// sees it (Amazon S3 and MinIO do). List pages through the whole listing
// and leaves out objects under the prefix that no valid key names, such
// as folder markers.
//
// # Repository layout
//
//	manifest.json
//	segments/<first op>-<last op>.kseg.zst
//	snapshots/<op>/<first op>-<last op>.kseg.zst
//
// where each op number is written in decimal with 20 digits, zero-padded,
// so that keys sort in op order.
//
// # Segment objects
//
// A segment object holds a contiguous run of committed ops: it is a
// Zstandard stream (RFC 8878; the writer makes one frame, with the
// content size and the frame's content checksum, and a reader accepts
// any number of concatenated frames) whose decompressed content is a
// sequence of records, with no header, padding or footer:
//
//	record, 8 + n bytes:
//	  u32 LE   n, payload length; 1 <= n <= 16 MiB (log.MaxRecordSize)
//	  u32 LE   CRC32C (Castagnoli) of the payload
//	  [n]byte  payload: one op encoded by log.AppendOp (version 1)
//
// These are the records of the node's log segments (store/log), without
// the log's segment header. The first record holds the op the key names
// first, each next record holds the next op, starting at the position
// after the previous op's last one, and the last record holds the op the
// key names last. An object holds at least one record. With fixed encoder
// options the object depends only on its ops, so writing the same ops
// again writes the same bytes.
//
// # Manifest
//
// manifest.json is a JSON object with these members, in this order:
//
//	version                          int     1; a reader refuses any other
//	repository_id                    string  32 hex digits, random, set at Init
//	created_unix_nano                int     when Init ran, Unix ns
//	generation                       int     1 at Init, +1 at every write
//	segments                         array   the segment objects, in op order:
//	  name                           string  the object's key
//	  first_op, last_op              int     op range, inclusive
//	  first_position                 int     position of the first op's first entry
//	  last_position                  int     position of the last op's last entry
//	  first_timestamp_unix_nano      int     commit time of the first op, Unix ns
//	  last_timestamp_unix_nano       int     commit time of the last op
//	  entries                        int     entries in all its ops
//	  raw_bytes                      int     decompressed size (records with headers)
//	  stored_bytes                   int     the object's size
//	  sha256                         string  64 hex digits: SHA-256 of the object
//	checkpoint                       object  how far the repository reaches:
//	  op                             int     every op up to this one is in a segment
//	  position                       int     that op's last position
//	  timestamp_unix_nano            int     every op committed at or before this
//	                                         time is in a segment
//	snapshots                        array   the snapshots, oldest first:
//	  id                             string  snapshots/<op, 20 digits>
//	  op, position                   int     the last op it holds, and its last position
//	  timestamp_unix_nano            int     that op's commit time
//	  created_unix_nano              int     when it was taken
//	  parts                          array   segment entries (as above) for ops 1..op,
//	                                         named <id>/<first>-<last>.kseg.zst
//	task_paused_unix_nano            int     when the backup task was paused; 0 while
//	                                         it is meant to run
//	last_snapshot_success_unix_nano  int     0 for never
//	last_verify_success_unix_nano    int     0 for never
//	checksum                         string  64 hex digits, see below
//
// Integers are JSON numbers written in full (op numbers and positions are
// unsigned 64-bit, times signed 64-bit). The checksum is the SHA-256 of
// the manifest's canonical content: the same object without its checksum
// member, encoded compactly by Go's encoding/json (members in the order
// above, no whitespace, segments as [] when empty). A reader decodes the
// file, re-encodes it that way and compares; unknown members are refused.
// The stored file is the same object, checksum included, indented by two
// spaces and ending with a newline. It is replaced whole and atomically on
// every change.
//
// The version is 2. A manifest is consistent when: each snapshot's parts
// are non-empty, contiguous from op 1 and position 1 and end at its op
// and position, snapshots are in op order and none passes the
// checkpoint; the segments are contiguous, and start at op 1 or, once
// retention removed the older ones, no later than the op after the oldest
// snapshot; each name is the key of its range, each entry count equals
// its position span; and the checkpoint's op and position are where the
// last segment ends (else where the newest snapshot ends; 0 and 0 for an
// empty repository) and its time is no earlier than the last segment's
// last commit time. Open refuses a manifest that
// fails its checksum or is not consistent; Verify reports why.
//
// # Writing
//
// AppendSegment writes a segment object, then the manifest with the
// segment listed and the checkpoint moved to its end. A crash between the
// two leaves an object the manifest does not list (an orphan, which
// Verify reports but does not count as a problem); the writer sends the
// same ops again and overwrites it. The checkpoint only moves forwards:
// AdvanceCheckpointTime moves its time while nothing is committed, and
// never back. Every manifest write is a swap (Backend.Swap): it replaces
// the manifest only if it still holds the bytes this writer last read or
// wrote. A directory holds an flock(2) on .manifest.lock while it
// compares and renames; S3 uses a PutObject conditional on the ETag read
// (If-Match). Of two writers working from the same manifest one fails,
// with ErrConcurrentWriter, rereads it and tries again, so no update is
// lost and the checkpoint never moves back.
//
// # Snapshots and retention
//
// A snapshot is a full copy of the log, ops 1 up to the checkpoint when it
// was taken, written in parts of the segment format. CreateSnapshot builds
// it from the repository's own objects (the newest snapshot and the
// segments after it), so a node spends no disk reads on it. Retention
// keeps the newest N snapshots and those taken within a duration, drops
// the rest and every segment that ends at or before the oldest kept
// snapshot, since that snapshot holds its ops, writes the manifest, then
// deletes the objects.
//
// # The continuous task
//
// Task runs on every node with a repository. On the leader it ships the
// committed ops after the checkpoint as segments, the log's frames as they
// are. Commit times increase strictly along the log, across views too (a
// new primary's log holds every committed op), so the checkpoint time is
// the last shipped op's. While nothing commits, the task commits a marker
// (an op with no entries, Source.CommitMarker) every checkpoint interval
// and ships it: the checkpoint time follows the marker's. A marker needs a
// quorum, so a node that only believes it leads, cut off or restarted in
// an old view, cannot move the checkpoint, and no clock but the one that
// stamped an op is trusted. When a node takes over after a failover it
// rereads the manifest and goes on from its checkpoint. A second writer
// (an old leader that has not heard of the new view yet, or a command) is
// caught by the manifest's generation: the loser rereads the manifest and
// goes on from it, so the repository never holds a gap or the same op
// twice and the checkpoint never moves back.
//
// # Restore
//
// Restore reads the segments a target needs, in order, verifies each
// against its SHA-256 and each record against its CRC, and appends the
// ops to a new log in the data dir, which it then marks committed in the
// node's superblock. See Restore for the data dir's life cycle; in short,
// a restore that did not finish leaves a RESTORING file and a
// log.restoring directory behind, and the operator deletes the data dir
// and restores again.
package backup
