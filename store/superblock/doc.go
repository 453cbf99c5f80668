// Package superblock reads and writes a replica's superblock: the small
// file in its data dir that holds its hard state (the view it entered, the
// last view in which it was normal, a lower bound of the commit number) and
// the node id that owns the directory. The node writes it; a point-in-time
// restore writes one for the data dir it produces.
//
// Format, 46 bytes, replaced atomically (written to a temporary file,
// fsynced, renamed over the old one, directory fsynced):
//
//	[8]byte "KMBSUPER"
//	u16 LE  version (1)
//	u64 LE  node id
//	u64 LE  view
//	u64 LE  log view
//	u64 LE  commit
//	u32 LE  CRC32C (Castagnoli) of everything above
package superblock
