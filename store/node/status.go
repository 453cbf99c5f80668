package node

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kmb-db/kmb/status"
	"github.com/kmb-db/kmb/store/transport"
	"github.com/kmb-db/kmb/store/vsr"
)

// publishStatus rebuilds the status snapshot from the loop's state; force,
// when not empty, overrides the replica's status (recovering before the
// replica exists, shutting_down at the end). Readers only load the pointer.
func (n *Node) publishStatus(force string) {
	s := status.Snapshot{
		NodeID:      n.cfg.NodeID,
		Status:      status.StateRecovering,
		ClusterSize: len(n.ids),
		Build:       n.build,
	}
	s.DiskFull = n.diskFull.Load() != nil
	s.Replicas = n.replicasSnapshot()
	if n.rep != nil {
		st := n.rep.State()
		s.View, s.OpNumber, s.CommitNumber = st.View, st.Op, st.Commit
		s.CorruptOps = st.Faulty
		s.Epoch, s.Reconfiguring = st.Epoch, st.Reconfiguring
		switch st.Status {
		case vsr.StatusRemoved:
			s.Status, s.ClusterSize = status.StateRemoved, 0
		case vsr.StatusNormal:
			s.Status = status.StateNormal
			if st.CatchingUp || st.Faulty > 0 || st.Promised > 0 {
				s.Status = status.StateRecovering
			}
			s.LeaderID = st.Primary
			s.IsLeader = st.IsPrimary
		case vsr.StatusViewChange:
			s.Status = status.StateViewChange
		}
		if st.Status != vsr.StatusRemoved {
			s.HealthyReplicas = n.healthyReplicas()
		}
	}
	if n.log != nil && n.rep != nil {
		s.Log = status.Log{FirstOp: n.log.FirstOp(), LastOp: n.log.LastOp(), LastPosition: n.log.LastPosition(), SizeBytes: n.log.SizeBytes()}
	}
	s.Projection = status.Projection{AppliedPosition: n.proj.AppliedPosition(), ActiveTenants: n.proj.ActiveTenants()}
	s.Checkpoint = n.ckpt.last
	if n.applied > 0 {
		s.ChainHead = status.ChainHead{Op: n.applied, Hash: n.chainHeadHex()}
	}
	if s.Log.LastPosition > s.Projection.AppliedPosition {
		s.Projection.Lag = s.Log.LastPosition - s.Projection.AppliedPosition
	}
	if force != "" {
		s.Status = force
		if force == status.StateShutdown {
			s.IsLeader, s.LeaderID = false, 0
		}
	}
	if n.fatalErr() != nil {
		s.Status, s.IsLeader = status.StateShutdown, false
	}
	if old := n.snap.Load(); old != nil && *old == s {
		return
	}
	n.snap.Store(&s)
}

// replicasSnapshot is the configuration for the snapshot: the same
// status.Members until the configuration changes.
func (n *Node) replicasSnapshot() status.Members {
	list := make([]status.Replica, len(n.ids))
	for i, id := range n.ids {
		list[i] = status.Replica{ID: id, Addr: n.addrs[id]}
	}
	if old := n.snap.Load(); old != nil && slices.Equal(old.Replicas.List(), list) {
		return old.Replicas
	}
	return status.NewMembers(list)
}

// healthyReplicas counts this replica and the peers it heard from lately:
// any frame, a pong included, within three ping intervals, or a replication
// message within two view-change timeouts. Backups do not exchange
// replication messages with each other, so the transport's pings are what
// let every replica see the whole cluster.
func (n *Node) healthyReplicas() int {
	healthy := 1
	window := uint64(2 * n.cfg.ViewChangeTicks)
	tick := n.rep.Now()
	now := n.now()
	for _, id := range n.ids {
		if id == n.cfg.NodeID {
			continue
		}
		if last := n.rep.LastContact(id); last > 0 && tick-last <= window {
			healthy++
		} else if n.net != nil && now.Sub(n.net.LastContact(id)) <= 3*transport.DefaultPingInterval {
			healthy++
		}
	}
	return healthy
}

// Status returns the node's status snapshot.
func (n *Node) Status() status.Snapshot { return *n.snap.Load() }

// Live fails when the node hit a storage failure or its loop stalled.
func (n *Node) Live() error {
	if err := n.fatalErr(); err != nil {
		return fmt.Errorf("storage failure: %v", err)
	}
	if !n.running.Load() {
		return nil // recovery runs before the loop and may take long
	}
	if stalled := n.now().Sub(time.Unix(0, n.lastIter.Load())); stalled > n.cfg.StallTimeout {
		return fmt.Errorf("event loop stalled for %s", stalled.Round(time.Second))
	}
	return nil
}

// Ready fails unless the replica can serve: normal, caught up, and in touch
// with a quorum.
func (n *Node) Ready() error {
	if err := n.fatalErr(); err != nil {
		return fmt.Errorf("storage failure: %v", err)
	}
	s := n.snap.Load()
	if s.DiskFull {
		return errors.New("disk full: writes are refused until space is freed in the data dir (reads are served)")
	}
	switch s.Status {
	case status.StateNormal:
	case status.StateRecovering:
		if !n.running.Load() {
			return errors.New("recovering: replaying the log")
		}
		if s.CorruptOps > 0 {
			return fmt.Errorf("repairing: %d corrupt log ops are being fetched from the cluster", s.CorruptOps)
		}
		return errors.New("recovering: catching up with the leader")
	case status.StateViewChange:
		return fmt.Errorf("view change in progress (view %d)", s.View)
	case status.StateRemoved:
		return fmt.Errorf("removed from the cluster in epoch %d: this node serves nothing; stop it", s.Epoch)
	default:
		return fmt.Errorf("replica status %s", s.Status)
	}
	if quorum := s.ClusterSize/2 + 1; s.HealthyReplicas < quorum {
		return fmt.Errorf("in touch with %d of %d replicas, fewer than a quorum", s.HealthyReplicas, s.ClusterSize)
	}
	return nil
}

func (n *Node) logSize() int64 {
	if !n.running.Load() {
		return 0
	}
	return n.log.SizeBytes()
}

// chainHeadHex is the applied op's chain hash in hex, formatted once per
// op (publishStatus runs every loop iteration).
func (n *Node) chainHeadHex() string {
	if n.chainHexOp != n.applied {
		n.chainHex, n.chainHexOp = hex.EncodeToString(n.chainHead[:]), n.applied
	}
	return n.chainHex
}
