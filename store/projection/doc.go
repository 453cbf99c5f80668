// Package projection keeps each tenant's key/value view of the log: the
// latest value per key, and an index of the tenant's ops so range reads of
// the tenant's entries go straight to the right records.
//
// The projection is applied from committed ops strictly in log order by one
// goroutine (the node's event loop); readers are concurrent. It is rebuilt
// from the log when the node starts, so it needs no files of its own.
package projection
