package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmb-db/kmb/status"
	"github.com/kmb-db/kmb/store/backup"
	"github.com/kmb-db/kmb/store/checkpoint"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/projection"
	"github.com/kmb-db/kmb/store/superblock"
	"github.com/kmb-db/kmb/store/transport"
	"github.com/kmb-db/kmb/store/vsr"
	"github.com/kmb-db/kmb/store/wire"
	"github.com/kmb-db/kmb/telemetry/metric"
	"github.com/kmb-db/kmb/telemetry/spans"
	"go.opentelemetry.io/otel/trace"
)

// Errors the API maps to status codes.
var (
	// ErrNotReady: the node is recovering or catching up. Retry later.
	ErrNotReady = errors.New("replica is not ready: recovering")
	// ErrShuttingDown: the node no longer accepts requests.
	ErrShuttingDown = errors.New("replica is shutting down")
	// ErrNotFound: no such tenant or key.
	ErrNotFound = errors.New("not found")
	// ErrNoLeader: this replica is not the leader and knows of none.
	ErrNoLeader = errors.New("no leader is known: the cluster is electing one")
	// ErrLostLeadership: the write was prepared, but this replica stopped
	// leading before it committed. It may or may not commit: retry with
	// the same client and request ids to find out without duplicating it.
	ErrLostLeadership = errors.New("leadership changed before the write committed; it may or may not be applied")
	// ErrOutcomeUnknown: the caller stopped waiting (its deadline passed)
	// after the write was proposed. It may or may not commit.
	ErrOutcomeUnknown = errors.New("gave up waiting for the commit; the write may or may not be applied")
	// ErrDiskFull: the disk has no room for the write; nothing of it was
	// appended. Writes resume by themselves once space is freed.
	ErrDiskFull = errors.New("disk full: the write was not appended; free space in the data dir")
)

// NotLeaderError redirects a write to the leader.
type NotLeaderError struct {
	LeaderID      uint64
	LeaderAPIAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("not the leader; the leader is node %d at %s", e.LeaderID, e.LeaderAPIAddr)
}

// Deps are the node's collaborators, injected so tests control them.
type Deps struct {
	// Logger returns the logger of a module; discard when nil.
	Logger func(module string) *slog.Logger
	// Metrics is where the node registers its families.
	Metrics *metric.Registry
	// TenantLabelCap bounds kmb_tenant_log_entries_total's tenant_id values. Default 1000.
	TenantLabelCap int
	// Now is the clock that stamps commits; time.Now when nil.
	Now func() time.Time
	// Build is reported in /status.
	Build status.Build
	// Tracer starts the node's spans; nil traces nothing.
	Tracer *spans.Tracer
	// FS is the file system of the log; nil means the operating system's.
	// Tests inject storage faults through it (store/log/faultfs).
	FS kmblog.FS
	// Archive serves the committed ops below the local log's start (a
	// backup repository: backup.Tiered); nil when there is none, and then
	// those ops are not readable.
	Archive Archive
}

// Archive holds committed ops that the local log no longer does.
type Archive interface {
	// ReadOps calls fn with ops first..last in order, or fails.
	ReadOps(ctx context.Context, first, last uint64, fn func(*kmblog.Op) error) error
	// FirstOpAt is where to start reading for ops committed at or after t.
	FirstOpAt(ctx context.Context, t int64) uint64
}

// AppendResult is what a committed write returns.
type AppendResult struct {
	FirstPosition, LastPosition, CommitNumber uint64
}

// Write is one client write: a batch of entries for one tenant (or, from
// the node itself, a system op: see CommitAdmin).
type Write struct {
	// Kind is the op's kind; client writes are kmblog.KindData.
	Kind    kmblog.Kind
	Tenant  string
	Entries []kmblog.Entry
	// Principal is the authenticated client that writes, kept with the
	// entries in the log; empty without authentication.
	Principal string
	// ClientID and RequestID, when ClientID is not 0, make a retried
	// request execute at most once.
	ClientID, RequestID uint64
	// Deadline, when set, bounds the wait: a write not committed by then
	// is answered ErrOutcomeUnknown (it may still commit), one not yet
	// proposed context.DeadlineExceeded (nothing was appended). The loop
	// enforces it at its tick, which spares every write a timer.
	Deadline time.Time
}

