package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmb-db/kmb/status"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/projection"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// Errors the API maps to status codes.
var (
	// ErrNotReady: the node is still recovering. Retry later.
	ErrNotReady = errors.New("replica is not ready: recovering")
	// ErrShuttingDown: the node no longer accepts requests.
	ErrShuttingDown = errors.New("replica is shutting down")
	// ErrNotFound: no such tenant or key.
	ErrNotFound = errors.New("not found")
)

// Deps are the node's collaborators, injected so tests control them.
type Deps struct {
	// Logger returns the logger of a module; slog.Default's discard form when nil.
	Logger func(module string) *slog.Logger
	// Metrics is where the node registers its families; nil records nothing
	// anywhere visible.
	Metrics *metric.Registry
	// TenantLabelCap bounds kmb_tenant_log_entries_total's tenant_id values. Default 1000.
	TenantLabelCap int
	// Now is the clock that stamps commits; time.Now when nil.
	Now func() time.Time
	// Build is reported in /status.
	Build status.Build
}

// AppendResult is what a committed write returns.
type AppendResult struct {
	FirstPosition, LastPosition, CommitNumber uint64
}

// Entry is one entry read back from the log.
type Entry struct {
	Position  uint64
	Key       string
	Value     []byte
	Timestamp time.Time
}

// Node is one replica.
type Node struct {
	cfg     Config
	now     func() time.Time
	build   status.Build
	logger  *slog.Logger // kmb_storage
	clogger *slog.Logger // kmb_consensus
	m       metrics

	log  *kmblog.Log
	lock *os.File // dir/LOCK, held while the node runs
	proj *projection.Projection

	// Requests flow through reqs to the loop. closed (under mu) stops new
	// submissions before stop is closed, so the loop can drain reqs knowing
	// nobody sends any more.
	reqs    chan *request
	mu      sync.RWMutex
	closed  bool
	stop    chan struct{}
	done    chan struct{}
	started atomic.Bool

	state        atomic.Value // string: a status.State*
	fatal        atomic.Pointer[error]
	commitNumber atomic.Uint64
	lastIter     atomic.Int64 // UnixNano of the loop's last completed iteration

	// Loop-owned.
	lastOp, lastPosition uint64
	lastTimestamp        int64
	batch                []*request
	ops                  []*kmblog.Op
}

type request struct {
	tenant  string
	entries []kmblog.Entry
	op      kmblog.Op
	result  chan response
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
		cfg:     cfg,
		now:     deps.Now,
		build:   deps.Build,
		logger:  deps.Logger("kmb_storage"),
		clogger: deps.Logger("kmb_consensus"),
		reqs:    make(chan *request, cfg.QueueDepth),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	n.state.Store(status.StateRecovering)
	n.lastIter.Store(deps.Now().UnixNano())
	n.registerMetrics(deps.Metrics, deps.TenantLabelCap)
	n.proj = projection.New(n.m.projection)
	return n, nil
}

// Run recovers the log, rebuilds the projection and runs the event loop
// until Stop. It returns a non-nil error when recovery or storage fails.
func (n *Node) Run() error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("node: Run called twice")
	}
	defer close(n.done)
	if err := n.recover(); err != nil {
		n.fail(err)
		n.drainRejected(err)
		_ = n.closeLog()
		return err
	}
	n.setState(status.StateNormal)
	n.clogger.Info("Became leader",
		slog.Uint64("node_id", n.cfg.NodeID),
		slog.Uint64("view", 0),
		slog.Uint64("commit_index", n.commitNumber.Load()),
		slog.Int("cluster_size", 1))
	return n.loop()
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
	l, report, err := kmblog.Open(n.cfg.logConfig(), n.logger, &n.m.log)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	n.log = l
	if err := l.Scan(l.FirstOp(), func(op *kmblog.Op) error {
		n.proj.Apply(op)
		return nil
	}); err != nil {
		return fmt.Errorf("rebuild projection: %w", err)
	}
	n.lastOp, n.lastPosition = l.LastOp(), l.LastPosition()
	if n.lastOp > 0 {
		last, err := l.Read(n.lastOp)
		if err != nil {
			return fmt.Errorf("read last op %d: %w", n.lastOp, err)
		}
		n.lastTimestamp = last.Timestamp
	}
	// A single replica committed everything it made durable.
	n.commitNumber.Store(n.lastOp)
	n.m.projection.TenantEntries.PublishDirty()
	n.logger.Info("projection rebuilt",
		slog.Int("segments", report.Segments),
		slog.Uint64("first_op", report.FirstOp),
		slog.Uint64("last_op", report.LastOp),
		slog.Uint64("last_position", n.lastPosition),
		slog.Int("tenants", n.proj.ActiveTenants()),
		slog.Int64("truncated_bytes", report.TruncatedBytes),
		slog.Duration("duration", n.now().Sub(start)))
	return nil
}

