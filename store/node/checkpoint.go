package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kmb-db/kmb/status"
	"github.com/kmb-db/kmb/store/checkpoint"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/projection"
	"github.com/kmb-db/kmb/store/vsr"
)

// thawStep bounds the keys a loop iteration moves back into the
// projection's maps after a checkpoint: a few milliseconds at most.
const thawStep = 2 << 10

// checkpoints is the loop's checkpoint state.
type checkpoints struct {
	running bool
	done    chan checkpointResult
	ctx     context.Context
	cancel  context.CancelFunc
	// base is the log's AppendedBytes when the last checkpoint was
	// taken; replayed the bytes recovery replayed after it. Together they
	// say how much log the next restart would replay.
	base, replayed uint64
	last           status.Checkpoint // the newest checkpoint on disk
	// prev is the op of the checkpoint before last, which Save keeps
	// (checkpoint.Keep) for a restart that finds last corrupt; 0 when
	// there is none. Local retention keeps the log after it.
	prev uint64
}

type checkpointResult struct {
	saved    checkpoint.Saved
	err      error
	duration time.Duration
	snap     *projection.Snapshot
	header   checkpoint.Header
}

func (n *Node) checkpointDir() string { return filepath.Join(n.cfg.DataDir, checkpoint.Dir) }

// maybeCheckpoint drains what a previous checkpoint left to thaw and, once
// enough log was written since the last one, takes a new one: it freezes
// the projection (a pause of microseconds, see projection.Snapshot),
// copies the client table, and writes both on another goroutine. Loop
// only.
//
// "Enough" is storage.checkpoint_interval_bytes, or the size of the last
// checkpoint when that is larger, so that checkpoints never write more
// than the log does.
func (n *Node) maybeCheckpoint() {
	if n.proj.Thaw(thawStep) || n.ckpt.running || n.applied == 0 || n.applied == n.ckpt.last.Op || n.fatalErr() != nil {
		return
	}
	since := n.ckpt.replayed + n.log.AppendedBytes() - n.ckpt.base
	if since < uint64(max(n.cfg.CheckpointIntervalBytes, n.ckpt.last.SizeBytes)) {
		return
	}
	n.startCheckpoint()
}

func (n *Node) startCheckpoint() {
	began := n.now()
	snap, err := n.proj.Snapshot()
	if err != nil {
		return
	}
	clients := make([]checkpoint.Client, 0, len(n.clock.last))
	for id, e := range n.clock.last {
		clients = append(clients, checkpoint.Client{ID: id, Request: e.request,
			FirstPosition: e.result.FirstPosition, LastPosition: e.result.LastPosition, Op: e.result.CommitNumber})
	}
	h := checkpoint.Header{Op: n.applied, Position: snap.AppliedPosition(), Chain: n.chainHead, Timestamp: n.appliedTS}
	// The configuration after the applied op, for a replica that installs
	// this checkpoint by state transfer: known when the current epoch's
	// config op is applied (otherwise the checkpoint does not say).
	if n.clustered && n.hs.Epoch == n.clusterEpoch && n.hs.ConfigOp <= n.applied {
		h.Epoch = n.clusterEpoch
		for _, m := range n.members {
			h.Members = append(h.Members, checkpoint.Member{ID: m.ID, Addr: m.Addr})
		}
	}
	n.m.checkpointPause.ObserveDuration(n.now().Sub(began))
	n.ckpt.running = true
	n.ckpt.base, n.ckpt.replayed = n.log.AppendedBytes(), 0
	ctx, dir, done := n.ckpt.ctx, n.checkpointDir(), n.ckpt.done
	go func() {
		start := time.Now()
		saved, err := checkpoint.Save(ctx, dir, h, func(w *checkpoint.Writer) error {
			return WriteState(w, snap, clients)
		})
		done <- checkpointResult{saved: saved, err: err, duration: time.Since(start), snap: snap, header: h}
	}()
}

