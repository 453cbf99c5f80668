package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/superblock"
	"github.com/kmb-db/kmb/store/vsr"
	"github.com/kmb-db/kmb/store/wire"
)

// commitPersistInterval is how often, at most, the commit number's lower
// bound in the superblock is refreshed outside view changes. A restarted
// replica re-learns the rest from its peers; a single replica from its own
// log.
const commitPersistInterval = time.Second

func (n *Node) loop() error {
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	var recv <-chan wire.Message
	if n.net != nil {
		recv = n.net.Recv()
	}
	n.handleReady()
	n.publishStatus("")
	for {
		select {
		case req := <-n.reqs:
			n.batch = append(n.batch[:0], req)
			n.fill()
			n.propose()
		case m := <-recv:
			n.receive(m)
			// Take whatever else arrived, so one fsync covers it all.
			for more := true; more && len(recv) > 0; {
				select {
				case m := <-recv:
					n.receive(m)
				default:
					more = false
				}
			}
		case <-ticker.C:
			n.rep.Tick()
			n.transferTick()
			n.persistCommitLazily()
			n.probeSpace()
			n.expireWrites()
		case s := <-n.pipe.done:
			n.synced(s)
			n.startSync()
		case r := <-n.ckpt.done:
			n.checkpointDone(r)
		case <-n.stop:
			return n.shutdown()
		}
		n.handleReady()
		if len(n.held) > 0 {
			n.retryHeld()
			n.handleReady()
		}
		n.maybeCheckpoint()
		n.maybeRetain()
		n.m.publish()
		n.publishStatus("")
		n.lastIter.Store(n.now().UnixNano())
		if err := n.fatalErr(); err != nil {
			n.abandonPipeline()
			n.failWaiting(err)
			n.drainRejected(err)
			n.stopCheckpoint()
			<-n.stop
			n.closeAll()
			return err
		}
	}
}

// shutdown answers what is queued and closes everything. Writes still
// waiting for a quorum are answered with ErrShuttingDown: they may commit
// on the other replicas.
func (n *Node) shutdown() error {
	for len(n.reqs) > 0 {
		n.batch = n.batch[:0]
		n.fill()
		n.propose()
		n.handleReady()
	}
	n.drainPipeline()
	n.failWaiting(ErrShuttingDown)
	n.answer(n.held, ErrShuttingDown)
	n.held = n.held[:0]
	n.stopCheckpoint()
	n.abortTransfer("shutting down")
	n.m.publish()
	// The commit number goes to disk with the rest, so that offline
	// readers of the data dir (kmbd audit export --data-dir) know exactly
	// what was committed.
	if st := n.rep.State(); st.Commit > n.hs.Commit && n.fatalErr() == nil {
		hs := n.hs
		hs.Commit = st.Commit
		if err := n.writeHardState(hs); err != nil {
			n.logger.Warn("commit number not persisted at shutdown", slog.String("error", err.Error()))
		}
	}
	return n.closeAll()
}

// expireWrites answers the writes whose deadline passed (Write.Deadline):
// proposed ones with ErrOutcomeUnknown (they may still commit), held ones
// with context.DeadlineExceeded.
func (n *Node) expireWrites() {
	now := n.now().UnixNano()
	for op, req := range n.waiting {
		if req.deadline != 0 && req.deadline <= now {
			endPrepare(req, "deadline passed")
			req.result <- response{err: ErrOutcomeUnknown}
			delete(n.waiting, op)
		}
	}
	kept := n.held[:0]
	for _, req := range n.held {
		if req.deadline != 0 && req.deadline <= now {
			req.result <- response{err: context.DeadlineExceeded}
			continue
		}
		kept = append(kept, req)
	}
	clear(n.held[len(kept):])
	n.held = kept
}

// fill moves waiting requests into the batch, up to MaxBatchOps.
func (n *Node) fill() {
	for len(n.batch) < n.cfg.MaxBatchOps {
		select {
		case req := <-n.reqs:
			n.batch = append(n.batch, req)
		default:
			return
		}
	}
}