// Entry is one entry read back from the log.
type Entry struct {
	Position  uint64
	Key       string
	Value     []byte
	Timestamp time.Time
	Principal string // who wrote it; empty when written without authentication
}

// Node is one replica.
type Node struct {
	cfg      Config
	ids      []uint64
	now      func() time.Time
	build    status.Build
	logger   *slog.Logger // kmb_storage
	clogger  *slog.Logger // kmb_consensus
	tlogger  *slog.Logger // kmb_transport
	registry *metric.Registry
	m        metrics
	tracer   *spans.Tracer
	traces   tracing // loop-owned open spans

	log     *kmblog.Log
	fs      kmblog.FS        // the log's file system; nil for the operating system's
	archive Archive          // ops below the local log; nil without a backup repository
	sb      *superblock.File // open once the superblock exists
	lock    *os.File         // dir/LOCK, held while the node runs
	proj    *projection.Projection
	net     *transport.Transport
	rep     *vsr.Replica
	clock   *clientTable

	// Requests flow through reqs to the loop. closed (under mu) stops new
	// submissions before stop is closed, so the loop can drain reqs knowing
	// nobody sends any more.
	reqs    chan *request
	mu      sync.RWMutex
	closed  bool
	stop    chan struct{}
	done    chan struct{}
	started atomic.Bool

	snap  atomic.Pointer[status.Snapshot] // published by the loop
	fatal atomic.Pointer[error]
	// diskFull holds the error of the last append that found the disk
	// full, until a probe write succeeds (loop-owned writes, read
	// anywhere).
	diskFull  atomic.Pointer[error]
	lastProbe time.Time
	// lastRetention is when local retention last ran (loop-owned).
	lastRetention time.Time
	lastIter      atomic.Int64 // UnixNano of the loop's last completed iteration
	stopping      atomic.Bool
	// running is set once recovery finished and the loop owns n.log and
	// n.rep; other goroutines check it before touching them.
	running atomic.Bool

	// Loop-owned.
	batch      []*request
	proposals  []vsr.Proposal
	waiting    map[uint64]*request // op number → the request that proposed it
	answers    []answer            // reused by applyUpTo
	unapplied  []*kmblog.Op        // appended ops above applied, in order
	applied    uint64
	chainHead  kmblog.Chain // chain hash of op applied
	chainHex   string       // chainHead in hex, for op chainHexOp
	chainHexOp uint64
	hs         vsr.HardState // as persisted
	hsAt       time.Time
	// received maps the ops of the messages stepped since the last Ready
	// to their encodings as they arrived (wire.Message.Raw).
	received  map[*kmblog.Op][]byte
	encBuf    [][]byte
	pipe      pipeline // Readys whose fsync runs off the loop (pipeline.go)
	appliedTS int64    // commit time of op applied
	ckpt      checkpoints
	xfer      *transfer // a state transfer in progress (transfer.go)

	// The configuration (cluster.go), loop-owned after recovery: the
	// members of the last config op applied and of the one before, with
	// addresses; every address known; the epoch of ClusterFile; whether
	// the node runs as a member of a cluster (it has a transport); writes
	// held while a change is pending.
	members      []vsr.Member
	prevMembers  []vsr.Member
	addrs        map[uint64]string
	clusterEpoch uint64
	clustered    bool
	held         []*request
}

type request struct {
	// span is the writer's span context, valid only when sampled.
	span      trace.SpanContext
	prepare   trace.Span // kmb.consensus.prepare on the leader, when sampled
	kind      kmblog.Kind
	tenant    string
	entries   []kmblog.Entry
	principal string
	clientID  uint64
	requestID uint64
	deadline  int64        // UnixNano; 0 for none (Write.Deadline)
	members   []vsr.Member // a configuration change (KindConfig)
	op        uint64
	result    chan response
}

type response struct {
	res AppendResult
	err error
}

var requestPool = sync.Pool{New: func() any { return &request{result: make(chan response, 1)} }}

