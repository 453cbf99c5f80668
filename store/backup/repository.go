package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
)

var (
	// ErrNoRepository is wrapped by Open's error when the backend holds
	// no manifest.
	ErrNoRepository = errors.New("backup: no repository here (no manifest.json)")
	// ErrRepositoryExists is wrapped by Init's error when the backend
	// already holds a manifest.
	ErrRepositoryExists = errors.New("backup: a repository already exists here")
	// ErrNotContiguous is wrapped by AppendSegment's errors for ops that
	// do not continue the checkpoint; ErrGap and ErrOverlap wrap it.
	ErrNotContiguous = errors.New("backup: ops do not continue the checkpoint")
	// ErrGap: the ops start after the op following the checkpoint.
	ErrGap = fmt.Errorf("%w (gap)", ErrNotContiguous)
	// ErrOverlap: the ops start at or before the checkpoint.
	ErrOverlap = fmt.Errorf("%w (overlap)", ErrNotContiguous)
	// ErrConcurrentWriter is wrapped by write errors when the stored
	// manifest changed since this Repository read it: another process
	// writes to the same repository.
	ErrConcurrentWriter = errors.New("backup: the manifest was changed by another writer")
)

// Repository is a backup repository on a Backend: the manifest and the
// segment objects it lists.
//
// A Repository keeps the manifest it last read or wrote. Its writes
// (AppendSegment, AdvanceCheckpointTime, RecordSnapshotSuccess,
// RecordVerifySuccess) each replace the manifest whole, and before that
// read it back to check that nobody else changed it (its generation):
// there must be one writer per repository, and this check catches a
// second one rather than letting it move the checkpoint back. After a
// failed write the stored manifest is in doubt, so the next write, or
// Reload, reads it again first.
//
// All methods are safe for concurrent use; writes are serialized.
type Repository struct {
	backend Backend

	mu    sync.Mutex
	m     Manifest // as last read or written; Checksum empty
	raw   []byte   // m as stored: what the next write swaps out
	stale bool     // a write failed: the stored manifest may differ from m
}

// Init creates a repository on b: it writes an empty manifest with a new
// random repository id. It fails with ErrRepositoryExists if b already
// holds a manifest.
func Init(ctx context.Context, b Backend) (*Repository, error) {
	_, err := b.Get(ctx, ManifestKey)
	if err == nil {
		return nil, fmt.Errorf("%w (%s)", ErrRepositoryExists, ManifestKey)
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("backup: init: %w", err)
	}
	var id [16]byte
	rand.Read(id[:])
	m := Manifest{
		Version:         ManifestVersion,
		RepositoryID:    hex.EncodeToString(id[:]),
		CreatedUnixNano: time.Now().UnixNano(),
		Generation:      1,
		Segments:        []SegmentInfo{},
	}
	raw := encodeManifest(&m)
	if err := b.Put(ctx, ManifestKey, raw); err != nil {
		return nil, fmt.Errorf("backup: init: write %s: %w", ManifestKey, err)
	}
	return &Repository{backend: b, m: m, raw: raw}, nil
}

// Open opens the repository on b. It fails with an error wrapping
// ErrNoRepository when b holds no manifest, and ErrCorruptManifest when
// the manifest fails its checksum or is inconsistent; VerifyBackend still
// examines such a repository.
func Open(ctx context.Context, b Backend) (*Repository, error) {
	m, raw, err := readManifest(ctx, b)
	if err != nil {
		return nil, err
	}
	return &Repository{backend: b, m: m, raw: raw}, nil
}

// OpenOrInit opens the repository on b, creating it if b holds no
// manifest.
func OpenOrInit(ctx context.Context, b Backend) (*Repository, error) {
	r, err := Open(ctx, b)
	if errors.Is(err, ErrNoRepository) {
		return Init(ctx, b)
	}
	return r, err
}

// readManifest returns the stored manifest, parsed and as stored.
func readManifest(ctx context.Context, b Backend) (Manifest, []byte, error) {
	data, err := b.Get(ctx, ManifestKey)
	if errors.Is(err, ErrNotFound) {
		return Manifest{}, nil, ErrNoRepository
	}
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("backup: read %s: %w", ManifestKey, err)
	}
	m, err := parseManifest(data)
	return m, data, err
}

// Backend is the backend the repository is on.
func (r *Repository) Backend() Backend { return r.backend }

// Manifest returns a copy of the manifest as last read or written.
func (r *Repository) Manifest() Manifest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.clone()
}

// Checkpoint is how far the repository reaches, as last read or written.
func (r *Repository) Checkpoint() Checkpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.Checkpoint
}