// WriteState writes a projection snapshot and client table entries to w,
// in the order the format wants: tenants by id, clients by id.
func WriteState(w *checkpoint.Writer, snap *projection.Snapshot, clients []checkpoint.Client) error {
	for t := range snap.Tenants() {
		if err := w.Tenant(t.ID()); err != nil {
			return err
		}
		for k, v := range t.Keys() {
			if err := w.Key(k, v.Data, v.Position); err != nil {
				return err
			}
		}
		for _, r := range t.Ops() {
			if err := w.Op(checkpoint.OpRef(r)); err != nil {
				return err
			}
		}
	}
	slices.SortFunc(clients, func(a, b checkpoint.Client) int { return cmp.Compare(a.ID, b.ID) })
	for _, c := range clients {
		if err := w.Client(c); err != nil {
			return err
		}
	}
	return nil
}

// checkpointDone ends a checkpoint the writer goroutine finished. Loop
// only.
func (n *Node) checkpointDone(r checkpointResult) {
	n.ckpt.running = false
	r.snap.Release()
	if r.err != nil {
		n.m.checkpoints.failure.Inc()
		if !errors.Is(r.err, context.Canceled) {
			n.logger.Warn("projection checkpoint failed; the next one is tried after as much log again",
				slog.Uint64("op", r.header.Op), slog.String("error", r.err.Error()))
		}
		return
	}
	n.m.checkpoints.success.Inc()
	n.m.checkpointDuration.ObserveDuration(r.duration)
	if n.ckpt.last.Op != 0 && n.ckpt.last.Op < r.header.Op {
		n.ckpt.prev = n.ckpt.last.Op
	}
	n.ckpt.last = status.Checkpoint{Op: r.header.Op, Position: r.header.Position, Time: n.now().UTC(),
		SizeBytes: r.saved.Bytes, DurationSeconds: r.duration.Seconds()}
	n.logger.Info("projection checkpoint written",
		slog.Uint64("op", r.header.Op), slog.Uint64("position", r.header.Position),
		slog.Int64("bytes", r.saved.Bytes), slog.Uint64("tenants", r.saved.Totals.Tenants),
		slog.Uint64("keys", r.saved.Totals.Keys), slog.Uint64("clients", r.saved.Totals.Clients),
		slog.Duration("duration", r.duration))
	// The superblock's commit lower bound never stays below the newest
	// checkpoint (recovery takes the larger of the two anyway).
	if n.hs.Commit < r.header.Op {
		hs := n.hs
		hs.Commit = r.header.Op
		if err := n.writeHardState(hs); err != nil {
			n.fail(err)
		}
	}
}

// stopCheckpoint cancels a checkpoint being written and waits for its
// goroutine, before the node closes its files. Loop only.
func (n *Node) stopCheckpoint() {
	n.ckpt.cancel()
	if n.ckpt.running {
		n.checkpointDone(<-n.ckpt.done)
	}
}

// loadCheckpoint installs the newest checkpoint that belongs to log l:
// one of an op the log holds, or of the op just before its start, whose
// chain hash is that op's in the log. It reports whether it found one.
func (n *Node) loadCheckpoint(l *kmblog.Log) (checkpoint.Loaded, bool) {
	start := l.Start()
	accept := func(h checkpoint.Header) error {
		switch {
		case h.Op == 0:
			return errors.New("it is of op 0")
		case h.Op > l.LastOp():
			return fmt.Errorf("it is of op %d, past the log's last op %d", h.Op, l.LastOp())
		case h.Op+1 < start.Op:
			return fmt.Errorf("it is of op %d, and the log starts at op %d: the ops between are gone", h.Op, start.Op)
		}
		c, err := l.ChainAt(h.Op)
		if err != nil {
			return fmt.Errorf("op %d of the log cannot be read to check it against: %w", h.Op, err)
		}
		if c != h.Chain {
			return fmt.Errorf("its chain hash %x is not that of op %d in the log (%x): it belongs to another history", h.Chain[:8], h.Op, c[:8])
		}
		return nil
	}
	var sink *stateSink
	loaded, err := checkpoint.Load(n.checkpointDir(), n.logger, accept, func() checkpoint.Sink {
		sink = newStateSink(n.proj)
		return sink
	})
	if err != nil {
		if !errors.Is(err, checkpoint.ErrNone) {
			n.logger.Warn("checkpoints unreadable; the log is replayed", slog.String("error", err.Error()))
		}
		return loaded, false
	}
	h := loaded.Header
	n.installState(sink, h)
	n.ckpt.last = status.Checkpoint{Op: h.Op, Position: h.Position, Time: fileTime(loaded.Path), SizeBytes: loaded.Bytes}
	// The one before it on disk, unread: retention only needs its op,
	// and holding at an op too low for it deletes less.
	files, _ := checkpoint.List(n.checkpointDir())
	for _, f := range files {
		if f.Op < h.Op {
			n.ckpt.prev = f.Op
			break
		}
	}
	return loaded, true
}

