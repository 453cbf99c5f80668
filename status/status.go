package status

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// Replica states, as reported in Snapshot.Status and the kmb_replica_status
// state set.
const (
	StateRecovering = "recovering"
	StateNormal     = "normal"
	StateViewChange = "view_change"
	StateShutdown   = "shutting_down"
	// StateRemoved: the cluster's configuration left this replica out;
	// it serves nothing.
	StateRemoved = "removed"
)

// States lists every replica state in a fixed order.
var States = []string{StateRecovering, StateNormal, StateViewChange, StateShutdown, StateRemoved}

// Snapshot is a point-in-time view of one replica. The first eight fields are
// the contract of /status; the nested objects add detail operators use when
// debugging.
type Snapshot struct {
	NodeID          uint64 `json:"node_id"`
	Status          string `json:"status"`
	View            uint64 `json:"view"`
	CommitNumber    uint64 `json:"commit_number"`
	OpNumber        uint64 `json:"op_number"`
	IsLeader        bool   `json:"is_leader"`
	ClusterSize     int    `json:"cluster_size"`
	HealthyReplicas int    `json:"healthy_replicas"`

	// LeaderID is the node id of the current leader, 0 when none is known.
	LeaderID uint64 `json:"leader_id"`
	// CorruptOps counts ops of the local log found corrupt and not yet
	// repaired from the cluster; DiskFull is set while the data dir's
	// disk has no room for writes.
	CorruptOps uint64 `json:"corrupt_ops"`
	DiskFull   bool   `json:"disk_full"`
	// Epoch is the configuration's epoch (0 until the first
	// reconfiguration), Replicas its members in order (the primary of
	// view v is Replicas[v % len]); Reconfiguring is set while a change is
	// proposed and not yet committed.
	Epoch         uint64  `json:"epoch"`
	Replicas      Members `json:"replicas"`
	Reconfiguring bool    `json:"reconfiguring"`
	// ChainHead is the last applied op and its chain hash: the hash of the
	// whole log up to it.
	ChainHead  ChainHead  `json:"chain_head"`
	Log        Log        `json:"log"`
	Projection Projection `json:"projection"`
	// Checkpoint is the newest checkpoint of the projection on disk,
	// zero when there is none.
	Checkpoint Checkpoint `json:"checkpoint"`
	Build      Build      `json:"build"`
	// Backup is the continuous backup task; absent when no repository
	// is configured.
	Backup *Backup `json:"backup,omitempty"`
}

// Replica is a member of the configuration.
type Replica struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"` // replication address
}

// Members is a list of replicas that keeps Snapshot comparable with ==:
// two Members are equal when made by the same NewMembers call, so a
// publisher makes a new one only when the configuration changes. It
// encodes as a JSON array.
type Members struct{ list *[]Replica }

// NewMembers wraps list, which must not be modified afterwards.
func NewMembers(list []Replica) Members { return Members{list: &list} }

// List returns the replicas; the slice must not be modified.
func (m Members) List() []Replica {
	if m.list == nil {
		return nil
	}
	return *m.list
}

// MarshalJSON encodes the list ([] when empty).
func (m Members) MarshalJSON() ([]byte, error) {
	if len(m.List()) == 0 {
		return []byte("[]"), nil
	}
	return json.Marshal(m.List())
}

// UnmarshalJSON decodes a list.
func (m *Members) UnmarshalJSON(b []byte) error {
	var list []Replica
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*m = NewMembers(list)
	return nil
}

// Same reports whether m and o list the same replicas.
func (m Members) Same(o Members) bool { return m == o || slices.Equal(m.List(), o.List()) }

// ChainHead names the head of the log's hash chain.
type ChainHead struct {
	Op   uint64 `json:"op"`
	Hash string `json:"hash"` // hex SHA-256; empty before the first op
}

// Backup is the continuous backup task's state.
type Backup struct {
	// State is running, paused, error, or standby (another node leads
	// and runs the task).
	State              string    `json:"state"`
	Repository         string    `json:"repository"`
	CheckpointOp       uint64    `json:"checkpoint_op"`
	CheckpointPosition uint64    `json:"checkpoint_position"`
	CheckpointTime     time.Time `json:"checkpoint_time"`
	LagEntries         uint64    `json:"lag_entries"`
	Snapshots          int       `json:"snapshots"`
	// Zero times are "0001-01-01T00:00:00Z": never.
	LastSnapshotSuccess time.Time `json:"last_snapshot_success"`
	LastVerifySuccess   time.Time `json:"last_verify_success"`
	SnapshotRunning     bool      `json:"snapshot_running"`
	LastError           string    `json:"last_error,omitempty"`
}

// Log describes the local on-disk log.
type Log struct {
	FirstOp      uint64 `json:"first_op"`
	LastOp       uint64 `json:"last_op"`
	LastPosition uint64 `json:"last_position"`
	SizeBytes    int64  `json:"size_bytes"`
}

// Checkpoint describes a checkpoint of the projection and client table.
type Checkpoint struct {
	Op        uint64    `json:"op"`
	Position  uint64    `json:"position"`
	Time      time.Time `json:"time"` // when it was written
	SizeBytes int64     `json:"size_bytes"`
	// DurationSeconds is how long writing it took; 0 for one found at
	// start.
	DurationSeconds float64 `json:"duration_seconds"`
}

// Projection describes the tenant key/value projection.
type Projection struct {
	AppliedPosition uint64 `json:"applied_position"`
	Lag             uint64 `json:"lag"`
	ActiveTenants   int    `json:"active_tenants"`
}

// Build identifies the running binary.
type Build struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go_version"`
}

// Handler serves GET /status from snapshot, which is called once per request.
func Handler(snapshot func() Snapshot) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snapshot())
	})
}

// Mount registers GET /status on mux.
func Mount(mux *http.ServeMux, snapshot func() Snapshot) {
	mux.Handle("GET /status", Handler(snapshot))
}
