package vsr

import (
	"errors"
	"fmt"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// State transfer from a checkpoint, as raft's InstallSnapshot. A log may
// start after op 1: the driver deletes old ops once a checkpoint of the
// state they built is durable (retention), and tells the replica with
// SetLogStart. A replica that asks another for ops below the start of its
// log gets a state_transfer message instead: "install a checkpoint of
// mine at op Op or later". The replica hands the request to its driver
// (Ready.StateTransfer), which fetches a checkpoint from that node, checks
// it, and calls InstallState: the replica's log then starts right after
// the checkpoint's op, whose chain hash the next ops must follow, and it
// fetches those ops as usual.
//
// A checkpoint holds only committed ops' effects, so installing it loses
// nothing the replica vouched for: its log ended below the sender's start,
// and every op there was committed. The checkpoint carries the
// configuration of its epoch, for a replica that joins or missed a change
// whose config op the log no longer holds.

// Base describes the op just before a log's first op: the ops up to it
// are gone (deleted, or never fetched: a checkpoint covers them).
type Base struct {
	Op           uint64
	Chain        kmblog.Chain
	LastPosition uint64
	Timestamp    int64
}

// BaseOf is the Base a log has once the ops up to op are gone.
func BaseOf(op *kmblog.Op) Base {
	return Base{Op: op.Op, Chain: op.Chain, LastPosition: op.LastPosition(), Timestamp: op.Timestamp}
}

// StateTransfer is a request for the driver: fetch a checkpoint at op
// MinOp or later from node From, and install it (InstallState). Epoch is
// From's when it answered.
type StateTransfer struct {
	From  uint64
	MinOp uint64
	Epoch uint64
	View  uint64 // From's view
}

// Snapshot is a checkpoint the driver installs: the state after op
// Base.Op, and the configuration of the last config op at or before it
// (its epoch and members, in order).
type Snapshot struct {
	Base   Base
	Epoch  uint64
	Config []uint64
}

// ErrSnapshotRefused: InstallState cannot take the snapshot now (it is
// older than what the replica holds, or the replica is in a view change).
var ErrSnapshotRefused = errors.New("vsr: snapshot refused")

// ErrLogStartHeld: SetLogStart cannot move the log's start there yet (a
// config op at or before it has not started its epoch here); the driver
// keeps its segments and tries again later.
var ErrLogStartHeld = errors.New("vsr: log start held")

// SetLogStart tells the replica that its log will start after b.Op: the
// driver may then delete the ops up to it. b.Op must be committed and
// durable, and no config op up to it may be pending, nor an epoch
// entered without its hard state durable: a replica enters an epoch from
// its config op, read from the log at a restart too, and one deleted
// first would be lost to it.
func (r *Replica) SetLogStart(b Base) error {
	if b.Op+1 <= r.logStart {
		return nil
	}
	if b.Op > min(r.commit, r.durable) {
		return fmt.Errorf("vsr: SetLogStart(%d): above the commit number %d or the durable log %d", b.Op, r.commit, r.durable)
	}
	for _, p := range r.pending {
		if p.op <= b.Op {
			return fmt.Errorf("%w: config op %d (epoch %d) is not in force yet", ErrLogStartHeld, p.op, p.cfg.Epoch)
		}
	}
	if r.epochDurable < r.epoch {
		return fmt.Errorf("%w: epoch %d is not durable yet", ErrLogStartHeld, r.epoch)
	}
	r.logStart, r.base = b.Op+1, b
	if r.memBase < b.Op {
		r.trimMem()
	}
	return nil
}

// LogStart is the first op the replica's log holds (1 when it was never
// shortened).
func (r *Replica) LogStart() uint64 { return r.logStart }

// sendStateTransfer answers a request for ops below the log's start.
func (r *Replica) sendStateTransfer(to uint64) {
	r.send(wire.Message{Type: wire.TypeStateTransfer, To: to, Op: r.logStart - 1, Commit: r.commit})
}

// onStateTransfer takes a sender's "install a checkpoint of mine" and asks
// the driver for it, at most once a view-change timeout per sender.
func (r *Replica) onStateTransfer(m wire.Message) {
	if m.Op <= r.verified {
		return // stale: the replica holds that far already
	}
	if r.transfer != nil && r.transfer.From == m.From && r.tick-r.transferTick < uint64(r.cfg.ViewChangeTicks) {
		return
	}
	r.transfer, r.transferOut = &StateTransfer{From: m.From, MinOp: m.Op, Epoch: m.Epoch, View: m.View}, true
	r.transferTick = r.tick
	r.lastHeard = r.tick
	r.event(Event{Kind: EventStateTransferRequested, View: m.View, Primary: m.From, Op: m.Op})
}

// InstallState replaces the replica's log with a snapshot. The driver,
// once it returns nil, must make its log start after s.Base.Op, empty,
// and its state machine the snapshot's, before it handles the next Ready.
func (r *Replica) InstallState(s Snapshot) error {
	c := s.Base.Op
	// A checkpoint of an older epoch than its sender's may leave this
	// replica out of a configuration that a later one adds it to, or end
	// before the config op of the sender's epoch: the replica then
	// fetches the rest from the sender, taking part in nothing meanwhile.
	// The epoch to reach: the sender's, or that of an earlier snapshot's
	// sender the replica is still fetching the rest from (a second
	// snapshot may arrive after the first consumed the request).
	target, from := uint64(0), uint64(0)
	if r.joinEpoch > r.epoch {
		target, from = r.joinEpoch, r.joinFrom
	}
	if r.transfer != nil {
		target, from = max(target, r.transfer.Epoch), r.transfer.From
	}
	final := max(s.Epoch, r.epoch) >= target
	leaving := target > r.epoch // its epoch is over
	switch {
	case r.status == StatusRemoved, r.status == StatusViewChange && !leaving:
		return fmt.Errorf("%w: status %s", ErrSnapshotRefused, r.status)
	case c <= r.commit || c <= r.verified:
		return fmt.Errorf("%w: at op %d, below what the replica holds (commit %d)", ErrSnapshotRefused, c, r.commit)
	case len(s.Config) == 0:
		return fmt.Errorf("%w: no configuration", ErrSnapshotRefused)
	}
	// A snapshot of an earlier epoch than the replica's (taken before the
	// config op, which the replica applied) is installed all the same: the
	// state it holds knows no epoch, and the replica keeps its own.
	transferView := r.view
	if r.transfer != nil && s.Epoch == r.transfer.Epoch {
		transferView = r.transfer.View
	}
	r.transfer, r.transferOut = nil, false
	// The log: empty, after c.
	r.appends, r.truncate, r.repairs = nil, false, nil
	r.mem, r.memBase = r.mem[:0], c
	r.op, r.durable, r.verified, r.commit = c, c, c, c
	r.logStart, r.base = c+1, s.Base
	r.lastPosition, r.lastTimestamp, r.lastChain = s.Base.LastPosition, s.Base.Timestamp, s.Base.Chain
	r.prevOp, r.prev = c, s.Base.Chain
	r.faulty, r.candidates, r.replacing = nil, nil, false
	if r.promised <= c {
		r.promised = 0
	}
	r.pending = nil // its config ops were in the log, which now ends at c
	r.event(Event{Kind: EventStateInstalled, View: r.view, Op: c, Commit: c})
	entered := s.Epoch > r.epoch
	if entered {
		// The configuration of a later epoch, whose config op may be
		// gone from every log: the snapshot is committed past it.
		r.prevConfig = r.config
		r.setConfig(s.Config)
		r.epoch = s.Epoch
		r.event(Event{Kind: EventEpochStarted, View: r.view, Op: c, Commit: c})
	}
	if !final {
		r.joinFrom, r.joinEpoch = from, target
		if r.status == StatusRecovering {
			// A replica that lost its state goes on recovering: it reads
			// the later epoch's configuration from the ops after the
			// snapshot (learnConfig), then recovers in that epoch. It
			// must not vote before: ops it acknowledged before losing its
			// disk may be committed, and it no longer holds them.
			r.recoveryTarget, r.learnEpoch, r.lastHeard = 0, target, r.tick
			r.requestEpochOps(from, true)
			return nil
		}
		r.status, r.joining = StatusJoining, true
		r.svc, r.dvc, r.dvcSent, r.haveVCBase, r.catchingUp = nil, nil, false, false, false
		r.recoveryTarget, r.learnEpoch = 0, 0
		r.requestEpochOps(from, true)
		return nil
	}
	if entered {
		if !r.member(r.id) {
			r.status, r.joining = StatusRemoved, false
			r.persistHardState()
			r.event(Event{Kind: EventRemoved, View: r.view})
			return nil
		}
		switch {
		case r.status == StatusRecovering:
			r.startRecovery() // in the configuration it now knows
		default:
			// A new member or one that missed the change: normal in the
			// sender's view, catching up. It claims no view's log (log
			// view 0, below any of the epoch's): its log is a committed
			// prefix, in every view's log, but of no view in particular.
			//
			// It stays catching up until the normal primary of that view
			// says how far its log goes (catchUpUnknown): the sender may
			// have been in a view change, and a replica that claimed the
			// view's log with only the snapshot's prefix would win the
			// next view change over the logs that hold later committed ops.
			r.joining = false
			r.svc, r.dvc, r.dvcSent, r.haveVCBase = nil, nil, false, false
			r.match = map[uint64]uint64{}
			r.lastHeard = r.tick
			r.logView = 0
			if r.primaryOf(transferView) == r.id || transferView < r.view {
				// It cannot lead a view whose log it knows nothing of, nor
				// go back to a view older than one it took part in.
				r.beginViewChange(max(r.view, transferView) + 1)
				return nil
			}
			r.view, r.status = transferView, StatusNormal
			r.catchingUp, r.catchUpTo = true, catchUpUnknown
			r.persistHardState()
		}
		return nil
	}
	switch {
	case r.status == StatusRecovering:
		if r.recoveryTarget != 0 && r.verified >= r.recoveryTarget {
			r.finishRecovery()
			return nil
		}
		if r.recoveryTarget != 0 {
			r.requestRepair(true)
		}
	case r.joining:
		// Of its own (old) epoch: it still waits for the one that adds it.
	default:
		r.persistHardState()
		if r.maybeCaughtUp() {
			r.ack()
		}
		r.requestRepair(true)
	}
	return nil
}