// propose turns the batch into ops. All of them reach the log in the next
// Ready, so the group shares one fsync.
func (n *Node) propose() {
	if err := n.fatalErr(); err != nil {
		n.answer(n.batch, err)
		return
	}
	ts := n.now().UnixNano()
	n.proposals = n.proposals[:0]
	accepted := n.batch[:0]
	var configs []*request
	for _, req := range n.batch {
		if req.deadline != 0 && req.deadline <= ts {
			req.result <- response{err: context.DeadlineExceeded} // nothing appended
			continue
		}
		if req.kind == kmblog.KindConfig {
			configs = append(configs, req) // after the writes: nothing follows a config op
			continue
		}
		if req.clientID != 0 {
			if res, done, err := n.clock.check(req.clientID, req.requestID); done || err != nil {
				req.result <- response{res: res, err: err}
				continue
			}
		}
		n.proposals = append(n.proposals, vsr.Proposal{
			Kind: req.kind, Tenant: req.tenant, Entries: req.entries, Principal: req.principal,
			ClientID: req.clientID, RequestID: req.requestID, Timestamp: ts,
		})
		accepted = append(accepted, req)
	}
	defer func() {
		for _, req := range configs {
			n.proposeConfig(req)
		}
	}()
	if len(accepted) == 0 {
		return
	}
	first, err := n.rep.Propose(n.proposals...)
	if err != nil {
		switch {
		case errors.Is(err, vsr.ErrReconfiguring):
			n.holdForEpoch(accepted)
			return
		case errors.Is(err, vsr.ErrNotPrimary):
			err = n.writable()
			if err == nil {
				err = ErrNoLeader
			}
		}
		n.answer(accepted, err)
		return
	}
	for i, req := range accepted {
		req.op = first + uint64(i)
		n.waiting[req.op] = req
		n.startPrepare(req)
	}
}

func (n *Node) answer(reqs []*request, err error) {
	for _, req := range reqs {
		req.result <- response{err: err}
	}
}

func (n *Node) failWaiting(err error) {
	for op, req := range n.waiting {
		endPrepare(req, err.Error())
		req.result <- response{err: err}
		delete(n.waiting, op)
	}
}

// encodings returns the encodings received for ops (from the primary's
// messages), nil when there are none: a backup appends the bytes its
// primary encoded rather than encoding the ops again.
func (n *Node) encodings(ops []*kmblog.Op) [][]byte {
	if len(n.received) == 0 {
		return nil
	}
	enc := n.encBuf[:0]
	for _, op := range ops {
		enc = append(enc, n.received[op])
	}
	n.encBuf = enc
	return enc
}

// handleReady carries out what the replica asked, in the order its contract
// requires: the log (durably), then the hard state, then the messages, then
// applying committed ops.
func (n *Node) handleReady() {
	for n.rep.HasReady() && n.fatalErr() == nil {
		rd := n.rep.Ready()
		// The leader's prepares leave first: the followers' fsyncs run
		// alongside this one (vsr.Ready.Early).
		if len(rd.Early) > 0 {
			n.stampMessages(rd.Early)
			n.sendAll(rd.Early)
		}
		if rd.SyncLater {
			n.takeLater(rd) // the leader's own fsync runs off the loop
			continue
		}
		n.drainPipeline()
		if n.fatalErr() != nil {
			return
		}
		if err := n.persist(rd); err != nil {
			if !errors.Is(err, kmblog.ErrDiskFull) {
				n.fail(err)
				return
			}
			n.appendFailed(rd, err)
			continue
		}
		n.finishReady(rd)
	}
	clear(n.received)
	clear(n.encBuf)
	n.endStepSpans()
}

// finishReady does what rd asks once its log changes and hard state are
// durable: send its messages, apply up to its commit number, Advance.
func (n *Node) finishReady(rd vsr.Ready) {
	n.stampMessages(rd.Messages)
	n.sendAll(rd.Messages)
	n.observe(rd.Events)
	n.applyUpTo(rd.CommitTo)
	// After applying: the config op that starts an epoch commits in the
	// same Ready, and applying it is what teaches this node the new
	// members' addresses.
	n.observeEpochs(rd.Events)
	if rd.StateTransfer != nil {
		n.startTransfer(*rd.StateTransfer)
	}
	n.rep.Advance(rd)
}

// appendFailed handles a Ready whose appends found the disk full: nothing
// of them is on disk, and nothing of the Ready after them was done. It
// forgets them, answers their writers, and goes on serving what is
// durable.
func (n *Node) appendFailed(rd vsr.Ready, err error) {
	n.setDiskFull(err)
	n.rep.AppendFailed(rd)
	n.dropUnapplied(n.rep.State().Op, ErrDiskFull)
	n.observe(rd.Events)
	n.observeEpochs(rd.Events)
}