// Stats sums up the repository for status pages and gauges.
type Stats struct {
	RepositoryID string
	Generation   uint64
	Checkpoint   Checkpoint
	Segments     int
	Snapshots    int
	Entries      uint64 // in the segments
	RawBytes     uint64 // decompressed size of all segments
	StoredBytes  uint64 // size of all segment objects and snapshot parts (the manifest aside)
	// Paused is when the continuous backup task was paused; zero while
	// it is meant to run.
	Paused  time.Time
	Created time.Time
	// OldestRestorable is the commit time of the first op in the
	// repository: the earliest time a restore can reach. Zero when
	// empty.
	OldestRestorable    time.Time
	LastSnapshotSuccess time.Time // zero for never
	LastVerifySuccess   time.Time // zero for never
}

// Stats returns the repository's totals as last read or written.
func (r *Repository) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{
		RepositoryID:        r.m.RepositoryID,
		Generation:          r.m.Generation,
		Checkpoint:          r.m.Checkpoint,
		Segments:            len(r.m.Segments),
		Snapshots:           len(r.m.Snapshots),
		Paused:              unixNanoTime(r.m.TaskPausedUnixNano),
		Created:             unixNanoTime(r.m.CreatedUnixNano),
		LastSnapshotSuccess: unixNanoTime(r.m.LastSnapshotSuccessUnixNano),
		LastVerifySuccess:   unixNanoTime(r.m.LastVerifySuccessUnixNano),
	}
	for _, seg := range r.m.Segments {
		s.Entries += seg.Entries
		s.RawBytes += seg.RawBytes
		s.StoredBytes += seg.StoredBytes
	}
	for _, snap := range r.m.Snapshots {
		s.StoredBytes += snap.StoredBytes()
	}
	switch {
	case len(r.m.Snapshots) > 0:
		s.OldestRestorable = unixNanoTime(r.m.Snapshots[0].Parts[0].FirstTimestampUnixNano)
	case len(r.m.Segments) > 0:
		s.OldestRestorable = unixNanoTime(r.m.Segments[0].FirstTimestampUnixNano)
	}
	return s
}

// Reload reads the manifest from the backend again.
func (r *Repository) Reload(ctx context.Context) error {
	m, raw, err := readManifest(ctx, r.backend)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.m, r.raw, r.stale = m, raw, false
	r.mu.Unlock()
	return nil
}

// AppendSegment stores ops as one segment object and then advances the
// checkpoint past them in the manifest. ops must be committed, non-empty,
// contiguous, and continue the checkpoint exactly: the first is op
// Checkpoint().Op+1 at position Checkpoint().Position+1. Otherwise it
// fails with ErrGap or ErrOverlap (both wrap ErrNotContiguous), or
// another error naming the op, and writes nothing. The checkpoint's time
// becomes the last op's commit time unless it was already later.
//
// The segment is encoded and compressed in memory: callers bound ops to
// some tens of MiB.
//
// If the process dies, or the manifest write fails, after the segment
// object was written, the manifest still ends at the old checkpoint, so
// the same ops are sent again: their object, of the same name, is
// overwritten with the same bytes, and the manifest lists it once. A
// write whose outcome is unknown (an error from the manifest write) makes
// the next call read the manifest first; if that write had in fact
// landed, retrying the same ops then fails with ErrOverlap, and the
// caller goes on from Checkpoint().
func (r *Repository) AppendSegment(ctx context.Context, ops []*kmblog.Op) error {
	if len(ops) == 0 {
		return errors.New("backup: append segment: no ops")
	}
	for i, op := range ops {
		if op == nil {
			return fmt.Errorf("backup: append segment: op #%d is nil", i)
		}
		if i == 0 {
			continue
		}
		prev := ops[i-1]
		if op.Op != prev.Op+1 {
			return fmt.Errorf("%w: op %d follows op %d in the batch", ErrNotContiguous, op.Op, prev.Op)
		}
		if op.FirstPosition != prev.LastPosition()+1 {
			return fmt.Errorf("%w: op %d starts at position %d, but op %d ends at position %d", ErrNotContiguous, op.Op, op.FirstPosition, prev.Op, prev.LastPosition())
		}
	}
	// Encode before taking the lock: it is the slow part, and it
	// depends on nothing but ops.
	stored, info, err := encodeSegment(ops)
	if err != nil {
		return err
	}
	return r.appendObject(ctx, stored, info)
}

// AppendFrames is AppendSegment for ops as the log stores them (read by
// log.ReadFrames): a segment object's records are the log's frames, so
// they are compressed as they are, with no decoding or encoding. It
// returns the new segment's manifest entry.
func (r *Repository) AppendFrames(ctx context.Context, f kmblog.Frames) (SegmentInfo, error) {
	if f.Ops == 0 || len(f.Data) == 0 {
		return SegmentInfo{}, errors.New("backup: append frames: no ops")
	}
	stored, info := encodeFrames(f), infoOf(f)
	sealInfo(&info, stored)
	return info, r.appendObject(ctx, stored, info)
}