// New validates cfg and builds a node; Run opens the log and serves.
func New(cfg Config, deps Deps) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		discard := slog.New(slog.DiscardHandler)
		deps.Logger = func(string) *slog.Logger { return discard }
	}
	if deps.Metrics == nil {
		deps.Metrics = metric.NewRegistry()
	}
	if deps.TenantLabelCap == 0 {
		deps.TenantLabelCap = 1000
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	n := &Node{
		cfg:      cfg,
		ids:      cfg.replicaIDs(),
		addrs:    map[uint64]string{},
		now:      deps.Now,
		build:    deps.Build,
		logger:   deps.Logger("kmb_storage"),
		clogger:  deps.Logger("kmb_consensus"),
		tlogger:  deps.Logger("kmb_transport"),
		registry: deps.Metrics,
		reqs:     make(chan *request, cfg.QueueDepth),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		waiting:  map[uint64]*request{},
		received: map[*kmblog.Op][]byte{},
		pipe:     newPipeline(),
		clock:    newClientTable(),
		tracer:   deps.Tracer,
		fs:       deps.FS,
		archive:  deps.Archive,
	}
	if n.tracer == nil {
		n.tracer = spans.Disabled()
	}
	n.traces.init()
	n.ckpt.done = make(chan checkpointResult, 1)
	n.ckpt.ctx, n.ckpt.cancel = context.WithCancel(context.Background())
	n.lastIter.Store(deps.Now().UnixNano())
	n.registerMetrics(deps.Metrics, deps.TenantLabelCap)
	n.proj = projection.New(n.m.projection)
	n.publishStatus(status.StateRecovering)
	return n, nil
}

// Run recovers the log, rebuilds the projection, joins the cluster and runs
// the event loop until Stop. It returns a non-nil error when recovery or
// storage fails.
func (n *Node) Run() error {
	if !n.started.CompareAndSwap(false, true) {
		if n.stopping.Load() {
			return ErrShuttingDown
		}
		return errors.New("node: Run called twice")
	}
	defer close(n.done)
	if err := n.recover(); err != nil {
		n.fail(err)
		n.drainRejected(err)
		n.closeAll()
		return err
	}
	n.running.Store(true)
	if note, err := os.ReadFile(filepath.Join(n.cfg.DataDir, backup.RestoredNote)); err == nil {
		go n.recordRestore(note)
	}
	return n.loop()
}

// recordRestore commits the note of the restore that produced this data
// dir to the log as an admin op, once this node leads, then removes it.
func (n *Node) recordRestore(note []byte) {
	var detail json.RawMessage = note
	if !json.Valid(note) {
		detail, _ = json.Marshal(map[string]string{"note": string(note)})
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		if s := n.snap.Load(); !s.IsLeader || n.Ready() != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		op, err := n.CommitAdmin(ctx, "restore", detail, "")
		cancel()
		if err != nil {
			n.logger.Warn("restore not yet recorded in the log; trying again", slog.String("error", err.Error()))
			continue
		}
		if err := os.Remove(filepath.Join(n.cfg.DataDir, backup.RestoredNote)); err != nil {
			n.logger.Warn("restore recorded, but its note could not be removed", slog.String("error", err.Error()))
		}
		n.logger.Info("restore recorded in the log", slog.Uint64("op", op))
		return
	}
}