func (n *Node) persist(rd vsr.Ready) error {
	if len(rd.Repair) > 0 {
		if err := n.log.Repair(rd.Repair); err != nil {
			n.m.storageErrors.record("repair", err)
			return fmt.Errorf("log repair: %w", err)
		}
		n.m.corruptRepair.Add(uint64(len(rd.Repair)))
		n.logger.Warn("corrupt log ops repaired with verified copies from the cluster",
			slog.Uint64("first_op", rd.Repair[0].Op), slog.Uint64("last_op", rd.Repair[len(rd.Repair)-1].Op))
	}
	if rd.Truncate {
		if err := n.log.TruncateAfter(rd.TruncateAfter); err != nil {
			return fmt.Errorf("log truncate: %w", err)
		}
		n.dropUnapplied(rd.TruncateAfter, ErrLostLeadership)
	}
	if len(rd.Append) > 0 {
		if err := n.appendOps(rd.Append); err != nil {
			return err
		}
		// After a failed fsync the page cache may not match the disk; the
		// log refuses further writes and the node needs a restart.
		if err := n.log.Sync(); err != nil {
			return n.fsyncError(err)
		}
	}
	if rd.MustPersist {
		if err := n.writeHardState(rd.HardState); err != nil {
			return err
		}
	}
	return nil
}

// appendOps writes ops to the log (as their primary encoded them, when
// received) and queues them for applying. A full disk is returned as it
// is; any other error is wrapped.
func (n *Node) appendOps(ops []*kmblog.Op) error {
	if err := n.log.AppendEncoded(ops, n.encodings(ops)); err != nil {
		n.m.storageErrors.record("write", err)
		if errors.Is(err, kmblog.ErrDiskFull) {
			return err
		}
		return fmt.Errorf("log append: %w", err)
	}
	n.unapplied = append(n.unapplied, ops...)
	return nil
}

// fsyncError counts a failed fsync of the log and says so.
func (n *Node) fsyncError(err error) error {
	n.m.storageErrors.record("fsync", err)
	return fmt.Errorf("log fsync: %w", err)
}

func (n *Node) writeHardState(hs vsr.HardState) error {
	hs.Commit = max(hs.Commit, n.hs.Commit)
	hs.Commit = min(hs.Commit, n.log.DurableOp()) // not an op still being synced
	if err := n.writeSuperblock(superblock.Superblock{NodeID: n.cfg.NodeID, View: hs.View, LogView: hs.LogView, Commit: hs.Commit, Promised: hs.Promised,
		Epoch: hs.Epoch, Config: hs.Config, ConfigOp: hs.ConfigOp, EarlyView: hs.EarlyView}); err != nil {
		return err
	}
	n.hs, n.hsAt = hs, n.now()
	return nil
}

// persistCommitLazily refreshes the superblock's commit lower bound now and
// then, so a restart replays most of the projection from the local log.
func (n *Node) persistCommitLazily() {
	st := n.rep.State()
	if st.Commit <= n.hs.Commit || n.now().Sub(n.hsAt) < commitPersistInterval || n.fatalErr() != nil {
		return
	}
	hs := n.hs
	hs.Commit = st.Commit
	if err := n.writeHardState(hs); err != nil {
		n.fail(err)
	}
}

// dropUnapplied forgets appended ops after op that a truncation (or a
// full disk) removed, and fails the writes that proposed them with err:
// they never committed.
func (n *Node) dropUnapplied(op uint64, err error) {
	for i, o := range n.unapplied {
		if o.Op > op {
			n.unapplied = n.unapplied[:i]
			break
		}
	}
	for o, req := range n.waiting {
		if o > op {
			endPrepare(req, err.Error())
			req.result <- response{err: err}
			delete(n.waiting, o)
		}
	}
}

// spaceProbeInterval is how often a node whose disk filled up tries a
// small write to learn whether space is back.
const spaceProbeInterval = time.Second

