package node

import (
	"fmt"
	"path/filepath"
	"slices"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/transport"
)

// Config configures a node. DefaultConfig documents the defaults.
type Config struct {
	// NodeID is this replica's id: 1..255. TOML: node_id. Default 1.
	NodeID uint64
	// DataDir holds the log and the superblock. TOML: data_dir. Default "./kmb-data".
	DataDir string
	// Replicas maps every replica's node id to its replication address.
	// Empty or this node alone means a single-node cluster. TOML:
	// [cluster] replicas.
	Replicas map[uint64]string
	// Join starts a node with an empty data dir as a new member: it waits
	// for the reconfiguration that adds it (kmbd cluster reconfigure),
	// fetches the log, and only then takes part. Replicas is then the new
	// configuration. Ignored once the data dir holds state. TOML:
	// [cluster] join.
	Join bool
	// ReplicationListen is where the transport accepts peers; empty means
	// this node's address in Replicas. TOML: [cluster] listen.
	ReplicationListen string
	// APIAddr is this node's client API address, advertised to peers so
	// that followers can redirect writes to the leader.
	APIAddr string
	// ReplicationSecurity authenticates the replicas to each other:
	// mutual TLS, a shared secret, or nothing. TOML: cluster.tls_*,
	// cluster.secret_file.
	ReplicationSecurity transport.Security
	// SegmentSizeBytes rolls log segments at this size. TOML:
	// [storage] segment_size_bytes. Default 64 MiB.
	SegmentSizeBytes int64
	// MaxBatchOps bounds how many requests one group commit takes from the
	// queue. TOML: [storage] max_batch_ops. Default 1024, accepted 1..65536.
	MaxBatchOps int
	// QueueDepth is how many write requests may wait for the loop before
	// writers block. TOML: [storage] queue_depth. Default 4096, accepted 1..1048576.
	QueueDepth int
	// TickInterval is the replica's logical tick. An idle leader sends a
	// heartbeat every tick; a follower that hears nothing for 10 to 20
	// ticks starts a view change. Default 50ms.
	TickInterval time.Duration
	// ViewChangeTicks is the follower's base view-change timeout in ticks.
	// Default 10.
	ViewChangeTicks int
	// StallTimeout fails liveness when the loop has not completed an
	// iteration for this long. Default 30s.
	StallTimeout time.Duration
	// CheckpointIntervalBytes is how much log is written between two
	// checkpoints of the projection and the client table (or the last
	// checkpoint's size, when larger, so that checkpoints never write
	// more than the log). A restart replays at most about this much log
	// after the newest checkpoint. TOML: [storage]
	// checkpoint_interval_bytes. Default 64 MiB, accepted 1 MiB .. 1 TiB.
	CheckpointIntervalBytes int64
	// RetentionBytes, when not 0, bounds the local log on disk: the
	// oldest whole segments beyond it are deleted, once nothing needs
	// them (see retention.go: below the older projection checkpoint kept,
	// below the backup floor with a repository, and not needed by a
	// follower that is up). TOML: [storage] retention_bytes. Default 0
	// (off), accepted 0 or segment_size_bytes .. 1 PiB.
	RetentionBytes int64
	// RetentionTime, when not 0, deletes the whole segments whose ops
	// were all committed longer ago than this, on the same conditions.
	// TOML: [storage] retention_time, a duration such as "168h". Default
	// 0 (off), accepted 0 or 1m .. 87600h (10 years).
	RetentionTime time.Duration
	// AllowUnbackedTruncation lets retention run without a backup
	// repository (RetentionFloor nil): the ops deleted then exist only
	// on the other replicas, if at all. TOML: [storage]
	// allow_unbacked_truncation. Default false.
	AllowUnbackedTruncation bool
	// RetentionFloor, when set, reports the last op durably in the
	// backup repository; retention never deletes it nor any op after it.
	// ok false (progress not known yet) holds every segment. Set by kmbd
	// when [backup] repository is; not a TOML key.
	RetentionFloor func() (op uint64, ok bool)
}

// Bounds of RetentionBytes and RetentionTime (when not 0).
const (
	MaxRetentionBytes = 1 << 50
	MinRetentionTime  = time.Minute
	MaxRetentionTime  = 10 * 365 * 24 * time.Hour
)

// retains reports whether local retention is on.
func (c Config) retains() bool { return c.RetentionBytes > 0 || c.RetentionTime > 0 }