func (n *Node) loop() error {
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case req := <-n.reqs:
			n.batch = append(n.batch[:0], req)
			n.fill()
			n.process()
		case <-ticker.C:
		case <-n.stop:
			// No sender is left (closed is set): serve what is queued.
			for len(n.reqs) > 0 {
				n.batch = n.batch[:0]
				n.fill()
				n.process()
			}
			n.m.publish()
			return n.closeLog()
		}
		n.m.publish()
		n.lastIter.Store(n.now().UnixNano())
		if err := n.fatalErr(); err != nil {
			n.drainRejected(err)
			<-n.stop
			_ = n.closeLog()
			return err
		}
	}
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

// process runs one group commit: prepare every op of the batch, make them
// durable with one fsync, commit, apply, answer.
func (n *Node) process() {
	if err := n.fatalErr(); err != nil {
		n.answerAll(err)
		return
	}
	n.prepare()
	if err := n.log.Append(n.ops...); err != nil {
		n.fail(fmt.Errorf("log append: %w", err))
		n.answerAll(n.fatalErr())
		return
	}
	if err := n.log.Sync(); err != nil {
		// After a failed fsync the page cache may not match the disk;
		// the only safe continuation is a restart and recovery.
		n.fail(fmt.Errorf("log fsync: %w", err))
		n.answerAll(n.fatalErr())
		return
	}
	n.commit()
	for _, req := range n.batch {
		n.proj.Apply(&req.op)
		req.result <- response{res: AppendResult{
			FirstPosition: req.op.FirstPosition,
			LastPosition:  req.op.LastPosition(),
			CommitNumber:  req.op.Op,
		}}
	}
}

// prepare assigns op numbers, positions and commit timestamps. Timestamps
// never go backwards, even if the wall clock does.
func (n *Node) prepare() {
	n.ops = n.ops[:0]
	ts := n.now().UnixNano()
	if ts < n.lastTimestamp {
		ts = n.lastTimestamp
	}
	n.lastTimestamp = ts
	for _, req := range n.batch {
		n.lastOp++
		req.op = kmblog.Op{
			Op:            n.lastOp,
			Timestamp:     ts,
			Tenant:        req.tenant,
			FirstPosition: n.lastPosition + 1,
			Entries:       req.entries,
		}
		n.lastPosition += uint64(len(req.entries))
		n.ops = append(n.ops, &req.op)
	}
}

func (n *Node) commit() {
	var entries uint64
	for _, op := range n.ops {
		entries += uint64(len(op.Entries))
	}
	n.m.commits.Add(entries)
	n.commitNumber.Store(n.lastOp)
}