func (n *Node) recover() error {
	start := n.now()
	if err := os.MkdirAll(n.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data_dir %q: %w", n.cfg.DataDir, err)
	}
	lock, err := lockDataDir(n.cfg.DataDir)
	if err != nil {
		return err
	}
	n.lock = lock
	if _, err := os.Stat(filepath.Join(n.cfg.DataDir, backup.RestoringMarker)); err == nil {
		return fmt.Errorf("data_dir %q holds a restore that did not finish (%s exists): delete the directory and restore again", n.cfg.DataDir, backup.RestoringMarker)
	}
	// A state transfer a crash interrupted starts again from scratch.
	if err := os.Remove(n.transferPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", transferFile, err)
	}
	l, report, err := kmblog.Open(n.logConfig(), n.logger, &n.m.log)
	if err != nil {
		var ce *kmblog.CorruptionError
		if errors.As(err, &ce) {
			return fmt.Errorf("open log: %w; kmbd does not start on a shortened log: see the damage with `kmbd log check --data-dir %s`, and repair it with `kmbd log repair` (docs/operations.md, \"A corrupt log\")", err, n.cfg.DataDir)
		}
		return fmt.Errorf("open log: %w", err)
	}
	n.log = l
	if len(report.Corrupt) > 0 {
		n.m.storageErrors.add("read", "corrupt", l.FaultyOps())
	}

	sb, hasState, err := n.openSuperblock()
	if err != nil {
		return err
	}
	if hasState && sb.NodeID != n.cfg.NodeID {
		return fmt.Errorf("data_dir %q belongs to node %d, not node_id = %d", n.cfg.DataDir, sb.NodeID, n.cfg.NodeID)
	}
	if err := n.loadMembership(sb.Config); err != nil {
		return err
	}
	if !hasState && len(n.ids) == 1 && l.LastOp() > 0 {
		// A single replica's log needs no peer to vouch for it: everything
		// durable in it was committed.
		sb, hasState = superblock.Superblock{NodeID: n.cfg.NodeID, Commit: l.LastOp()}, true
		if err := n.writeSuperblock(sb); err != nil {
			return err
		}
	}
	hs := vsr.HardState{View: sb.View, LogView: sb.LogView, Commit: sb.Commit, Promised: sb.Promised,
		Epoch: sb.Epoch, Config: sb.Config, ConfigOp: sb.ConfigOp, EarlyView: sb.EarlyView}
	n.hs, n.hsAt = hs, n.now()

	// Start from the newest valid checkpoint: the state after some
	// committed op, so the commit number is at least that op.
	var loaded checkpoint.Loaded
	ckpt := false
	if hasState {
		if loaded, ckpt = n.loadCheckpoint(l); ckpt {
			hs.Commit = max(hs.Commit, loaded.Header.Op)
		}
	}
	// A checkpoint installed by state transfer may be of a later epoch
	// than what the node persisted before it stopped; the log no longer
	// holds that epoch's config op, so the checkpoint's configuration is
	// the one to start in.
	var startEpoch uint64
	var startConfig []uint64
	if h := loaded.Header; ckpt && h.Op+1 == l.Start().Op && h.Epoch > hs.Epoch && len(h.Members) > 0 {
		members := membersOf(h)
		if h.Epoch > n.clusterEpoch {
			if n.adoptMembers(h.Epoch, members); n.fatalErr() != nil {
				return n.fatalErr()
			}
		}
		startEpoch, startConfig = h.Epoch, memberIDsOf(members)
		n.ids = slices.Clone(startConfig)
	}

	// Apply what is known committed, up to the first faulty op; the rest is
	// applied as the cluster confirms it (and repairs it).
	committed := min(hs.Commit, l.LastOp())
	var faulty []vsr.Run
	for _, d := range l.Faulty() {
		faulty = append(faulty, vsr.Run{First: d.FirstOp, Last: d.LastOp})
	}
	if len(faulty) > 0 {
		committed = min(committed, faulty[0].First-1)
	}
	replayed, err := n.replay(l, hasState, committed)
	if err != nil {
		return err
	}
	n.m.projection.TenantEntries.PublishDirty()

	if n.clustered {
		peers := n.peerAddrs()
		n.net, err = transport.New(transport.Config{
			NodeID:   n.cfg.NodeID,
			Listen:   cmp.Or(n.cfg.ReplicationListen, n.addrs[n.cfg.NodeID]),
			Peers:    peers,
			APIAddr:  n.cfg.APIAddr,
			Security: n.cfg.ReplicationSecurity,
		}, n.tlogger, transport.NewMetrics(n.registry, n.cfg.NodeID, slices.Collect(maps.Keys(peers))))
		if err != nil {
			return err
		}
		if err := n.net.Start(); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(uint64(n.now().UnixNano()), n.cfg.NodeID))
	n.rep, err = vsr.New(vsr.Config{
		NodeID:          n.cfg.NodeID,
		Replicas:        n.ids,
		HeartbeatTicks:  1,
		ViewChangeTicks: n.cfg.ViewChangeTicks,
		Rand:            func(k int) int { return rng.IntN(k) },
		Storage:         logStorage{n.log},
		Encoded:         func(op *kmblog.Op) []byte { return n.received[op] },
	}, vsr.Durable{HardState: hs, HasState: hasState, LastOp: l.LastOp(), Faulty: faulty, Join: n.cfg.Join && !hasState,
		Start: logBase(l, loaded.Header), StartEpoch: startEpoch, StartConfig: startConfig})
	if err != nil {
		return err
	}
	if n.rep.State().Status == vsr.StatusRemoved {
		n.removed(n.rep.State().Epoch)
	}
	n.logger.Info("projection rebuilt",
		slog.Int("segments", report.Segments),
		slog.Int("segments_read", report.Segments-report.Indexed),
		slog.Uint64("checkpoint_op", loaded.Header.Op),
		slog.Int64("checkpoint_bytes", loaded.Bytes),
		slog.Uint64("replayed_ops", replayed.ops),
		slog.Uint64("replayed_bytes", replayed.bytes),
		slog.Uint64("last_op", l.LastOp()),
		slog.Uint64("applied_op", n.applied),
		slog.Uint64("applied_position", n.proj.AppliedPosition()),
		slog.Int("tenants", n.proj.ActiveTenants()),
		slog.Bool("has_state", hasState),
		slog.Uint64("corrupt_ops", l.FaultyOps()),
		slog.Duration("duration", n.now().Sub(start)))
	return nil
}

