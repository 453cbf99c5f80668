package wire

import kmblog "github.com/kmb-db/kmb/store/log"

// Type is the kind of a replication message.
type Type uint8

// Message types. The numbers are part of the wire format: never reuse one.
const (
	// TypePrepare: primary → backups. Ops holds one or more consecutive ops
	// to append; Commit is the primary's commit number.
	TypePrepare Type = 1
	// TypePrepareOK: backup → primary. Op is the highest op the backup holds
	// durably and contiguously in View; it acknowledges every op up to Op.
	TypePrepareOK Type = 2
	// TypeCommit: primary → backups, sent when idle as a heartbeat. Commit is
	// the primary's commit number, Op its op number.
	TypeCommit Type = 3
	// TypeStartViewChange: any → all. The sender moved to view View.
	// Commit is the sender's commit number.
	TypeStartViewChange Type = 4
	// TypeDoViewChange: any → the new primary. LogView is the last view in
	// which the sender's status was normal, Op its op number, Commit its
	// commit number, Ops the sender's ops after the commit number the new
	// primary announced in its StartViewChange (see the vsr package).
	TypeDoViewChange Type = 5
	// TypeStartView: new primary → backups. Op and Commit are the primary's;
	// Ops holds the primary's ops after Commit.
	TypeStartView Type = 6
	// TypeGetOps: backup → primary, asking for ops from Op on (repair and
	// state transfer).
	TypeGetOps Type = 7
	// TypeOps: primary → backup, the answer to GetOps: consecutive ops, and
	// the primary's Commit.
	TypeOps Type = 8
	// TypeRecovery: a replica that lost or never had its state → all. Nonce
	// identifies the attempt.
	TypeRecovery Type = 9
	// TypeRecoveryResponse: answer to Recovery, echoing Nonce, with the
	// responder's View, LogView, Op, Commit and Flags (FlagNormal, FlagFresh).
	TypeRecoveryResponse Type = 10
	// TypeStateTransfer: the answer to a GetOps for ops before the start
	// of the sender's log: install a checkpoint of the sender's at op Op
	// or later (see the vsr package). Commit is the sender's.
	TypeStateTransfer Type = 11
	// TypeGetCheckpoint: a replica's driver → another's, fetching a
	// checkpoint in chunks (the replicas do not see it). Nonce names the
	// transfer; Op is the lowest checkpoint op the asker can use; LogView
	// the checkpoint op of the transfer's first chunk (0 for the first
	// request); Commit the byte offset wanted.
	TypeGetCheckpoint Type = 12
	// TypeCheckpointChunk: the answer. Nonce and Commit (the offset) echo
	// the request; Op is the checkpoint's op, 0 when the sender has none at
	// or above the asked op (or no longer the one named); LogView is the
	// checkpoint's size in bytes; Data holds the bytes from the offset.
	TypeCheckpointChunk Type = 13
)

// Flags of a message.
const (
	// FlagNormal: the sender's status is normal in View. On a
	// RecoveryResponse, of any replica; on Prepare, Commit and Ops, it
	// marks the normal primary of View, whose log a receiver may follow
	// (other replicas send Commit and Ops too, to a replica of an older
	// epoch, without it).
	FlagNormal uint8 = 1 << 0
	// FlagFresh: the responder has never held state (a new cluster); on
	// a RecoveryResponse only.
	FlagFresh uint8 = 1 << 1
)

// MaxType is the highest defined message type.
const MaxType = TypeCheckpointChunk

// String names the type for logs and metric labels.
func (t Type) String() string {
	switch t {
	case TypePrepare:
		return "prepare"
	case TypePrepareOK:
		return "prepare_ok"
	case TypeCommit:
		return "commit"
	case TypeStartViewChange:
		return "start_view_change"
	case TypeDoViewChange:
		return "do_view_change"
	case TypeStartView:
		return "start_view"
	case TypeGetOps:
		return "get_ops"
	case TypeOps:
		return "ops"
	case TypeRecovery:
		return "recovery"
	case TypeRecoveryResponse:
		return "recovery_response"
	case TypeStateTransfer:
		return "state_transfer"
	case TypeGetCheckpoint:
		return "get_checkpoint"
	case TypeCheckpointChunk:
		return "checkpoint_chunk"
	}
	return "unknown"
}

// Message is one replication message. Which fields are meaningful depends on
// Type (see the constants); the others are zero.
type Message struct {
	Type Type
	From uint64 // sender's node id
	To   uint64 // receiver's node id
	// Epoch is the sender's epoch: the number of the cluster
	// configuration it is in (0 for the first; see the vsr package).
	Epoch   uint64
	View    uint64
	LogView uint64
	Op      uint64
	Commit  uint64
	Nonce   uint64
	Flags   uint8
	// TraceParent carries the W3C trace context of the write that caused
	// the message ("" when none), so followers' spans join the leader's trace.
	TraceParent string
	Ops         []*kmblog.Op
	// Data is the bytes of a checkpoint chunk (at most MaxDataLen); empty
	// for every other type.
	Data []byte
	// Raw holds, for a decoded message, each op's encoding as it arrived
	// (kmblog.AppendOp's, which the log stores): a backup appends it as
	// it is (kmblog.Log.AppendEncoded) instead of encoding the op again.
	// Senders leave it nil; AppendMessage ignores it.
	Raw [][]byte
}
