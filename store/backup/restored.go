package backup

// restoredNodeID is the node a restored data dir belongs to: a restore
// produces a single node, which runs as node_id 1. The superblock it writes
// is package superblock's.
const restoredNodeID = 1