// logBase is the op before the log's first, for the replica: zero for a
// log that starts at op 1. Its commit time is known when the checkpoint
// loaded is of that op (a log reset after a state transfer); otherwise
// the log holds later ops, whose times the replica reads instead.
func logBase(l *kmblog.Log, ckpt checkpoint.Header) vsr.Base {
	s := l.Start()
	if s.Op <= 1 {
		return vsr.Base{}
	}
	b := vsr.Base{Op: s.Op - 1, Chain: s.Prev, LastPosition: s.Position - 1}
	if ckpt.Op == b.Op {
		b.Timestamp = ckpt.Timestamp
	}
	return b
}

// replayed counts what recovery replayed from the log.
type replayed struct{ ops, bytes uint64 }

// replay applies the committed ops after the applied one (the
// checkpoint's, or none) up to committed, checking that their chain
// hashes follow: Open trusts sealed segments from their index, so the
// chain of what is applied is checked here.
func (n *Node) replay(l *kmblog.Log, hasState bool, committed uint64) (replayed, error) {
	var r replayed
	if !hasState || committed <= n.applied {
		return r, nil
	}
	start := l.Start()
	prev := n.chainHead
	var c kmblog.Chainer
	apply := func(op *kmblog.Op) error {
		if c.Op(prev, op) != op.Chain {
			return fmt.Errorf("op %d does not follow the chain hash of op %d: %w", op.Op, op.Op-1, kmblog.ErrCorrupt)
		}
		prev = op.Chain
		r.ops++
		r.bytes += uint64(8 + kmblog.EncodedSize(op))
		n.applyOp(op)
		return nil
	}
	if n.applied+1 < start.Op {
		// No usable checkpoint reaches the log: the ops before it come
		// from the archive, if there is one.
		if n.archive == nil {
			return r, fmt.Errorf("rebuild projection: the log starts at op %d and no checkpoint of an op at or after %d is usable, so ops %d..%d cannot be replayed (a backup repository would serve them)",
				start.Op, start.Op-1, n.applied+1, start.Op-1)
		}
		n.logger.Warn("replaying the ops below the local log from the backup repository", slog.Uint64("from_op", n.applied+1), slog.Uint64("to_op", start.Op-1))
		if err := n.archive.ReadOps(context.Background(), n.applied+1, start.Op-1, apply); err != nil {
			return r, fmt.Errorf("rebuild projection from the backup repository: %w", err)
		}
		if prev != start.Prev {
			return r, fmt.Errorf("rebuild projection: the backup repository's op %d does not lead into the local log: %w", start.Op-1, kmblog.ErrCorrupt)
		}
	}
	if err := l.ScanRange(n.applied+1, committed, apply); err != nil {
		return r, fmt.Errorf("rebuild projection: %w", err)
	}
	n.ckpt.replayed = r.bytes
	return r, nil
}

