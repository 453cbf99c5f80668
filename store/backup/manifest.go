package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

const (
	// ManifestKey is the manifest's key in the repository.
	ManifestKey = "manifest.json"
	// ManifestVersion is the manifest format this package writes and
	// the only one it reads. Version 2 added snapshots and the task's
	// pause.
	ManifestVersion = 2
)

// ErrCorruptManifest is wrapped by errors about a manifest that fails its
// checksum, does not parse, or describes an impossible repository.
var ErrCorruptManifest = errors.New("backup: corrupt manifest")

// Manifest describes a repository. Its JSON form, field by field, is
// documented in the package documentation.
type Manifest struct {
	Version         int    `json:"version"`
	RepositoryID    string `json:"repository_id"`
	CreatedUnixNano int64  `json:"created_unix_nano"`
	// Generation counts the manifest's writes: 1 for the one Init
	// writes, and one more for each change since.
	Generation uint64        `json:"generation"`
	Segments   []SegmentInfo `json:"segments"`
	Checkpoint Checkpoint    `json:"checkpoint"`
	// Snapshots are the full copies, oldest first.
	Snapshots []SnapshotInfo `json:"snapshots"`
	// TaskPausedUnixNano is when an operator paused the continuous
	// backup task, Unix ns; 0 while it is meant to run. It lives here so
	// that whichever node runs the task next honours it.
	TaskPausedUnixNano int64 `json:"task_paused_unix_nano"`
	// TaskPauseChangedUnixNano is when the task was last paused or
	// resumed, and TaskPauseLoggedUnixNano the change the cluster's log
	// records (as an admin op, for the audit trail) once the node running
	// the task committed it; 0 for none.
	TaskPauseChangedUnixNano int64 `json:"task_pause_changed_unix_nano,omitempty"`
	TaskPauseLoggedUnixNano  int64 `json:"task_pause_logged_unix_nano,omitempty"`
	// Last successes, Unix ns; 0 for never. They only move forwards.
	LastSnapshotSuccessUnixNano int64 `json:"last_snapshot_success_unix_nano"`
	LastVerifySuccessUnixNano   int64 `json:"last_verify_success_unix_nano"`
	// Checksum is the hex SHA-256 of the manifest's canonical content.
	Checksum string `json:"checksum,omitempty"`
}

// SegmentInfo is the manifest's entry for one segment object.
type SegmentInfo struct {
	Name                   string `json:"name"` // the object's key, SegmentKey(FirstOp, LastOp)
	FirstOp                uint64 `json:"first_op"`
	LastOp                 uint64 `json:"last_op"`
	FirstPosition          uint64 `json:"first_position"` // of the first op
	LastPosition           uint64 `json:"last_position"`  // of the last op's last entry
	FirstTimestampUnixNano int64  `json:"first_timestamp_unix_nano"`
	LastTimestampUnixNano  int64  `json:"last_timestamp_unix_nano"`
	Entries                uint64 `json:"entries"`
	RawBytes               uint64 `json:"raw_bytes"`    // decompressed: the records with their headers
	StoredBytes            uint64 `json:"stored_bytes"` // the object's size
	SHA256                 string `json:"sha256"`       // hex SHA-256 of the object
}

// SnapshotInfo is the manifest's entry for one snapshot: a full copy of
// the log, ops 1..Op, as segment-format parts under its ID.
type SnapshotInfo struct {
	ID                string `json:"id"` // SnapshotID(Op); its parts' keys start with ID + "/"
	Op                uint64 `json:"op"`
	Position          uint64 `json:"position"`            // the last op's last position
	TimestampUnixNano int64  `json:"timestamp_unix_nano"` // the last op's commit time
	CreatedUnixNano   int64  `json:"created_unix_nano"`   // when it was taken
	// Parts hold ops 1..Op, contiguous, in order; their names are
	// PartKey(Op, first, last).
	Parts []SegmentInfo `json:"parts"`
}

// Entries is the number of entries the snapshot holds.
func (s *SnapshotInfo) Entries() uint64 { return s.Position }

// StoredBytes is the size of the snapshot's objects.
func (s *SnapshotInfo) StoredBytes() uint64 {
	var n uint64
	for _, p := range s.Parts {
		n += p.StoredBytes
	}
	return n
}

// Checkpoint says how much of the log the repository holds: every op up
// to Op (positions up to Position), and every op committed at or before
// TimestampUnixNano. The zero Checkpoint is an empty repository.
type Checkpoint struct {
	Op                uint64 `json:"op"`
	Position          uint64 `json:"position"`
	TimestampUnixNano int64  `json:"timestamp_unix_nano"`
}

