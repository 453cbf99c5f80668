package node

import (
	"errors"
	"syscall"

	"github.com/kmb-db/kmb/status"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/projection"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// metrics are the node's hot-path instruments. All are owned by the event
// loop: plain adds while it works, one Publish per iteration.
type metrics struct {
	log            kmblog.Metrics
	projection     projection.Metrics
	commits        *metric.LoopCounter
	viewChanges    *metric.LoopCounter
	repairs        *metric.LoopCounter
	stateTransfers *metric.LoopCounter
	corruptRepair  *metric.Counter // kmb_log_corrupt_ops_repaired_total
	// kmb_log_retention_removed_{segments,bytes}_total
	retentionSegments, retentionBytes *metric.Counter
	chainMismatches                   *metric.LoopCounter
	storageErrors                     storageErrors

	checkpoints        struct{ success, failure *metric.Counter }
	checkpointDuration *metric.LoopHistogram
	checkpointPause    *metric.LoopHistogram
	// reconfigurations counts the epochs this replica entered.
	reconfigurations *metric.Counter
}

// storageErrors counts kmb_storage_errors_total by operation and kind,
// every child resolved at start so that each series exists from 0.
type storageErrors struct {
	children map[[2]string]*metric.Counter
}

// Operations and kinds of kmb_storage_errors_total.
var (
	storageOperations = []string{"write", "fsync", "read", "superblock", "repair"}
	storageErrorKinds = []string{"enospc", "eio", "corrupt", "other"}
)

func newStorageErrors(r *metric.Registry) storageErrors {
	v := r.NewCounterVec("kmb_storage_errors_total",
		"Storage errors by operation (write, fsync, read, superblock, repair) and kind (enospc, eio, corrupt, other). A failed fsync stops the node; a full disk fails only the writes that hit it.",
		"operation", "kind")
	s := storageErrors{children: map[[2]string]*metric.Counter{}}
	for _, op := range storageOperations {
		for _, k := range storageErrorKinds {
			s.children[[2]string{op, k}] = v.With(op, k)
		}
	}
	return s
}

// add counts n errors of a kind.
func (s storageErrors) add(operation, kind string, n uint64) {
	if c := s.children[[2]string{operation, kind}]; c != nil && n > 0 {
		c.Add(n)
	}
}

// record counts err, classified by errorKind.
func (s storageErrors) record(operation string, err error) {
	s.add(operation, errorKind(err), 1)
}

// errorKind classifies a storage error for kmb_storage_errors_total.
func errorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, kmblog.ErrDiskFull):
		return "enospc"
	case errors.Is(err, syscall.EIO):
		return "eio"
	case errors.Is(err, kmblog.ErrCorrupt):
		return "corrupt"
	}
	return "other"
}

// publish makes this iteration's counts visible to scrapes.
func (m *metrics) publish() {
	m.log.Entries.Publish()
	m.log.Bytes.Publish()
	m.log.FsyncDuration.Publish()
	m.log.SegmentsRolled.Publish()
	m.commits.Publish()
	m.viewChanges.Publish()
	m.repairs.Publish()
	m.stateTransfers.Publish()
	m.chainMismatches.Publish()
	m.checkpointDuration.Publish()
	m.checkpointPause.Publish()
	m.projection.TenantEntries.PublishDirty()
}