// logConfig is the log's configuration. A replica of a cluster keeps a
// log with corrupt records whole, for its peers to repair; a single node
// has nobody to repair from, and refuses it.
func (n *Node) logConfig() kmblog.Config {
	c := n.cfg.logConfig()
	_, err := os.Stat(filepath.Join(n.cfg.DataDir, ClusterFile))
	c.TolerateCorruption = len(n.cfg.Replicas) > 1 || err == nil // a member of a cluster
	c.FS = n.fs
	return c
}

// openSuperblock reads the superblock, upgrading a version-1 file and
// rewriting damaged copies, and opens it for writes.
func (n *Node) openSuperblock() (superblock.Superblock, bool, error) {
	sb, ok, rep, err := superblock.Read(n.cfg.DataDir)
	if err != nil || !ok {
		return sb, ok, err
	}
	switch {
	case rep.Version < 2:
		if err := superblock.Write(n.cfg.DataDir, sb); err != nil {
			return sb, ok, fmt.Errorf("upgrade superblock: %w", err)
		}
		rep.Seq = 1
		n.logger.Info("superblock upgraded to format version 3 (four copies)")
	case len(rep.Damaged)+len(rep.Stale) > 0:
		n.logger.Warn("superblock copies damaged or behind; the newest valid copy is used and every copy rewritten",
			slog.Any("damaged_copies", rep.Damaged), slog.Any("stale_copies", rep.Stale), slog.Uint64("sequence", rep.Seq))
		n.m.storageErrors.add("superblock", "corrupt", uint64(len(rep.Damaged)))
	}
	if n.sb, err = superblock.Open(n.cfg.DataDir, rep.Seq); err != nil {
		return sb, ok, err
	}
	if len(rep.Damaged)+len(rep.Stale) > 0 {
		if err := n.sb.Write(sb); err != nil {
			return sb, ok, fmt.Errorf("rewrite superblock: %w", err)
		}
	}
	return sb, ok, nil
}

// writeSuperblock writes the superblock durably: in place once it
// exists, else by creating it.
func (n *Node) writeSuperblock(sb superblock.Superblock) error {
	if n.sb != nil {
		if err := n.sb.Write(sb); err != nil {
			n.m.storageErrors.record("superblock", err)
			return fmt.Errorf("write superblock: %w", err)
		}
		return nil
	}
	if err := superblock.Write(n.cfg.DataDir, sb); err != nil {
		n.m.storageErrors.record("superblock", err)
		return fmt.Errorf("write superblock: %w", err)
	}
	f, err := superblock.Open(n.cfg.DataDir, 1)
	if err != nil {
		return err
	}
	n.sb = f
	return nil
}

// logStorage serves the replica's reads of durable ops.
type logStorage struct{ l *kmblog.Log }

func (s logStorage) Read(op uint64) (kmblog.Op, error) { return s.l.Read(op) }

func (n *Node) fail(err error) {
	if n.fatal.CompareAndSwap(nil, &err) {
		n.logger.Error("storage failure; the node stops serving and needs a restart", slog.String("error", err.Error()))
	}
}

