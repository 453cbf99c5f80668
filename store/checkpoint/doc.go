// Package checkpoint is the durable image of a node's state machine at
// one op: the projection (every tenant's latest value per key and the
// index of its ops) and the client table. A node writes one every
// storage.checkpoint_interval_bytes of log and, when it restarts, loads the
// newest valid one and replays only the log after it, so that its restart
// does not grow with the length of its history. The same byte stream is
// what a replica that fell behind the cluster's retained log is sent and
// installs.
//
// # Format
//
// A checkpoint is a sequence of blocks, written and read as a stream
// (Writer, Read) in memory bounded by one block:
//
//	block:
//	  u32 LE   n, payload length (1 .. MaxBlockSize)
//	  u32 LE   CRC32C (Castagnoli) of the payload
//	  [n]byte  payload: u8 kind, uvarint sequence number (0, 1, 2, ...), body
//
// The first block is the header ('H'), the last the end ('E'); in
// between, for each tenant in turn a tenant block ('T') followed by its
// key blocks ('K') and op blocks ('O'), then the client blocks ('C'):
//
//	H: [6]byte "KMBCKP", u16 LE version (2), uvarint op, uvarint last
//	   position, [32]byte chain hash of op, u64 LE its commit time (Unix
//	   ns), uvarint epoch, uvarint count, then per member of the epoch's
//	   configuration: uvarint node id, uvarint len, replication address.
//	   (Version 1 ends after the commit time: epoch 0, no members.)
//	T: uvarint len, tenant id
//	K: uvarint count, then per key: uvarint len, key, uvarint position,
//	   uvarint len, value (the stored JSON)
//	O: uvarint count, then per op of the tenant, in log order: uvarint op
//	   minus the previous one's (the first: minus 0), uvarint first
//	   position minus the previous op's end, uvarint entries (>= 1)
//	C: uvarint count, then per client: uvarint id, uvarint request,
//	   uvarint first position, uvarint last position, uvarint op
//	E: uvarint tenants, keys, ops, clients: the totals of the stream
//
// A reader checks every block's checksum, that sequence numbers follow
// each other (no block lost, repeated or moved), the order of kinds, and
// the totals in the end block; anything after the end block is refused.
// Read hands the state to a Sink as it decodes it; a Sink must treat what
// it got as garbage unless Read returns nil.
//
// # Files
//
// A node keeps its checkpoints in data_dir/checkpoints as %020d.ckpt
// (the op). Save writes one atomically (a temporary file, fsync, rename,
// fsync of the directory) and keeps the newest Keep; Load reads the
// newest one that is valid and accepted by the caller, logging why it
// passed over the others.
package checkpoint
