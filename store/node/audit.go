package node

import (
	"context"
	"errors"
	"fmt"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// AuditLog is the node's committed log as an audit export reads it (it
// implements audit.Source): ops up to the last applied one, read from the
// local log concurrently with the writer.
type AuditLog struct{ n *Node }

// AuditLog returns the committed log for audit exports.
func (n *Node) AuditLog() AuditLog { return AuditLog{n} }

// FirstOpAt is where to start reading for ops committed at or after t.
func (a AuditLog) FirstOpAt(t int64) uint64 {
	if !a.n.running.Load() {
		return 1
	}
	first := a.n.log.FirstOpAt(t)
	if start := a.n.log.Start().Op; first == start && a.n.archive != nil && start > 1 {
		return min(a.n.archive.FirstOpAt(context.Background(), t), start)
	}
	return first
}

// Scan calls fn with every committed op from op from on, in order: those
// below the local log from the archive, then the log's.
func (a AuditLog) Scan(from uint64, fn func(*kmblog.Op) error) error {
	if err := a.n.readable(); err != nil {
		return err
	}
	last := a.n.proj.AppliedOp()
	if start := a.n.log.Start().Op; from < start && a.n.archive != nil && last > 0 {
		if err := a.n.archive.ReadOps(context.Background(), max(from, 1), min(start-1, last), fn); err != nil {
			return err
		}
	}
	return a.n.log.ScanRange(from, last, fn)
}

// Chain returns the chain hash of committed op n.
func (a AuditLog) Chain(n uint64) (kmblog.Chain, error) {
	if n == 0 {
		return kmblog.Chain{}, nil
	}
	if err := a.n.readable(); err != nil {
		return kmblog.Chain{}, err
	}
	if n > a.n.proj.AppliedOp() {
		return kmblog.Chain{}, fmt.Errorf("op %d is not committed here yet: %w", n, ErrNotFound)
	}
	op, err := a.n.readOp(n)
	if errors.Is(err, kmblog.ErrNotFound) {
		return kmblog.Chain{}, fmt.Errorf("op %d is not in the local log: %w", n, ErrNotFound)
	}
	return op.Chain, err
}

// Cluster names the log's history: the hex chain hash of op 1, or ""
// before op 1 is committed.
func (a AuditLog) Cluster() string {
	c, err := a.Chain(1)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%x", c[:])
}

// NodeID is this node's id.
func (a AuditLog) NodeID() uint64 { return a.n.cfg.NodeID }