// appendObject stores a segment object and lists it in the manifest, if
// it continues the checkpoint.
func (r *Repository) appendObject(ctx context.Context, stored []byte, info SegmentInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return err
	}
	cp := r.m.Checkpoint
	switch {
	case info.FirstOp > cp.Op+1:
		return fmt.Errorf("%w: the segment starts at op %d but the checkpoint is op %d: ops %d..%d would be missing", ErrGap, info.FirstOp, cp.Op, cp.Op+1, info.FirstOp-1)
	case info.FirstOp <= cp.Op:
		return fmt.Errorf("%w: the segment starts at op %d but the checkpoint is op %d: ops %d..%d are already in the repository", ErrOverlap, info.FirstOp, cp.Op, info.FirstOp, min(cp.Op, info.LastOp))
	case info.FirstPosition != cp.Position+1:
		return fmt.Errorf("%w: op %d starts at position %d but the checkpoint is position %d", ErrNotContiguous, info.FirstOp, info.FirstPosition, cp.Position)
	}

	if err := r.backend.Put(ctx, info.Name, stored); err != nil {
		return fmt.Errorf("backup: write segment %s: %w", info.Name, err)
	}
	next := r.m.clone()
	next.Segments = append(next.Segments, info)
	next.Checkpoint = Checkpoint{
		Op:                info.LastOp,
		Position:          info.LastPosition,
		TimestampUnixNano: max(cp.TimestampUnixNano, info.LastTimestampUnixNano),
	}
	return r.writeManifest(ctx, next)
}

// AdvanceCheckpointTime records that every op committed at or before t is
// in the repository: the caller knows that all ops committed so far are,
// and that no op committed later can get a commit time at or before t.
// It is how the checkpoint keeps moving while the cluster is idle. The
// checkpoint never moves backwards: a t at or before the checkpoint's
// time changes nothing and writes nothing.
func (r *Repository) AdvanceCheckpointTime(ctx context.Context, t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return err
	}
	ns := t.UnixNano()
	if ns <= r.m.Checkpoint.TimestampUnixNano {
		return nil
	}
	next := r.m.clone()
	next.Checkpoint.TimestampUnixNano = ns
	return r.writeManifest(ctx, next)
}

// RecordSnapshotSuccess records the time of a successful snapshot, unless
// a later one is already recorded.
func (r *Repository) RecordSnapshotSuccess(ctx context.Context, t time.Time) error {
	return r.recordSuccess(ctx, t, func(m *Manifest) *int64 { return &m.LastSnapshotSuccessUnixNano })
}

// RecordVerifySuccess records the time of a verify run that found no
// problem, unless a later one is already recorded. Verify itself never
// writes: the repository's single writer records its result.
func (r *Repository) RecordVerifySuccess(ctx context.Context, t time.Time) error {
	return r.recordSuccess(ctx, t, func(m *Manifest) *int64 { return &m.LastVerifySuccessUnixNano })
}

func (r *Repository) recordSuccess(ctx context.Context, t time.Time, field func(*Manifest) *int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return err
	}
	ns := t.UnixNano()
	if ns <= *field(&r.m) {
		return nil
	}
	next := r.m.clone()
	*field(&next) = ns
	return r.writeManifest(ctx, next)
}

// refresh rereads the manifest after a failed write left it in doubt.
// Called with mu held.
func (r *Repository) refresh(ctx context.Context) error {
	if !r.stale {
		return nil
	}
	m, raw, err := readManifest(ctx, r.backend)
	if err != nil {
		return err
	}
	r.m, r.raw, r.stale = m, raw, false
	return nil
}

// writeManifest stores next, one generation after r.m, in place of the
// manifest as this Repository last read or wrote it: the backend's Swap
// refuses the write if anybody changed it meanwhile. Called with mu held.
func (r *Repository) writeManifest(ctx context.Context, next Manifest) error {
	next.Generation = r.m.Generation + 1
	raw := encodeManifest(&next)
	if err := r.backend.Swap(ctx, ManifestKey, r.raw, raw); err != nil {
		r.stale = true
		if errors.Is(err, errSwapConflict) {
			return fmt.Errorf("%w: the stored manifest is no longer generation %d (repository %s)", ErrConcurrentWriter, r.m.Generation, r.m.RepositoryID)
		}
		return fmt.Errorf("backup: write %s: %w", ManifestKey, err)
	}
	next.Checksum = ""
	r.m, r.raw = next, raw
	return nil
}
