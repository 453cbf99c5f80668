package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/kmb-db/kmb/status"
	"github.com/kmb-db/kmb/store/checkpoint"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/vsr"
	"github.com/kmb-db/kmb/store/wire"
)

// State transfer, the node's half (the replica's is in the vsr package).
// A replica whose log ends below the start of a peer's retained log is
// told by that peer to install one of its checkpoints instead
// (vsr.Ready.StateTransfer). The node then fetches the peer's newest
// checkpoint file in chunks (get_checkpoint, checkpoint_chunk: messages
// the replicas never see), one chunk in flight at a time, into a file of
// its data dir; checks the whole of it; and installs it: the replica
// first (vsr.Replica.InstallState, which may refuse), then the disk, in
// an order a crash at any point survives:
//
//  1. the checkpoint file takes its final name in the checkpoint dir;
//  2. the log is reset to start after the checkpoint's op (log.Reset);
//  3. the projection and the client table become the checkpoint's.
//
// A crash after 1 leaves a checkpoint of an op past the log's end, which
// a restart ignores; after 2, an empty log that starts after the
// checkpoint, which a restart loads. The replica then fetches the ops
// after the checkpoint as it does any missing ops.
//
// The sender reads its file on its event loop, a chunk per request:
// transferChunkBytes from the page cache is a fraction of a millisecond.
const (
	transferChunkBytes = 1 << 20
	// transferIdleTicks: a transfer with no chunk for this long is given
	// up; the replica asks again when it next finds its log behind.
	transferIdleTicks = 40
	// transferFile is where a checkpoint is received, in the data dir
	// (not the checkpoint dir, whose writer removes temporary files).
	transferFile = "transfer.ckpt.tmp"
)

// transfer is a state transfer in progress.
type transfer struct {
	req   vsr.StateTransfer
	nonce uint64
	// op and size are the checkpoint's, as the first chunk names them;
	// off is how much of it was received.
	op, size, off uint64
	f             *os.File
	idle          int
	began         time.Time
}

func (n *Node) transferPath() string { return filepath.Join(n.cfg.DataDir, transferFile) }

// receive hands a peer's message to the replica, or to the state transfer
// when it is one of the driver's own.
func (n *Node) receive(m wire.Message) {
	switch m.Type {
	case wire.TypeGetCheckpoint:
		n.serveCheckpoint(m)
	case wire.TypeCheckpointChunk:
		n.receiveChunk(m)
	default:
		n.stepTraced(m)
	}
}

// startTransfer begins fetching a checkpoint as the replica asked. A
// transfer from the same peer already running goes on.
func (n *Node) startTransfer(st vsr.StateTransfer) {
	if x := n.xfer; x != nil {
		if x.req.From == st.From {
			x.req = st
			return
		}
		n.abortTransfer("the replica asked another peer")
	}
	f, err := os.OpenFile(n.transferPath(), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		n.m.storageErrors.record("write", err)
		n.logger.Warn("state transfer not started", slog.String("error", err.Error()))
		return
	}
	n.xfer = &transfer{req: st, nonce: rand.Uint64() | 1, f: f, began: n.now()}
	n.clogger.Info("log behind the leader's retained log: fetching a checkpoint",
		slog.Uint64("node_id", n.cfg.NodeID), slog.Uint64("from", st.From), slog.Uint64("min_op", st.MinOp),
		slog.Uint64("op_number", n.rep.State().Op))
	n.requestChunk()
}

func (n *Node) requestChunk() {
	x := n.xfer
	n.sendAll([]wire.Message{{Type: wire.TypeGetCheckpoint, From: n.cfg.NodeID, To: x.req.From,
		Nonce: x.nonce, Op: x.req.MinOp, LogView: x.op, Commit: x.off}})
}

// transferTick gives up a transfer that stopped hearing from its peer.
func (n *Node) transferTick() {
	if x := n.xfer; x != nil {
		if x.idle++; x.idle > transferIdleTicks {
			n.abortTransfer("no answer from the peer")
		}
	}
}

func (n *Node) abortTransfer(reason string) {
	x := n.xfer
	if x == nil {
		return
	}
	n.xfer = nil
	x.f.Close()
	os.Remove(n.transferPath())
	n.clogger.Warn("state transfer given up; the replica asks again when it next finds its log behind",
		slog.Uint64("from", x.req.From), slog.Uint64("checkpoint_op", x.op),
		slog.Uint64("received_bytes", x.off), slog.String("reason", reason))
}