// Time is the checkpoint's commit time, the zero Time when none.
func (c Checkpoint) Time() time.Time { return unixNanoTime(c.TimestampUnixNano) }

func unixNanoTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// clone returns a deep copy of m.
func (m *Manifest) clone() Manifest {
	c := *m
	c.Segments = slices.Clone(m.Segments)
	if c.Segments == nil {
		c.Segments = []SegmentInfo{}
	}
	c.Snapshots = make([]SnapshotInfo, len(m.Snapshots))
	for i, s := range m.Snapshots {
		s.Parts = slices.Clone(s.Parts)
		c.Snapshots[i] = s
	}
	return c
}

// canonical is the content the checksum covers: the compact JSON of m
// without its checksum member.
func (m *Manifest) canonical() []byte {
	c := *m
	c.Checksum = ""
	if c.Segments == nil {
		c.Segments = []SegmentInfo{}
	}
	if c.Snapshots == nil {
		c.Snapshots = []SnapshotInfo{}
	}
	b, err := json.Marshal(&c)
	if err != nil {
		panic(err) // plain structs of strings and integers always marshal
	}
	return b
}

func (m *Manifest) checksum() string {
	sum := sha256.Sum256(m.canonical())
	return hex.EncodeToString(sum[:])
}

// encodeManifest returns the stored form of m: its canonical content
// with the checksum added, indented for people who read it.
func encodeManifest(m *Manifest) []byte {
	c := m.clone()
	c.Checksum = c.checksum()
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// parseManifest decodes a stored manifest and checks its version and
// checksum, then its consistency (see problems). Every error wraps
// ErrCorruptManifest.
func parseManifest(b []byte) (Manifest, error) {
	m, err := decodeManifest(b)
	if err != nil {
		return Manifest{}, err
	}
	if ps := m.problems(); len(ps) > 0 {
		return Manifest{}, fmt.Errorf("%w: %s: %s", ErrCorruptManifest, ManifestKey, joinProblems(ps))
	}
	return m, nil
}

// decodeManifest decodes a stored manifest and checks its version and
// checksum, but not its consistency. The result has no Checksum.
func decodeManifest(b []byte) (Manifest, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s is not valid JSON: %v", ErrCorruptManifest, ManifestKey, err)
	}
	if head.Version == nil {
		return Manifest{}, fmt.Errorf("%w: %s has no version", ErrCorruptManifest, ManifestKey)
	}
	if *head.Version != ManifestVersion {
		return Manifest{}, fmt.Errorf("%w: %s has version %d; this kmbd reads version %d", ErrCorruptManifest, ManifestKey, *head.Version, ManifestVersion)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %v", ErrCorruptManifest, ManifestKey, err)
	}
	if dec.More() {
		return Manifest{}, fmt.Errorf("%w: %s: data after the manifest object", ErrCorruptManifest, ManifestKey)
	}
	if m.Checksum == "" {
		return Manifest{}, fmt.Errorf("%w: %s has no checksum", ErrCorruptManifest, ManifestKey)
	}
	if got := m.checksum(); got != m.Checksum {
		return Manifest{}, fmt.Errorf("%w: %s checksum mismatch (stored %s, computed %s)", ErrCorruptManifest, ManifestKey, m.Checksum, got)
	}
	if m.Segments == nil {
		m.Segments = []SegmentInfo{}
	}
	if m.Snapshots == nil {
		m.Snapshots = []SnapshotInfo{}
	}
	m.Checksum = ""
	return m, nil
}