// registerMetrics registers every family the node exports. State gauges are
// functions of the status snapshot, read when Prometheus scrapes; only
// counters and histograms are written on the write path.
func (n *Node) registerMetrics(r *metric.Registry, tenantCap int) {
	n.m = metrics{
		log: kmblog.Metrics{
			Entries:        r.NewLoopCounter("kmb_log_entries_total", "Total log entries written (durably appended)."),
			Bytes:          r.NewLoopCounter("kmb_log_bytes_total", "Total log bytes written, record framing included."),
			FsyncDuration:  r.NewLoopHistogram("kmb_log_fsync_duration_seconds", "Duration of each log fsync; one fsync commits a whole group of writes.", metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}),
			SegmentsRolled: r.NewLoopCounter("kmb_log_segments_rolled_total", "Log segments closed because they reached segment_size_bytes."),
		},
		projection: projection.Metrics{
			TenantEntries: r.NewCappedLoopCounterVec("kmb_tenant_log_entries_total",
				"Entries applied per tenant. tenant_id is capped by telemetry.tenant_label_cap; later tenants are counted under tenant_id=\"_overflow\".",
				"tenant_id", tenantCap),
		},
		commits:        r.NewLoopCounter("kmb_consensus_commits_total", "Total committed entries."),
		viewChanges:    r.NewLoopCounter("kmb_consensus_view_changes_total", "Total view changes this replica took part in (views it became normal in after the first)."),
		repairs:        r.NewLoopCounter("kmb_consensus_repairs_total", "Times this replica asked the leader for missing log ops."),
		stateTransfers: r.NewLoopCounter("kmb_consensus_state_transfers_total", "Times this replica rebuilt its state from the cluster: a recovery after losing its disk, or a peer's checkpoint installed (state transfer)."),
		corruptRepair:  r.NewCounter("kmb_log_corrupt_ops_repaired_total", "Corrupt log ops this replica replaced with verified copies from its peers."),
		retentionSegments: r.NewCounter("kmb_log_retention_removed_segments_total",
			"Log segments deleted by local retention (storage.retention_bytes, storage.retention_time)."),
		retentionBytes: r.NewCounter("kmb_log_retention_removed_bytes_total",
			"Bytes of log segments deleted by local retention."),
		storageErrors:    newStorageErrors(r),
		chainMismatches:  r.NewLoopCounter("kmb_consensus_chain_mismatches_total", "Ops refused because their chain hash does not follow this replica's log."),
		reconfigurations: r.NewCounter("kmb_consensus_reconfigurations_total", "Configuration changes (epochs) this replica entered."),
		checkpointDuration: r.NewLoopHistogram("kmb_projection_checkpoint_duration_seconds",
			"Time to write each checkpoint of the projection and the client table, off the event loop.",
			metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}),
		checkpointPause: r.NewLoopHistogram("kmb_projection_checkpoint_pause_seconds",
			"Time the event loop stopped to take each checkpoint's snapshot.",
			metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}),
	}
	ckpts := r.NewCounterVec("kmb_projection_checkpoints_total", "Checkpoints of the projection written, by result (success or failure).", "result")
	n.m.checkpoints.success, n.m.checkpoints.failure = ckpts.With("success"), ckpts.With("failure")

	gauge := func(name, help string, f func(s *status.Snapshot) float64) {
		r.NewGaugeFunc(name, help, func() float64 { return f(n.snap.Load()) })
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	r.NewGaugeFunc("kmb_log_first_retained_position", "Oldest log position still in the local log; 1 while nothing was truncated.", func() float64 { return float64(n.FirstRetainedPosition()) })
	r.NewGaugeFunc("kmb_log_size_bytes", "Current size of the local log on disk.", func() float64 { return float64(n.logSize()) })
	gauge("kmb_log_corrupt_ops", "Ops of the local log found corrupt and not yet repaired from the peers.", func(s *status.Snapshot) float64 { return float64(s.CorruptOps) })
	gauge("kmb_log_chain_verified_op", "Last op whose chain hash this replica checked (or, as leader, computed) and applied: the head of its verified hash chain.", func(s *status.Snapshot) float64 { return float64(s.ChainHead.Op) })
	gauge("kmb_projection_checkpoint_op", "Op of the newest checkpoint of the projection on disk; 0 when there is none.", func(s *status.Snapshot) float64 { return float64(s.Checkpoint.Op) })
	gauge("kmb_projection_checkpoint_timestamp_seconds", "When the newest checkpoint of the projection was written, Unix seconds; 0 when there is none.", func(s *status.Snapshot) float64 {
		if s.Checkpoint.Time.IsZero() {
			return 0
		}
		return float64(s.Checkpoint.Time.UnixNano()) / 1e9
	})
	gauge("kmb_projection_checkpoint_size_bytes", "Size of the newest checkpoint of the projection.", func(s *status.Snapshot) float64 { return float64(s.Checkpoint.SizeBytes) })
	gauge("kmb_storage_disk_full", "1 while the data dir's disk has no room for writes (they are refused with 507 disk_full until a probe write succeeds), else 0.", func(s *status.Snapshot) float64 { return b2f(s.DiskFull) })
	gauge("kmb_consensus_view", "Current consensus view number.", func(s *status.Snapshot) float64 { return float64(s.View) })
	gauge("kmb_consensus_leader", "Node id of the current leader; 0 when no leader is known.", func(s *status.Snapshot) float64 { return float64(s.LeaderID) })
	gauge("kmb_consensus_has_leader", "1 when this replica knows a leader for its view, else 0.", func(s *status.Snapshot) float64 { return b2f(s.LeaderID != 0) })
	gauge("kmb_consensus_is_leader", "1 when this replica is the leader, else 0.", func(s *status.Snapshot) float64 { return b2f(s.IsLeader) })
	gauge("kmb_consensus_op_number", "Highest op number in this replica's log.", func(s *status.Snapshot) float64 { return float64(s.OpNumber) })
	gauge("kmb_consensus_commit_number", "Highest committed op number known to this replica.", func(s *status.Snapshot) float64 { return float64(s.CommitNumber) })
	gauge("kmb_projection_applied_position", "Position of the last log entry applied to the projection.", func(s *status.Snapshot) float64 { return float64(s.Projection.AppliedPosition) })
	gauge("kmb_projection_lag", "Log positions written but not yet applied to the projection (head - applied).", func(s *status.Snapshot) float64 { return float64(s.Projection.Lag) })
	gauge("kmb_consensus_healthy_replicas", "Replicas this one heard from recently, itself included.", func(s *status.Snapshot) float64 { return float64(s.HealthyReplicas) })
	gauge("kmb_consensus_cluster_size", "Replicas in the cluster's current configuration; 0 on a replica the configuration removed.", func(s *status.Snapshot) float64 { return float64(s.ClusterSize) })
	gauge("kmb_consensus_epoch", "The configuration's epoch: 0 until the first reconfiguration, then one more per change.", func(s *status.Snapshot) float64 { return float64(s.Epoch) })
	gauge("kmb_active_tenants", "Number of tenants holding at least one entry.", func(s *status.Snapshot) float64 { return float64(s.Projection.ActiveTenants) })
	r.NewGaugeVecFunc("kmb_replica_status", "Replica state: 1 for the current state, 0 for the others.", []string{"status"},
		func(emit func(float64, ...string)) {
			cur := n.snap.Load().Status
			for _, st := range status.States {
				emit(b2f(st == cur), st)
			}
		})
}