func (n *Node) answerAll(err error) {
	for _, req := range n.batch {
		req.result <- response{err: err}
	}
	// Ops numbered for a batch that never became durable are given back.
	if n.log != nil {
		n.lastOp, n.lastPosition = n.log.LastOp(), n.log.LastPosition()
	}
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

func (n *Node) closeLog() error {
	if n.lock != nil {
		defer n.lock.Close() // released only after the log is closed
	}
	if n.log == nil {
		return nil
	}
	err := n.log.Close()
	n.logger.Info("log closed", slog.Uint64("last_op", n.lastOp), slog.Uint64("last_position", n.lastPosition))
	return err
}

func (n *Node) setState(s string) { n.state.Store(s) }

// Append commits entries for tenant and returns once they are durable and
// applied. The caller validated them; entries must not be modified after.
func (n *Node) Append(ctx context.Context, tenant string, entries []kmblog.Entry) (AppendResult, error) {
	if err := n.writable(); err != nil {
		return AppendResult{}, err
	}
	req := requestPool.Get().(*request)
	req.tenant, req.entries = tenant, entries

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

	// Once queued the write is the loop's: wait for its answer even if the
	// client gives up, so the request is not reused while the loop holds it.
	resp := <-req.result
	req.tenant, req.entries, req.op = "", nil, kmblog.Op{}
	requestPool.Put(req)
	return resp.res, resp.err
}

func (n *Node) writable() error {
	if err := n.fatalErr(); err != nil {
		return err
	}
	switch n.state.Load().(string) {
	case status.StateRecovering:
		return ErrNotReady
	case status.StateShutdown:
		return ErrShuttingDown
	}
	return nil
}

func (n *Node) readable() error { return n.writable() }

// Get reads the latest value of key.
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

// Entries reads up to limit of tenant's entries with position >= from, in
// order, and the position to continue from.
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
		op, err := n.log.Read(ref.Op)
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
			out = append(out, Entry{Position: pos, Key: e.Key, Value: e.Value, Timestamp: ts})
			next = pos + 1
		}
	}
	return out, next, nil
}

// Stop stops accepting writes, commits what is queued, closes the log and
// waits for Run to return.
func (n *Node) Stop() {
	n.mu.Lock()
	already := n.closed
	n.closed = true
	n.mu.Unlock()
	if !already {
		close(n.stop)
	}
	if n.started.Load() {
		<-n.done
	}
	n.setState(status.StateShutdown)
}

// Live fails when the node hit a storage failure or its loop stalled.
func (n *Node) Live() error {
	if err := n.fatalErr(); err != nil {
		return fmt.Errorf("storage failure: %v", err)
	}
	if n.state.Load().(string) == status.StateRecovering {
		return nil // recovery runs outside the loop and may take long
	}
	if stalled := n.now().Sub(time.Unix(0, n.lastIter.Load())); stalled > n.cfg.StallTimeout {
		return fmt.Errorf("event loop stalled for %s", stalled.Round(time.Second))
	}
	return nil
}

// Ready fails unless the node can serve reads and writes.
func (n *Node) Ready() error {
	if err := n.fatalErr(); err != nil {
		return fmt.Errorf("storage failure: %v", err)
	}
	switch s := n.state.Load().(string); s {
	case status.StateNormal:
		return nil
	case status.StateRecovering:
		return errors.New("recovering: replaying the log")
	default:
		return fmt.Errorf("replica status %s", s)
	}
}

func (n *Node) logSize() int64 {
	if n.state.Load().(string) == status.StateRecovering || n.log == nil {
		return 0
	}
	return n.log.SizeBytes()
}

// Status returns the node's status snapshot. It only reads atomics.
func (n *Node) Status() status.Snapshot {
	s := status.Snapshot{
		NodeID:       n.cfg.NodeID,
		Status:       n.state.Load().(string),
		CommitNumber: n.commitNumber.Load(),
		ClusterSize:  1,
		Build:        n.build,
		Projection: status.Projection{
			AppliedPosition: n.proj.AppliedPosition(),
			ActiveTenants:   n.proj.ActiveTenants(),
		},
	}
	if n.fatalErr() != nil {
		s.Status = status.StateShutdown
	}
	if s.Status == status.StateNormal {
		s.IsLeader, s.LeaderID, s.HealthyReplicas = true, n.cfg.NodeID, 1
	}
	if s.Status != status.StateRecovering && n.log != nil {
		s.OpNumber = n.log.LastOp()
		s.Log = status.Log{FirstOp: n.log.FirstOp(), LastOp: s.OpNumber, LastPosition: n.log.LastPosition(), SizeBytes: n.log.SizeBytes()}
		if s.Log.LastPosition > s.Projection.AppliedPosition {
			s.Projection.Lag = s.Log.LastPosition - s.Projection.AppliedPosition
		}
	}
	return s
}
