package vsr

import (
	"errors"
	"fmt"
	"slices"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// Status is a replica's protocol status.
type Status uint8

// Replica statuses.
const (
	StatusNormal Status = iota + 1
	StatusViewChange
	StatusRecovering
	// StatusJoining: a new member fetching the log, before the epoch that
	// adds it has reached it (Durable.Join).
	StatusJoining
	// StatusRemoved: the current epoch's configuration leaves this
	// replica out; it takes part in nothing.
	StatusRemoved
)

func (s Status) String() string {
	switch s {
	case StatusNormal:
		return "normal"
	case StatusViewChange:
		return "view_change"
	case StatusRecovering:
		return "recovering"
	case StatusJoining:
		return "joining"
	case StatusRemoved:
		return "removed"
	}
	return "unknown"
}

// Storage reads durable ops. Read is only asked for ops the driver has
// persisted (at most the last op of the last Advance'd Ready).
type Storage interface {
	Read(op uint64) (kmblog.Op, error)
}

// HardState is what a replica persists besides its log, before sending any
// message of the Ready that carries it.
type HardState struct {
	View    uint64 // the highest view this replica entered
	LogView uint64 // the last view in which its status was normal
	Commit  uint64 // a lower bound of the commit number (persisted lazily)
	// Promised, when not 0, is a log length this replica may have
	// acknowledged and no longer holds: it replaced part of its log that
	// was corrupt (see Durable.Faulty). Until it holds the current view's
	// log up to Promised again it does not vote in view changes.
	Promised uint64
	// Epoch and Config are the configuration this replica is in: the
	// epoch number and its members' ids, in order (see epoch.go). ConfigOp
	// is a config op in the log that has not started its epoch, or 0.
	Epoch    uint64
	Config   []uint64
	ConfigOp uint64
	// EarlyView is View+1 when this replica, as the primary of View, may
	// have sent prepares before their ops were durable in its log
	// (Ready.Early); 0 otherwise. A restarted primary with it set does
	// not lead View again.
	EarlyView uint64
}

// Run is the ops First..Last.
type Run struct{ First, Last uint64 }

// Durable is what a replica finds on its disk when it starts.
type Durable struct {
	HardState HardState
	// HasState is false when the data directory holds no hard state (a
	// new or wiped replica), which starts the recovery protocol.
	HasState bool
	// LastOp is the last op of the log.
	LastOp uint64
	// Join marks a replica that starts without state to join a cluster
	// that will add it (a reconfiguration): instead of the recovery
	// protocol, it waits to be told of the epoch that includes it.
	Join bool
	// Start is the op before the log's first: ops up to Start.Op are gone
	// (see SetLogStart); zero for a log that starts at op 1.
	Start Base
	// StartEpoch and StartConfig are the configuration recorded with the
	// checkpoint of op Start.Op, when the driver has one: used when later
	// than HardState's, as the log no longer holds its config op.
	StartEpoch  uint64
	StartConfig []uint64
	// Faulty are the runs of ops the log holds but cannot read: corrupt
	// records that a torn write does not explain, each followed by an
	// intact op. The replica keeps its log's length, fetches those ops from
	// the primary and checks them against the chain hash of the op after
	// the run before they are written back (Ready.Repair); until then it
	// neither acknowledges nor votes past them, nor applies them. Sorted
	// and disjoint.
	Faulty []Run
}

// Config configures a replica.
type Config struct {
	// NodeID is this replica's id; it must appear in Replicas.
	NodeID uint64
	// Replicas lists every replica's node id. Its order defines the
	// primary of each view: Replicas[view % len(Replicas)].
	Replicas []uint64
	// HeartbeatTicks: an idle primary sends Commit every this many ticks;
	// view-change and recovery messages are resent at this period.
	// Default 1.
	HeartbeatTicks int
	// ViewChangeTicks: a backup that hears nothing from its primary for
	// between ViewChangeTicks and 2*ViewChangeTicks-1 ticks (randomised)
	// starts a view change; a view change that does not complete within
	// that time moves on to the next view. Default 10.
	ViewChangeTicks int
	// MaxOpsPerMessage bounds the ops of one Ops, StartView or
	// DoViewChange message. Default 512.
	MaxOpsPerMessage int
	// MaxPipeline bounds the uncommitted ops a primary holds; Propose
	// returns ErrBusy beyond it. Default 4096.
	MaxPipeline int
	// Rand returns a uniform integer in [0, n). Required: it is the only
	// source of randomness and must be seeded by the driver.
	Rand func(n int) int
	// Storage reads durable ops. Required.
	Storage Storage
	// Encoded, when set, returns the encoding of an op of a message being
	// stepped as it arrived (kmblog.AppendOp's), or nil when it has none.
	// A backup then checks the op's chain hash over those bytes, which it
	// stores, instead of encoding the op once more. The driver must return
	// exactly the bytes the op was decoded from.
	Encoded func(op *kmblog.Op) []byte
}

func (c *Config) defaults() {
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 1
	}
	if c.ViewChangeTicks == 0 {
		c.ViewChangeTicks = 10
	}
	if c.MaxOpsPerMessage == 0 {
		c.MaxOpsPerMessage = 512
	}
	if c.MaxPipeline == 0 {
		c.MaxPipeline = 4096
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	c.defaults()
	switch {
	case len(c.Replicas) == 0:
		return errors.New("vsr: Replicas is empty")
	case !slices.Contains(c.Replicas, c.NodeID):
		return fmt.Errorf("vsr: NodeID %d is not in Replicas %v", c.NodeID, c.Replicas)
	case c.HeartbeatTicks < 1:
		return fmt.Errorf("vsr: HeartbeatTicks = %d: must be >= 1", c.HeartbeatTicks)
	case c.ViewChangeTicks <= 2*c.HeartbeatTicks:
		return fmt.Errorf("vsr: ViewChangeTicks = %d: must exceed twice HeartbeatTicks (%d)", c.ViewChangeTicks, c.HeartbeatTicks)
	case c.MaxOpsPerMessage < 1, c.MaxPipeline < 1:
		return errors.New("vsr: MaxOpsPerMessage and MaxPipeline must be >= 1")
	case c.Rand == nil:
		return errors.New("vsr: Rand is required")
	case c.Storage == nil:
		return errors.New("vsr: Storage is required")
	}
	seen := map[uint64]bool{}
	for _, id := range c.Replicas {
		if id == 0 || seen[id] {
			return fmt.Errorf("vsr: Replicas %v: ids must be unique and non-zero", c.Replicas)
		}
		seen[id] = true
	}
	return nil
}

// Proposal is a client write (or a system op) the primary turns into an
// op.
type Proposal struct {
	// Kind is the op's kind; a KindData proposal without tenant and
	// entries becomes a KindMarker op.
	Kind      kmblog.Kind
	Tenant    string
	Entries   []kmblog.Entry
	ClientID  uint64
	RequestID uint64
	// Principal is who asked for the op (the authenticated client), kept
	// with it in the log.
	Principal string
	// Timestamp is the driver's clock (Unix ns); the replica makes commit
	// timestamps strictly increasing along the log.
	Timestamp int64
}

// Errors of Propose.
var (
	ErrNotPrimary = errors.New("vsr: not the primary")
	ErrBusy       = errors.New("vsr: too many uncommitted ops")
)

// EventKind tells what happened.
type EventKind uint8

// Event kinds.
const (
	// EventViewChangeStarted: the replica moved to View in status view_change.
	EventViewChangeStarted EventKind = iota + 1
	// EventViewStarted: the replica became normal in View, led by Primary
	// (a completed view change or a newer view learned from its primary).
	EventViewStarted
	// EventBecamePrimary: the replica is the primary of View.
	EventBecamePrimary
	// EventRepairRequested: the replica asked the primary for ops From..
	EventRepairRequested
	// EventLogTruncated: ops after Op were removed from the log.
	EventLogTruncated
	// EventRecoveryStarted: the replica has no state and runs recovery.
	EventRecoveryStarted
	// EventRecovered: recovery completed; the replica is normal.
	EventRecovered
	// EventClusterFormed: a new cluster started in view 0.
	EventClusterFormed
	// EventChainMismatch: an op from Primary (op number Op) does not
	// continue this replica's chain hash, so it was refused.
	EventChainMismatch
	// EventCorruptOp: op Op of the log could not be read, although it was
	// durable: it is corrupt on disk. The replica holds it as faulty; the
	// driver should mark it in the log so that a repair can rewrite it.
	EventCorruptOp
	// EventRepaired: the faulty ops Op..Commit (Commit holds the last)
	// were fetched, verified and handed to the driver in Ready.Repair.
	EventRepaired
	// EventRepairReplaced: the faulty ops from Op on did not match the
	// primary's (this replica's were never committed), so the log was cut
	// before them and the primary's ops taken instead.
	EventRepairReplaced
	// EventRepairStalled: faulty ops from Op on are still not repaired:
	// no replica has sent copies that match this replica's log.
	EventRepairStalled
	// EventEpochStarted: the configuration of Epoch took effect (its
	// config op, at or below Commit, committed).
	EventEpochStarted
	// EventRemoved: Epoch's configuration leaves this replica out.
	EventRemoved
	// EventStateTransferRequested: the log of Primary starts after what
	// this replica holds; it asks the driver for a checkpoint at op Op or
	// later from it.
	EventStateTransferRequested
	// EventStateInstalled: the replica's log now starts after op Op, the
	// checkpoint's.
	EventStateInstalled
)

// Event is something a driver logs or counts.
type Event struct {
	Kind    EventKind
	Epoch   uint64 // the replica's epoch when it emitted the event
	View    uint64
	Primary uint64
	Op      uint64 // EventRepairRequested: first op asked; EventLogTruncated: new last op
	Commit  uint64
}

// Ready is the replica's output; see the package comment for how a driver
// handles it.
type Ready struct {
	// HardState is the state to persist; MustPersist says it changed.
	HardState   HardState
	MustPersist bool
	// Repair holds ops to write back in place of faulty ones, before
	// anything else: verified copies of a faulty run, identical to what
	// the log held (its records fill the damaged bytes exactly).
	Repair []*kmblog.Op
	// Truncate, when set, removes every op after TruncateAfter; it happens
	// before Append.
	Truncate      bool
	TruncateAfter uint64
	// Append holds ops to append, contiguous, after any truncation.
	Append []*kmblog.Op
	// Messages are to be sent once the above is durable.
	Messages []wire.Message
	// Early are the primary's prepares of the ops in Append: they may be
	// sent at once, while the driver makes the Ready durable, so that the
	// backups' fsyncs run alongside the primary's. (The primary counts
	// its own acknowledgement only once its log is durable, and does not
	// lead its view again after a restart: HardState.EarlyView.)
	Early []wire.Message
	// SyncLater says the driver may take further Readys (and Step, Tick
	// and Propose meanwhile) before this one is finished: the primary's
	// own fsync then runs off its loop, alongside everything else. It is
	// set only for a normal primary's Ready that holds nothing but
	// appends, messages, early prepares, a commit number and events (no
	// hard state, truncation, repair or state transfer). The driver must
	// still finish the Readys in the order it took them, each only once
	// its appends and every earlier Ready's are durable: send its
	// Messages, apply up to its CommitTo, then call Advance. A Ready
	// without SyncLater is handled only once every earlier one is
	// finished. Until Advance, the replica counts none of the Ready's ops
	// as durable here (neither for its own acknowledgement nor for reads
	// of the log), and at Advance only those a later step did not cut.
	SyncLater bool
	// CommitTo is the commit number: every op up to it is committed and
	// may be applied, in order, once the above is durable.
	CommitTo uint64
	// StateTransfer, when set, asks the driver to fetch a checkpoint and
	// install it (InstallState); see transfer.go.
	StateTransfer *StateTransfer
	// Events describe what happened, in order.
	Events []Event
}

// State is a snapshot of the replica for status and metrics.
type State struct {
	Status  Status
	View    uint64
	LogView uint64
	Op      uint64
	Commit  uint64
	Primary uint64 // the primary of View
	// IsPrimary: this replica is the primary and normal.
	IsPrimary bool
	// CatchingUp: normal in View, but still verifying its log against the
	// primary's; it does not acknowledge yet.
	CatchingUp bool
	// Faulty is the number of ops of the log awaiting repair, and
	// Promised the log length to reach again (HardState.Promised).
	Faulty   uint64
	Promised uint64
	// Epoch and Config are the current configuration; Reconfiguring says
	// a config op is in the log, not yet committed.
	Epoch         uint64
	Config        []uint64
	Reconfiguring bool
}
