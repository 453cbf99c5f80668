// Package projection keeps each tenant's key/value view of the log: the
// latest value per key, and an index of the tenant's ops so range reads of
// the tenant's entries go straight to the right records.
//
// The projection is applied from committed ops strictly in log order by one
// goroutine (the node's event loop); readers are concurrent. The node
// checkpoints it (Snapshot, which freezes rather than copies) and rebuilds
// it at start from the newest checkpoint (Builder) and the log after it.
package projection