// serveCheckpoint answers a peer's get_checkpoint with a chunk of this
// node's newest checkpoint (or of the one the transfer began with), or
// with op 0 when it has none at or above the op asked.
func (n *Node) serveCheckpoint(m wire.Message) {
	resp := wire.Message{Type: wire.TypeCheckpointChunk, From: n.cfg.NodeID, To: m.From, Nonce: m.Nonce, Commit: m.Commit}
	defer func() { n.sendAll([]wire.Message{resp}) }()
	files, err := checkpoint.List(n.checkpointDir())
	if err != nil || len(files) == 0 {
		return
	}
	file := files[0]
	if m.LogView != 0 {
		file = checkpoint.File{}
		for _, f := range files {
			if f.Op == m.LogView {
				file = f
			}
		}
	}
	if file.Op == 0 || file.Op < m.Op {
		return
	}
	f, err := os.Open(file.Path)
	if err != nil {
		return // pruned meanwhile: the asker starts again
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || uint64(fi.Size()) < m.Commit {
		return
	}
	buf := make([]byte, min(uint64(transferChunkBytes), uint64(fi.Size())-m.Commit))
	if _, err := f.ReadAt(buf, int64(m.Commit)); err != nil && !errors.Is(err, io.EOF) {
		n.m.storageErrors.record("read", err)
		return
	}
	resp.Op, resp.LogView, resp.Data = file.Op, uint64(fi.Size()), buf
}

// receiveChunk writes a chunk of the transfer's checkpoint and asks for
// the next, or installs the checkpoint once it is whole.
func (n *Node) receiveChunk(m wire.Message) {
	x := n.xfer
	if x == nil || m.From != x.req.From || m.Nonce != x.nonce || m.Commit != x.off {
		return // stale, or a duplicate
	}
	switch {
	case m.Op == 0:
		n.abortTransfer("the peer holds no checkpoint at or above the op asked")
		return
	case x.op == 0 && m.Op < x.req.MinOp:
		n.abortTransfer(fmt.Sprintf("the peer's checkpoint is of op %d, below op %d", m.Op, x.req.MinOp))
		return
	case x.op != 0 && (m.Op != x.op || m.LogView != x.size):
		n.abortTransfer("the peer's checkpoint changed")
		return
	case len(m.Data) == 0 || m.Commit+uint64(len(m.Data)) > m.LogView:
		n.abortTransfer("a chunk outside the checkpoint")
		return
	}
	x.op, x.size, x.idle = m.Op, m.LogView, 0
	if _, err := x.f.WriteAt(m.Data, int64(x.off)); err != nil {
		n.m.storageErrors.record("write", err)
		n.abortTransfer("write: " + err.Error())
		return
	}
	x.off += uint64(len(m.Data))
	if x.off < x.size {
		n.requestChunk()
		return
	}
	n.xfer = nil
	if err := n.installTransfer(x); err != nil {
		x.f.Close()
		os.Remove(n.transferPath())
		n.clogger.Warn("checkpoint from a peer not installed; the replica asks again when it next finds its log behind",
			slog.Uint64("from", x.req.From), slog.Uint64("checkpoint_op", x.op), slog.String("error", err.Error()))
	}
}

// installTransfer checks the received checkpoint whole and installs it.
// An error before the replica took it changes nothing.
func (n *Node) installTransfer(x *transfer) error {
	if err := x.f.Sync(); err != nil {
		return err
	}
	if _, err := x.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// Read whole into a state machine of its own: the file is read once,
	// and nothing of the node's changes before the replica takes it.
	state, h, err := n.readState(x.f)
	if err != nil {
		return err
	}
	if h.Op != x.op {
		return fmt.Errorf("the file is of op %d, the peer named op %d", h.Op, x.op)
	}
	members := membersOf(h)
	snap := vsr.Snapshot{Base: vsr.Base{Op: h.Op, Chain: h.Chain, LastPosition: h.Position, Timestamp: h.Timestamp},
		Epoch: h.Epoch, Config: memberIDsOf(members)}
	if len(snap.Config) == 0 {
		// A checkpoint that does not say (version 1): of this epoch.
		snap.Epoch, snap.Config = 0, n.ids
	}
	// Readys a leader took before (vsr.Ready.SyncLater) finish against
	// the log and state they were taken with.
	if n.drainPipeline(); n.fatalErr() != nil {
		return nil
	}
	if err := n.rep.InstallState(snap); err != nil {
		return err
	}
	// The replica holds the checkpoint now: the disk must follow, or the
	// node stops.
	if err := x.f.Close(); err != nil {
		n.fail(fmt.Errorf("install checkpoint of op %d: %w", h.Op, err))
		return nil
	}
	if _, err := checkpoint.Adopt(n.checkpointDir(), n.transferPath(), h.Op); err != nil {
		n.fail(fmt.Errorf("install checkpoint of op %d: %w", h.Op, err))
		return nil
	}
	if err := n.log.Reset(kmblog.Start{Op: h.Op + 1, Position: h.Position + 1, Prev: h.Chain}); err != nil {
		n.m.storageErrors.record("write", err)
		n.fail(fmt.Errorf("reset the log after op %d: %w", h.Op, err))
		return nil
	}
	n.installState(state, h)
	// What was waiting to be applied is in the checkpoint, or was never
	// committed.
	n.dropUnapplied(0, ErrLostLeadership)
	n.m.projection.TenantEntries.PublishDirty()
	// The checkpoints below are of a log that is gone: retention waits
	// for a second one after this (see retentionFloor).
	n.ckpt.last, n.ckpt.prev = status.Checkpoint{Op: h.Op, Position: h.Position, Time: n.now().UTC(), SizeBytes: int64(x.size)}, 0
	n.ckpt.base, n.ckpt.replayed = n.log.AppendedBytes(), 0
	if h.Epoch > n.clusterEpoch && len(members) > 0 {
		n.adoptMembers(h.Epoch, members)
	}
	n.m.stateTransfers.Inc()
	n.clogger.Info("checkpoint from a peer installed; fetching the log after it",
		slog.Uint64("node_id", n.cfg.NodeID), slog.Uint64("from", x.req.From),
		slog.Uint64("checkpoint_op", h.Op), slog.Uint64("epoch", h.Epoch),
		slog.Uint64("bytes", x.size), slog.Duration("duration", n.now().Sub(x.began)))
	return nil
}