// Bounds of CheckpointIntervalBytes.
const (
	DefaultCheckpointIntervalBytes = 64 << 20
	MinCheckpointIntervalBytes     = 1 << 20
	MaxCheckpointIntervalBytes     = 1 << 40
)

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config {
	return Config{
		NodeID:           1,
		DataDir:          "./kmb-data",
		SegmentSizeBytes: 64 << 20,
		MaxBatchOps:      1024,
		QueueDepth:       4096,
		TickInterval:     50 * time.Millisecond,
		ViewChangeTicks:  10,
		StallTimeout:     30 * time.Second,

		CheckpointIntervalBytes: DefaultCheckpointIntervalBytes,
	}
}

// MaxNodeID is the largest accepted node id.
const MaxNodeID = 255

// Validate returns an error naming the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.NodeID < 1 || c.NodeID > MaxNodeID:
		return fmt.Errorf("node_id = %d: accepted 1..%d", c.NodeID, MaxNodeID)
	case c.DataDir == "":
		return fmt.Errorf("data_dir = %q: must name a directory", c.DataDir)
	case c.MaxBatchOps < 1 || c.MaxBatchOps > 65536:
		return fmt.Errorf("storage.max_batch_ops = %d: accepted 1..65536", c.MaxBatchOps)
	case c.QueueDepth < 1 || c.QueueDepth > 1<<20:
		return fmt.Errorf("storage.queue_depth = %d: accepted 1..1048576", c.QueueDepth)
	case c.SegmentSizeBytes < kmblog.MinSegmentSizeBytes || c.SegmentSizeBytes > kmblog.MaxSegmentSizeBytes:
		return fmt.Errorf("storage.segment_size_bytes = %d: accepted %d..%d", c.SegmentSizeBytes, kmblog.MinSegmentSizeBytes, int64(kmblog.MaxSegmentSizeBytes))
	case c.CheckpointIntervalBytes < MinCheckpointIntervalBytes || c.CheckpointIntervalBytes > MaxCheckpointIntervalBytes:
		return fmt.Errorf("storage.checkpoint_interval_bytes = %d: accepted %d (1 MiB)..%d (1 TiB)", c.CheckpointIntervalBytes, MinCheckpointIntervalBytes, int64(MaxCheckpointIntervalBytes))
	case c.RetentionBytes != 0 && (c.RetentionBytes < c.SegmentSizeBytes || c.RetentionBytes > MaxRetentionBytes):
		return fmt.Errorf("storage.retention_bytes = %d: accepted 0 (off) or storage.segment_size_bytes (%d) .. %d (1 PiB)", c.RetentionBytes, c.SegmentSizeBytes, int64(MaxRetentionBytes))
	case c.RetentionTime != 0 && (c.RetentionTime < MinRetentionTime || c.RetentionTime > MaxRetentionTime):
		return fmt.Errorf("storage.retention_time = %v: accepted 0 (off) or %v .. %v (10 years)", c.RetentionTime, MinRetentionTime, MaxRetentionTime)
	case c.retains() && c.RetentionFloor == nil && !c.AllowUnbackedTruncation:
		return fmt.Errorf("storage.retention_bytes = %d, storage.retention_time = %v without backup.repository: deleting log segments no repository holds needs storage.allow_unbacked_truncation = true", c.RetentionBytes, c.RetentionTime)
	case c.TickInterval <= 0:
		return fmt.Errorf("tick interval = %v: must be positive", c.TickInterval)
	case c.ViewChangeTicks < 3:
		return fmt.Errorf("view change ticks = %d: must be >= 3", c.ViewChangeTicks)
	case c.StallTimeout <= c.TickInterval:
		return fmt.Errorf("stall timeout = %v: must exceed the tick interval %v", c.StallTimeout, c.TickInterval)
	}
	if len(c.Replicas) > 0 {
		if _, ok := c.Replicas[c.NodeID]; !ok {
			return fmt.Errorf("cluster.replicas: does not name this node (node_id = %d)", c.NodeID)
		}
	}
	if c.Join && len(c.Replicas) < 2 {
		return fmt.Errorf("cluster.join: a node joins a cluster: cluster.replicas must name the new configuration, this node and at least one other")
	}
	return nil
}

// replicaIDs returns the cluster's node ids in ascending order: the order
// that decides which replica leads which view.
func (c Config) replicaIDs() []uint64 {
	if len(c.Replicas) == 0 {
		return []uint64{c.NodeID}
	}
	ids := make([]uint64, 0, len(c.Replicas))
	for id := range c.Replicas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (c Config) logConfig() kmblog.Config {
	return kmblog.Config{Dir: filepath.Join(c.DataDir, "log"), SegmentSizeBytes: c.SegmentSizeBytes}
}
