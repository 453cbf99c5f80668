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
	// the only one it reads.
	ManifestVersion = 1
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
	m.Checksum = ""
	return m, nil
}

// problems describes every inconsistency of m: segments that are not
// contiguous from op 1 and position 1, entries that contradict
// themselves, and a checkpoint that is not where the last segment ends.
func (m *Manifest) problems() []string {
	var ps []string
	add := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	if m.RepositoryID == "" {
		add("no repository id")
	}
	nextOp, nextPos := uint64(1), uint64(1)
	var lastTS int64
	for i, s := range m.Segments {
		name := s.Name
		if name == "" {
			name = fmt.Sprintf("segment #%d", i+1)
		}
		switch {
		case s.FirstOp == 0 || s.LastOp < s.FirstOp:
			add("%s: op range %d..%d is empty or starts at 0", name, s.FirstOp, s.LastOp)
		case s.Name != SegmentKey(s.FirstOp, s.LastOp):
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
	cp := m.Checkpoint
	if cp.Op != nextOp-1 || cp.Position != nextPos-1 {
		add("checkpoint at op %d position %d, but the segments end at op %d position %d", cp.Op, cp.Position, nextOp-1, nextPos-1)
	}
	if len(m.Segments) > 0 && cp.TimestampUnixNano < lastTS {
		add("checkpoint time %d is before the last segment's last commit time %d", cp.TimestampUnixNano, lastTS)
	}
	return ps
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
