package node

import (
	"errors"
	"log/slog"
	"time"

	"github.com/kmb-db/kmb/store/vsr"
)

// Local retention (storage.retention_bytes, storage.retention_time)
// deletes whole log segments from the oldest end. The limits say what
// may go; floors say what must stay, and the lowest floor wins:
//
//   - the older of the two projection checkpoints kept on disk
//     (checkpoint.Keep): a restart loads the newest and replays the ops
//     after it, and falls back to the one before when the newest is
//     found corrupt, so the op after that one stays. Until there are two,
//     nothing goes;
//   - with a backup repository, the backup floor (Config.RetentionFloor:
//     the last op the repository holds, as this node last read it from
//     the manifest); until it is known nothing goes. The floor only
//     rises, so a stale reading is merely cautious;
//   - on the leader, the ops a follower that is up still needs: those
//     after the op it last acknowledged (vsr.Replica.Acked). A follower
//     the leader has not heard from for followerSilenceTicks (a minute at
//     the default tick of 50ms) no longer holds the log back: once back
//     it asks for ops below the leader's log start and is answered with
//     a state transfer (vsr state_transfer) instead;
//   - the commit number and the durable log, which vsr.SetLogStart
//     requires.
//
// Followers apply the same rule to their own logs, without the
// follower floor. Retention runs on the loop once per retentionInterval
// (retentionBusyInterval while the log is more than a segment over
// retention_bytes), never on the append path, and not while ops of the
// log await repair. A pass that deletes nothing reads no file.
const (
	retentionInterval     = time.Second
	retentionBusyInterval = 100 * time.Millisecond
	followerSilenceTicks  = 1200
)

// maybeRetain applies local retention when it is due. Loop only.
func (n *Node) maybeRetain() {
	if !n.cfg.retains() || n.fatalErr() != nil {
		return
	}
	gap := retentionInterval
	if n.cfg.RetentionBytes > 0 && n.log.SizeBytes() > n.cfg.RetentionBytes+n.cfg.SegmentSizeBytes {
		// Over the limit by more than a segment: a busy log, or a floor
		// that holds it. Look more often, so that disk use under a
		// sustained load stays near the limit.
		gap = retentionBusyInterval
	}
	if n.now().Sub(n.lastRetention) < gap {
		return
	}
	n.lastRetention = n.now()
	if cut := min(n.retentionTarget(), n.retentionFloor()); cut > n.log.Start().Op {
		n.removeBefore(cut)
	}
}

// retentionTarget is the op the limits alone would delete the segments
// below: the larger of the two cuts, since a segment beyond either limit
// goes.
func (n *Node) retentionTarget() uint64 {
	var cut uint64
	if n.cfg.RetentionBytes > 0 {
		cut = n.log.FirstOpWithin(n.cfg.RetentionBytes)
	}
	if n.cfg.RetentionTime > 0 {
		cut = max(cut, n.log.FirstOpAt(n.now().Add(-n.cfg.RetentionTime).UnixNano()))
	}
	return cut
}

// retentionFloor is the lowest op that must stay (see above); 0 when
// nothing may go.
func (n *Node) retentionFloor() uint64 {
	st := n.rep.State()
	if n.ckpt.prev == 0 || st.Faulty > 0 {
		return 0
	}
	floor := min(n.ckpt.prev, st.Commit, n.log.DurableOp()) + 1
	if n.cfg.RetentionFloor != nil {
		op, ok := n.cfg.RetentionFloor()
		if !ok {
			return 0
		}
		floor = min(floor, op+1)
	}
	if st.IsPrimary {
		floor = min(floor, followerFloor(st.Config, n.cfg.NodeID, n.rep.Now(), followerSilenceTicks, n.rep.LastContact, n.rep.Acked))
	}
	return floor
}

// followerFloor is the first op a follower that is up has not
// acknowledged, the lowest over the followers (of config, but self); one
// not heard from for silence ticks does not count. In the first silence
// ticks after a start every follower counts, heard from or not.
// lastContact and acked are the replica's (vsr.Replica.LastContact,
// Acked).
func followerFloor(config []uint64, self, now, silence uint64, lastContact, acked func(uint64) uint64) uint64 {
	floor := uint64(1<<64 - 1)
	for _, id := range config {
		if id == self {
			continue
		}
		if now > silence && lastContact(id) < now-silence {
			continue // down for long: it gets a state transfer
		}
		floor = min(floor, acked(id)+1)
	}
	return floor
}

// removeBefore deletes the segments below cut and tells the replica its
// log starts later, so that it answers a replica that asks for the
// deleted ops with a state transfer. The replica hears it first: should
// it refuse, nothing is deleted, and in between (the same loop turn)
// nothing reads the log. Loop only.
func (n *Node) removeBefore(cut uint64) {
	start := n.log.RemovalStart(cut)
	if start <= n.log.Start().Op {
		return
	}
	// The base (the op before the new start) is read while it is there.
	prev, err := n.log.Read(start - 1)
	if err != nil {
		n.logger.Warn("log retention skipped: the op before the new start is unreadable",
			slog.Uint64("op", start-1), slog.String("error", err.Error()))
		return
	}
	if err := n.rep.SetLogStart(vsr.BaseOf(&prev)); errors.Is(err, vsr.ErrLogStartHeld) {
		return // a config op that has not started its epoch yet: later
	} else if err != nil {
		// The floor keeps the base committed and durable; a replica
		// that disagrees keeps its segments.
		n.logger.Error("log retention skipped", slog.String("error", err.Error()))
		return
	}
	segments, bytes, err := n.log.RemoveBefore(cut)
	n.m.retentionSegments.Add(uint64(segments))
	n.m.retentionBytes.Add(uint64(bytes))
	if err != nil {
		n.m.storageErrors.record("write", err)
		n.fail(err)
	}
}