func (n *Node) fatalErr() error {
	if p := n.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

func (n *Node) drainRejected(err error) {
	for {
		select {
		case req := <-n.reqs:
			req.result <- response{err: err}
		default:
			return
		}
	}
}

// closeAll stops the transport and closes the log and the lock.
func (n *Node) closeAll() error {
	if n.net != nil {
		n.net.Close()
	}
	var err error
	if n.log != nil {
		err = n.log.Close()
		n.logger.Info("log closed", slog.Uint64("last_op", n.log.LastOp()), slog.Uint64("last_position", n.log.LastPosition()))
	}
	if n.sb != nil {
		n.sb.Close()
	}
	if n.lock != nil {
		n.lock.Close() // released only after the log is closed
	}
	return err
}

// Stop stops accepting writes, answers what is queued, closes the log and
// waits for Run to return.
func (n *Node) Stop() {
	n.stopping.Store(true)
	n.mu.Lock()
	already := n.closed
	n.closed = true
	n.mu.Unlock()
	if !already {
		close(n.stop)
	}
	// A node stopped before Run began never runs: Run, started later,
	// returns at once, and nothing reads the node's state while it
	// recovers.
	if n.started.CompareAndSwap(false, true) {
		close(n.done)
	} else {
		<-n.done
	}
	n.publishStatus(status.StateShutdown)
}

// Append commits w and returns once it is durable on a quorum and applied
// here. The caller validated the entries; they must not be modified after.
func (n *Node) Append(ctx context.Context, w Write) (AppendResult, error) {
	if err := n.writable(); err != nil {
		return AppendResult{}, err
	}
	req := requestPool.Get().(*request)
	req.kind, req.tenant, req.entries, req.principal = w.Kind, w.Tenant, w.Entries, w.Principal
	req.clientID, req.requestID = w.ClientID, w.RequestID
	if !w.Deadline.IsZero() {
		req.deadline = w.Deadline.UnixNano()
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		req.span = sc
	}

	n.mu.RLock()
	if n.closed {
		n.mu.RUnlock()
		requestPool.Put(req)
		return AppendResult{}, ErrShuttingDown
	}
	select {
	case n.reqs <- req:
	case <-ctx.Done():
		n.mu.RUnlock()
		requestPool.Put(req)
		return AppendResult{}, ctx.Err()
	}
	n.mu.RUnlock()

	select {
	case resp := <-req.result:
		*req = request{result: req.result}
		requestPool.Put(req)
		return resp.res, resp.err
	case <-ctx.Done():
		// The loop still holds the request and will answer into its
		// buffered channel, so it is left to the garbage collector rather
		// than reused. The write may still commit.
		return AppendResult{}, fmt.Errorf("%w: %v", ErrOutcomeUnknown, ctx.Err())
	}
}

func (n *Node) writable() error {
	if err := n.fatalErr(); err != nil {
		return err
	}
	if n.diskFull.Load() != nil {
		return ErrDiskFull
	}
	if n.stopping.Load() {
		return ErrShuttingDown
	}
	s := n.snap.Load()
	switch {
	case s.Status == status.StateRemoved:
		return ErrRemoved
	case s.Status == status.StateRecovering:
		return ErrNotReady
	case s.Status == status.StateShutdown:
		return ErrShuttingDown
	case !s.IsLeader && s.LeaderID != 0 && s.Status == status.StateNormal:
		addr := ""
		if n.net != nil {
			addr = n.net.PeerAPIAddr(s.LeaderID)
		}
		if addr == "" {
			return ErrNoLeader
		}
		return &NotLeaderError{LeaderID: s.LeaderID, LeaderAPIAddr: addr}
	case !s.IsLeader:
		return ErrNoLeader
	}
	return nil
}

func (n *Node) readable() error {
	if err := n.fatalErr(); err != nil {
		return err
	}
	if n.stopping.Load() {
		return ErrShuttingDown
	}
	switch n.snap.Load().Status {
	case status.StateRecovering:
		return ErrNotReady
	case status.StateRemoved:
		return ErrRemoved
	}
	return nil
}

// Get reads the latest value of key applied on this replica.
func (n *Node) Get(tenant, key string) (projection.Value, error) {
	if err := n.readable(); err != nil {
		return projection.Value{}, err
	}
	v, ok := n.proj.Get(tenant, key)
	if !ok {
		return projection.Value{}, ErrNotFound
	}
	return v, nil
}

// Entries reads up to limit of tenant's applied entries with position >=
// from, in order, and the position to continue from.
func (n *Node) Entries(tenant string, from uint64, limit int) ([]Entry, uint64, error) {
	if err := n.readable(); err != nil {
		return nil, from, err
	}
	if !n.proj.HasTenant(tenant) {
		return nil, from, ErrNotFound
	}
	out := make([]Entry, 0, min(limit, 256))
	next := from
	// Each op holds at least one entry, so limit ops always suffice.
	for _, ref := range n.proj.OpsFrom(tenant, from, limit) {
		op, err := n.readOp(ref.Op)
		if err != nil {
			return nil, from, fmt.Errorf("read op %d: %w", ref.Op, err)
		}
		ts := time.Unix(0, op.Timestamp).UTC()
		for i, e := range op.Entries {
			pos := op.FirstPosition + uint64(i)
			if pos < from {
				continue
			}
			if len(out) == limit {
				return out, next, nil
			}
			out = append(out, Entry{Position: pos, Key: e.Key, Value: e.Value, Timestamp: ts, Principal: op.Principal})
			next = pos + 1
		}
	}
	return out, next, nil
}

// readOp reads a committed op: from the local log, or from the archive
// when it is below the log's start.
func (n *Node) readOp(op uint64) (kmblog.Op, error) {
	if n.archive != nil && op < n.log.Start().Op {
		var out kmblog.Op
		err := n.archive.ReadOps(context.Background(), op, op, func(o *kmblog.Op) error { out = *o; return nil })
		return out, err
	}
	return n.log.Read(op)
}

// BackupRole reports whether this node leads a view in normal operation,
// and the last op and position it applied (so committed, and durable
// here).
func (n *Node) BackupRole() (lead bool, op, position uint64) {
	s := n.snap.Load()
	lead = s.IsLeader && s.Status == status.StateNormal && n.fatalErr() == nil
	return lead, n.proj.AppliedOp(), n.proj.AppliedPosition()
}

// ReadFrames reads ops from the local log as it stores them (see
// log.ReadFrames).
func (n *Node) ReadFrames(from, last uint64, maxBytes int, buf []byte) (kmblog.Frames, error) {
	if !n.running.Load() {
		return kmblog.Frames{}, ErrNotReady
	}
	return n.log.ReadFrames(from, last, maxBytes, buf)
}

// FirstRetainedPosition is the oldest position the local log holds.
func (n *Node) FirstRetainedPosition() uint64 {
	if !n.running.Load() {
		return 1
	}
	return n.log.Start().Position
}

// CommitMarker commits an op with no entries and returns its number and
// commit time. Commit times increase strictly along the log, across
// views too, so once the marker is committed every op committed at or
// before its time is at or below it, and every later op has a later
// time: the backup task uses markers to move its checkpoint time while
// no client writes. Only the leader of a view that a quorum accepted can
// commit one.
func (n *Node) CommitMarker(ctx context.Context) (uint64, time.Time, error) {
	res, err := n.Append(ctx, Write{})
	if err != nil {
		return 0, time.Time{}, err
	}
	op, err := n.log.Read(res.CommitNumber)
	if err != nil {
		return 0, time.Time{}, err
	}
	return op.Op, time.Unix(0, op.Timestamp), nil
}

// CommitAdmin commits an administrative action as a system op, so that it
// is replicated, ordered with the writes and in the audit trail: action
// names it (token_reload, backup_pause, ...) and detail, marshalled to
// JSON, describes it; principal is who asked, when known. It returns the
// op's number once committed. Only the leader commits; others return
// their usual redirect or not-ready errors.
func (n *Node) CommitAdmin(ctx context.Context, action string, detail any, principal string) (uint64, error) {
	if action == "" {
		return 0, errors.New("node: admin op without an action")
	}
	value, err := json.Marshal(detail)
	if err != nil {
		return 0, fmt.Errorf("node: admin op %s: %w", action, err)
	}
	res, err := n.Append(ctx, Write{
		Kind:      kmblog.KindAdmin,
		Entries:   []kmblog.Entry{{Key: action, Value: value}},
		Principal: principal,
	})
	return res.CommitNumber, err
}

// sendAll hands messages to the transport.
func (n *Node) sendAll(msgs []wire.Message) {
	if n.net == nil {
		return
	}
	for i := range msgs {
		n.net.Send(msgs[i])
	}
}