// problems describes every inconsistency of m: snapshots whose parts are
// not contiguous from op 1 and position 1 or pass the checkpoint;
// segments that are not contiguous, or that start after op 1 with no
// snapshot to bridge the gap; entries that contradict themselves; and a
// checkpoint that is not where the log ends (the last segment, else the
// newest snapshot).
func (m *Manifest) problems() []string {
	var ps []string
	add := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	if m.RepositoryID == "" {
		add("no repository id")
	}
	cp := m.Checkpoint
	var endOp, endPos uint64
	var prevSnap uint64
	for i, s := range m.Snapshots {
		name := s.ID
		if name == "" {
			name = fmt.Sprintf("snapshot #%d", i+1)
		}
		if s.Op == 0 || s.ID != SnapshotID(s.Op) {
			add("%s: id does not match its op %d", name, s.Op)
		}
		if i > 0 && s.Op <= prevSnap {
			add("%s: not after the previous snapshot (op %d)", name, prevSnap)
		}
		prevSnap = s.Op
		if s.Op > cp.Op {
			add("%s: op %d is past the checkpoint (op %d)", name, s.Op, cp.Op)
		}
		if len(s.Parts) == 0 {
			add("%s: no parts", name)
			continue
		}
		nextOp, nextPos, _ := runProblems(add, s.Parts, 1, 1, func(first, last uint64) string { return PartKey(s.Op, first, last) })
		if nextOp-1 != s.Op || nextPos-1 != s.Position {
			add("%s: parts end at op %d position %d, the snapshot says op %d position %d", name, nextOp-1, nextPos-1, s.Op, s.Position)
		}
		if last := s.Parts[len(s.Parts)-1]; last.LastTimestampUnixNano != s.TimestampUnixNano {
			add("%s: commit time %d is not its last op's %d", name, s.TimestampUnixNano, last.LastTimestampUnixNano)
		}
		endOp, endPos = s.Op, s.Position
	}
	if len(m.Segments) > 0 {
		first := m.Segments[0]
		startOp, startPos := uint64(1), uint64(1)
		if first.FirstOp != 1 {
			// Retention removed the segments a snapshot holds: the rest
			// must start within reach of the oldest snapshot.
			startOp, startPos = first.FirstOp, first.FirstPosition
			switch {
			case len(m.Snapshots) == 0:
				add("%s: the segments start at op %d, not op 1, and no snapshot holds the ops before", first.Name, first.FirstOp)
			case m.Snapshots[0].Op+1 < first.FirstOp:
				add("%s: the segments start at op %d, but the oldest snapshot ends at op %d", first.Name, first.FirstOp, m.Snapshots[0].Op)
			case m.Snapshots[0].Op+1 == first.FirstOp && m.Snapshots[0].Position+1 != first.FirstPosition:
				add("%s: starts at position %d, but the oldest snapshot ends at position %d", first.Name, first.FirstPosition, m.Snapshots[0].Position)
			}
		}
		var lastTS int64
		endOp, endPos, lastTS = runProblems(add, m.Segments, startOp, startPos, SegmentKey)
		endOp, endPos = endOp-1, endPos-1
		if cp.TimestampUnixNano < lastTS {
			add("checkpoint time %d is before the last segment's last commit time %d", cp.TimestampUnixNano, lastTS)
		}
	}
	if cp.Op != endOp || cp.Position != endPos {
		add("checkpoint at op %d position %d, but the log in the repository ends at op %d position %d", cp.Op, cp.Position, endOp, endPos)
	}
	return ps
}

// runProblems checks that infos hold contiguous ops from nextOp and
// positions from nextPos under the keys key gives, and returns the op and
// position after them and the last commit time.
func runProblems(add func(string, ...any), infos []SegmentInfo, nextOp, nextPos uint64, key func(first, last uint64) string) (uint64, uint64, int64) {
	var lastTS int64
	for i, s := range infos {
		name := s.Name
		if name == "" {
			name = fmt.Sprintf("segment #%d", i+1)
		}
		switch {
		case s.FirstOp == 0 || s.LastOp < s.FirstOp:
			add("%s: op range %d..%d is empty or starts at 0", name, s.FirstOp, s.LastOp)
		case s.Name != key(s.FirstOp, s.LastOp):
			add("%s: name does not match its op range %d..%d", name, s.FirstOp, s.LastOp)
		}
		if s.FirstOp != nextOp {
			add("%s: starts at op %d, want op %d (the op after the previous segment)", name, s.FirstOp, nextOp)
		}
		if s.FirstPosition != nextPos {
			add("%s: starts at position %d, want position %d", name, s.FirstPosition, nextPos)
		}
		if s.LastPosition+1 < s.FirstPosition || s.LastPosition+1-s.FirstPosition != s.Entries {
			add("%s: positions %d..%d do not hold its %d entries", name, s.FirstPosition, s.LastPosition, s.Entries)
		}
		if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != sha256.Size {
			add("%s: sha256 %q is not 64 hex digits", name, s.SHA256)
		}
		if s.StoredBytes == 0 || s.RawBytes == 0 {
			add("%s: zero size", name)
		}
		nextOp, nextPos, lastTS = s.LastOp+1, s.LastPosition+1, s.LastTimestampUnixNano
	}
	return nextOp, nextPos, lastTS
}

func joinProblems(ps []string) string {
	var b bytes.Buffer
	for i, p := range ps {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}