// stateSink builds a projection and a client table from a checkpoint.
type stateSink struct {
	proj    *projection.Builder
	clients map[uint64]clientEntry
}

func newStateSink(p *projection.Projection) *stateSink {
	return &stateSink{proj: p.NewBuilder(), clients: map[uint64]clientEntry{}}
}

func (s *stateSink) Begin(checkpoint.Header) error { return nil }
func (s *stateSink) Tenant(id string) error        { return s.proj.Tenant(id) }
func (s *stateSink) Key(k string, v []byte, pos uint64) error {
	s.proj.Key(k, projection.Value{Data: v, Position: pos})
	return nil
}
func (s *stateSink) Op(r checkpoint.OpRef) error { s.proj.Op(projection.OpRef(r)); return nil }
func (s *stateSink) Client(c checkpoint.Client) error {
	s.clients[c.ID] = clientEntry{request: c.Request,
		result: AppendResult{FirstPosition: c.FirstPosition, LastPosition: c.LastPosition, CommitNumber: c.Op}}
	return nil
}

// installCheckpoint replaces the node's state machine (projection and
// client table) with the checkpoint read from r, and returns its header:
// for a replica that is sent a checkpoint by its peers, whose log then
// starts at the op after it (log.Reset). The caller owns the state
// machine: the loop, or recovery before it. Nothing changes unless the
// whole checkpoint is valid.
func (n *Node) installCheckpoint(r io.Reader) (checkpoint.Header, error) {
	sink, h, err := n.readState(r)
	if err != nil {
		return h, err
	}
	n.installState(sink, h)
	return h, nil
}

// readState reads a whole checkpoint into a state machine of its own,
// changing nothing of the node's.
func (n *Node) readState(r io.Reader) (*stateSink, checkpoint.Header, error) {
	sink := newStateSink(n.proj)
	h, _, err := checkpoint.Read(r, sink)
	return sink, h, err
}

// installState makes the state read into sink, of the checkpoint of h,
// the node's state machine. A checkpoint being written (or thawed) of the
// state it replaces stops first.
func (n *Node) installState(sink *stateSink, h checkpoint.Header) {
	if n.proj.Thaw(1<<62) || n.ckpt.running {
		n.stopCheckpoint()
		// The next checkpoint needs a context that is not cancelled.
		n.ckpt.ctx, n.ckpt.cancel = context.WithCancel(context.Background())
	}
	sink.proj.Install(h.Op, h.Position)
	n.clock.last = sink.clients
	n.applied, n.chainHead, n.appliedTS = h.Op, h.Chain, h.Timestamp
}

// membersOf is the configuration a checkpoint header records.
func membersOf(h checkpoint.Header) []vsr.Member {
	members := make([]vsr.Member, len(h.Members))
	for i, m := range h.Members {
		members[i] = vsr.Member{ID: m.ID, Addr: m.Addr}
	}
	return members
}

// fileTime is when a file was last written, zero when unknown.
func fileTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime().UTC()
}