// setDiskFull records that an append found the disk full: writes are
// refused at once (nothing is proposed) until a probe succeeds; reads go
// on; readiness fails, liveness does not.
func (n *Node) setDiskFull(err error) {
	if n.diskFull.Swap(&err) == nil {
		n.logger.Error("disk full: writes are refused until space is freed; reads go on",
			slog.String("data_dir", n.cfg.DataDir), slog.String("error", err.Error()))
		// Published before the writers hear of it: one who asks for the
		// status or readiness next sees the disk full.
		n.publishStatus("")
	}
	n.lastProbe = n.now()
}

// probeSpace, while the disk is full, tries a small write now and then;
// when it succeeds, writes resume.
func (n *Node) probeSpace() {
	if n.diskFull.Load() == nil || n.now().Sub(n.lastProbe) < spaceProbeInterval {
		return
	}
	n.lastProbe = n.now()
	if err := n.log.ProbeSpace(spaceProbeBytes); err != nil {
		n.m.storageErrors.record("write", err)
		return
	}
	n.diskFull.Store(nil)
	n.publishStatus("")
	n.logger.Info("disk space is available again: writes resume", slog.String("data_dir", n.cfg.DataDir))
}

// spaceProbeBytes is the size of the probe write: a few batches' worth,
// so that writes do not fail again at once.
const spaceProbeBytes = 1 << 20

// applyUpTo applies committed ops in order, publishes the status that
// includes them, then answers their writers: a writer that reads /status or
// the metrics after its write returns sees the write.
func (n *Node) applyUpTo(commit uint64) {
	if n.applied >= commit {
		return
	}
	answers := n.answers[:0]
	for n.applied < commit {
		next := n.applied + 1
		var op *kmblog.Op
		if len(n.unapplied) > 0 && n.unapplied[0].Op == next {
			op, n.unapplied = n.unapplied[0], n.unapplied[1:]
		} else {
			o, err := n.log.Read(next)
			if err != nil {
				if errors.Is(err, kmblog.ErrCorrupt) && n.clustered && n.rep.MarkCorrupt(next) {
					break // held for repair; applied once the cluster sent a copy
				}
				n.fail(fmt.Errorf("read committed op %d: %w (see `kmbd log check`)", next, err))
				break
			}
			op = &o
			for len(n.unapplied) > 0 && n.unapplied[0].Op <= next {
				n.unapplied = n.unapplied[1:]
			}
		}
		req, waiting := n.waiting[op.Op]
		mine := waiting && req.clientID == op.ClientID && req.requestID == op.RequestID && req.tenant == op.Tenant
		var span trace.Span
		if mine {
			span = n.commitSpan(req) // covers applying and answering
		}
		res := n.applyOp(op)
		n.m.commits.Add(uint64(len(op.Entries)))
		switch {
		case mine:
			delete(n.waiting, op.Op)
			answers = append(answers, answer{req: req, resp: response{res: res}, span: span})
		case waiting:
			delete(n.waiting, op.Op)
			endPrepare(req, "replaced by another op")
			answers = append(answers, answer{req: req, resp: response{err: ErrLostLeadership}})
		}
	}
	n.m.publish()
	n.publishStatus("")
	for _, a := range answers {
		// The span ends before the writer hears back, so that a writer
		// who looks for its trace finds the commit span complete.
		if a.span != nil {
			a.span.End()
		}
		a.req.result <- a.resp
	}
	clear(answers)
	n.answers = answers[:0]
}

// answer is a writer's response held until the status is published.
type answer struct {
	req  *request
	resp response
	span trace.Span // kmb.consensus.commit, when traced
}

// applyOp applies one committed op to the projection and the client table.
func (n *Node) applyOp(op *kmblog.Op) AppendResult {
	res := AppendResult{FirstPosition: op.FirstPosition, LastPosition: op.LastPosition(), CommitNumber: op.Op}
	// Every applied op's chain hash was checked (at recovery, or when the
	// replica installed it) or computed (the primary's own).
	n.chainHead = op.Chain
	n.appliedTS = op.Timestamp
	if op.ClientID != 0 && !n.clock.record(op.ClientID, op.RequestID, res) {
		// A retry of a request already applied: the log holds it twice,
		// the state machine executes it once.
		n.applied = op.Op
		return n.clock.result(op.ClientID)
	}
	if op.Kind == kmblog.KindConfig {
		n.applyConfig(op)
	}
	n.proj.Apply(op)
	n.applied = op.Op
	return res
}

