// Package superblock reads and writes a replica's superblock: the small
// file in its data dir that holds its hard state (the view it entered, the
// last view in which it was normal, a lower bound of the commit number, a
// log length it promised to hold again, its configuration) and the node id
// that owns the directory. The node writes it; a point-in-time restore writes one for the
// data dir it produces.
//
// # Format, version 3
//
// The file holds Copies (4) copies of the superblock, each in its own
// 4096-byte block so that a torn or misdirected write of one block cannot
// damage two copies:
//
//	[8]byte "KMBSUPER"
//	u16 LE  version (3)
//	u64 LE  sequence number, 1 for the first write, +1 for each next
//	u64 LE  node id
//	u64 LE  view
//	u64 LE  log view
//	u64 LE  commit
//	u64 LE  promised
//	u64 LE  epoch
//	u64 LE  config op: a config op not yet committed, or 0
//	u16 LE  n, the number of replicas of the epoch's configuration
//	        (0: the configured replicas), at most MaxConfig
//	u64 LE  × n: their node ids, in order
//	u32 LE  CRC32C (Castagnoli) of everything above
//	        zeros to the end of the block
//
// A reader takes the valid copy with the highest sequence number and
// reports the copies that are damaged or behind, so that one bad copy is
// survived and logged, not fatal; the next write rewrites every copy.
//
// A File writes in place, without allocating blocks (a full disk cannot
// stop it): copies 0 and 1, fdatasync, then copies 2 and 3, fdatasync. A
// crash during either half leaves the other half's copies valid, holding
// the new or the old superblock; the old one is still right, since the
// node acts on a superblock only once Write has returned.
//
// Version 2 is the same without epoch, config op and configuration (the
// CRC follows promised); Read reads it, and the next write in place is of
// version 3, in the same blocks. Version 1 was a single 46-byte copy (the
// fields of version 2 without sequence number and promised), replaced
// atomically by renaming a temporary file. Read still reads it; the node
// rewrites it as version 3.
package superblock