// observe turns replica events into logs and metrics.
// observeEpochs follows the replica into the epochs it started, and out
// of the cluster when it was removed.
func (n *Node) observeEpochs(events []vsr.Event) {
	for _, e := range events {
		switch e.Kind {
		case vsr.EventEpochStarted:
			n.epochStarted(e)
		case vsr.EventRemoved:
			n.removed(e.Epoch)
		}
	}
}

func (n *Node) observe(events []vsr.Event) {
	for _, e := range events {
		ctx := n.traces.viewChangeCtx // the view change open before this event
		n.traceEvent(e)
		switch e.Kind {
		case vsr.EventBecamePrimary:
			n.clogger.Info("Became leader",
				slog.Uint64("node_id", n.cfg.NodeID),
				slog.Uint64("view", e.View),
				slog.Uint64("commit_index", e.Commit),
				slog.Uint64("op_number", e.Op),
				slog.Int("cluster_size", len(n.ids)))
		case vsr.EventViewChangeStarted:
			ctx = n.traces.viewChangeCtx
			n.clogger.WarnContext(ctx, "view change started",
				slog.Uint64("node_id", n.cfg.NodeID),
				slog.Uint64("view", e.View),
				slog.Uint64("candidate_leader", e.Primary))
			// Writes waiting here may still commit in the new view; their
			// writers learn the outcome only by retrying.
			n.failWaiting(ErrLostLeadership)
		case vsr.EventViewStarted:
			if e.View > 0 {
				n.m.viewChanges.Inc()
			}
			n.clogger.InfoContext(ctx, "view started",
				slog.Uint64("node_id", n.cfg.NodeID),
				slog.Uint64("view", e.View),
				slog.Uint64("leader", e.Primary),
				slog.Uint64("op_number", e.Op),
				slog.Uint64("commit_index", e.Commit))
		case vsr.EventRepairRequested:
			n.m.repairs.Inc()
			if n.clogger.Enabled(context.Background(), slog.LevelDebug) {
				n.clogger.Debug("repair requested", slog.Uint64("view", e.View), slog.Uint64("from_op", e.Op))
			}
		case vsr.EventLogTruncated:
			n.clogger.Warn("uncommitted log suffix replaced", slog.Uint64("view", e.View), slog.Uint64("last_op", e.Op))
		case vsr.EventRecoveryStarted:
			n.clogger.Warn("no replica state on disk: recovering from the cluster", slog.Uint64("node_id", n.cfg.NodeID))
		case vsr.EventClusterFormed:
			n.clogger.Info("cluster formed", slog.Uint64("node_id", n.cfg.NodeID), slog.Int("cluster_size", len(n.ids)))
		case vsr.EventRecovered:
			n.m.stateTransfers.Inc()
			n.clogger.Info("recovered", slog.Uint64("view", e.View), slog.Uint64("op_number", e.Op), slog.Uint64("commit_index", e.Commit))
		case vsr.EventChainMismatch:
			n.clogger.Error("op refused: its chain hash does not follow this replica's log",
				slog.Uint64("op_number", e.Op), slog.Uint64("from", e.Primary), slog.Uint64("view", e.View))
			n.m.chainMismatches.Inc()
		case vsr.EventCorruptOp:
			n.m.storageErrors.record("read", kmblog.ErrCorrupt)
			if err := n.log.MarkFaulty(e.Op); err != nil {
				n.logger.Error("corrupt op could not be held for repair", slog.Uint64("op_number", e.Op), slog.String("error", err.Error()))
			}
			n.logger.Error("log op corrupt on disk: held for repair from the cluster", slog.Uint64("op_number", e.Op))
		case vsr.EventRepaired:
			n.clogger.Info("corrupt ops verified against the cluster's copies", slog.Uint64("first_op", e.Op), slog.Uint64("last_op", e.Commit))
		case vsr.EventRepairReplaced:
			n.clogger.Warn("corrupt ops differ from the leader's, so they were never committed: replaced with the leader's", slog.Uint64("first_op", e.Op))
		case vsr.EventRepairStalled:
			n.clogger.Error("no replica has sent copies of corrupt ops that match this replica's log; it stays not ready",
				slog.Uint64("first_op", e.Op), slog.Uint64("last_op", e.Commit))
		}
	}
}
