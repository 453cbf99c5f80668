package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// DefaultPartBytes bounds the raw size of one snapshot part.
const DefaultPartBytes = 32 << 20

// ErrEmptyRepository is returned by CreateSnapshot when the repository
// holds no op yet.
var ErrEmptyRepository = errors.New("backup: the repository holds no op yet")

// SnapshotResult is what CreateSnapshot did.
type SnapshotResult struct {
	Snapshot SnapshotInfo
	// Created is false when the newest snapshot already ended at the
	// checkpoint: nothing was written but the success time.
	Created     bool
	Ops         uint64
	RawBytes    uint64
	StoredBytes uint64
	Duration    time.Duration
}

// CreateSnapshot writes a full copy of the repository's log, ops 1 up to
// the checkpoint, as a snapshot: it reads the newest snapshot and the
// segments after it (verifying each), writes the ops again as parts of at
// most partBytes raw bytes, then lists the snapshot in the manifest and
// records now as the last snapshot success. A snapshot needs nothing
// else to restore from, so retention may then delete what it holds.
//
// Parts are written before the manifest lists them; a crash in between
// leaves objects that Verify reports as orphans and that the next
// snapshot of the same op overwrites with the same bytes.
//
// progress, if not nil, is called after each part with the entries
// copied so far and the snapshot's total.
func (r *Repository) CreateSnapshot(ctx context.Context, now time.Time, partBytes int, progress func(done, total uint64)) (SnapshotResult, error) {
	start := time.Now()
	if partBytes <= 0 {
		partBytes = DefaultPartBytes
	}
	if err := r.Reload(ctx); err != nil {
		return SnapshotResult{}, err
	}
	m := r.Manifest()
	cp := m.Checkpoint
	if cp.Op == 0 {
		return SnapshotResult{}, ErrEmptyRepository
	}
	if n := len(m.Snapshots); n > 0 && m.Snapshots[n-1].Op == cp.Op {
		res := SnapshotResult{Snapshot: m.Snapshots[n-1]}
		err := r.RecordSnapshotSuccess(ctx, now)
		res.Duration = time.Since(start)
		return res, err
	}

	res := SnapshotResult{Created: true}
	snap := SnapshotInfo{ID: SnapshotID(cp.Op), Op: cp.Op, Position: cp.Position, CreatedUnixNano: now.UnixNano()}
	dec, err := newSegmentDecoder()
	if err != nil {
		return res, err
	}
	defer dec.Close()
	var part []*kmblog.Op
	raw := 0
	flush := func() error {
		if len(part) == 0 {
			return nil
		}
		stored, info, err := encodeSegment(part)
		if err != nil {
			return err
		}
		info.Name = PartKey(snap.Op, info.FirstOp, info.LastOp)
		if err := r.backend.Put(ctx, info.Name, stored); err != nil {
			return fmt.Errorf("backup: snapshot: write %s: %w", info.Name, err)
		}
		snap.Parts = append(snap.Parts, info)
		if progress != nil {
			progress(info.LastPosition, snap.Position)
		}
		res.Ops += uint64(len(part))
		res.RawBytes += info.RawBytes
		res.StoredBytes += info.StoredBytes
		clear(part)
		part, raw = part[:0], 0
		return nil
	}
	var last uint64
	for _, s := range m.sources(Latest()) {
		_, err := readObject(ctx, r.backend, dec, s, func(op *kmblog.Op, size int) (bool, error) {
			if op.Op <= last {
				return true, nil
			}
			if op.Op > cp.Op {
				return false, nil
			}
			o := *op
			part = append(part, &o)
			last = op.Op
			raw += size + recordHeaderSize
			if raw >= partBytes {
				return true, flush()
			}
			return true, nil
		})
		if err != nil {
			return res, fmt.Errorf("backup: snapshot: %w", err)
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	if last != cp.Op {
		return res, fmt.Errorf("backup: snapshot: the repository's objects end at op %d, its checkpoint at op %d", last, cp.Op)
	}
	snap.TimestampUnixNano = snap.Parts[len(snap.Parts)-1].LastTimestampUnixNano
	res.Snapshot = snap
	err = r.update(ctx, func(m *Manifest) bool {
		if n := len(m.Snapshots); n > 0 && m.Snapshots[n-1].Op >= snap.Op {
			return false // another writer took one at least as new
		}
		m.Snapshots = append(m.Snapshots, snap)
		m.LastSnapshotSuccessUnixNano = max(m.LastSnapshotSuccessUnixNano, now.UnixNano())
		return true
	})
	res.Duration = time.Since(start)
	return res, err
}

// RetentionPolicy says which snapshots to keep. A snapshot is kept when
// it is one of the newest KeepLast, or was taken within KeepWithin of
// now; the newest is always kept. With both zero, everything is kept.
type RetentionPolicy struct {
	KeepLast   int
	KeepWithin time.Duration
}

// RetentionResult counts what ApplyRetention deleted.
type RetentionResult struct {
	Snapshots int // snapshots dropped from the manifest
	Segments  int // segments dropped from the manifest
	Objects   int // objects deleted (snapshot parts and segments)
}

// ApplyRetention drops the snapshots p does not keep, and the segments
// that end at or before the oldest kept snapshot (it holds their ops),
// from the manifest, then deletes their objects. A crash between the two
// leaves orphans, which Verify reports and the next run does not see;
// they cost space, never correctness.
func (r *Repository) ApplyRetention(ctx context.Context, p RetentionPolicy, now time.Time) (RetentionResult, error) {
	var res RetentionResult
	var doomed []string
	if p.KeepLast <= 0 && p.KeepWithin <= 0 {
		return res, nil
	}
	err := r.update(ctx, func(m *Manifest) bool {
		res, doomed = RetentionResult{}, doomed[:0]
		n := len(m.Snapshots)
		if n == 0 {
			return false
		}
		var kept []SnapshotInfo
		for i, s := range m.Snapshots {
			keep := i == n-1 ||
				(p.KeepLast > 0 && i >= n-p.KeepLast) ||
				(p.KeepWithin > 0 && now.Sub(time.Unix(0, s.CreatedUnixNano)) <= p.KeepWithin)
			if keep {
				kept = append(kept, s)
				continue
			}
			res.Snapshots++
			for _, part := range s.Parts {
				doomed = append(doomed, part.Name)
			}
		}
		oldest := kept[0].Op
		var segs []SegmentInfo
		for _, s := range m.Segments {
			if s.LastOp <= oldest {
				res.Segments++
				doomed = append(doomed, s.Name)
				continue
			}
			segs = append(segs, s)
		}
		if len(doomed) == 0 {
			return false
		}
		m.Snapshots, m.Segments = kept, segs
		if m.Segments == nil {
			m.Segments = []SegmentInfo{}
		}
		return true
	})
	if err != nil {
		return RetentionResult{}, err
	}
	for _, key := range doomed {
		if err := r.backend.Delete(ctx, key); err != nil {
			return res, fmt.Errorf("backup: retention: delete %s: %w", key, err)
		}
		res.Objects++
	}
	return res, nil
}

// SetPaused records that the continuous backup task is paused (at now)
// or is meant to run. The node running the task reads it from the
// manifest, so a pause outlives restarts and failovers.
func (r *Repository) SetPaused(ctx context.Context, paused bool, now time.Time) error {
	return r.update(ctx, func(m *Manifest) bool {
		switch {
		case paused && m.TaskPausedUnixNano == 0:
			m.TaskPausedUnixNano = now.UnixNano()
		case !paused && m.TaskPausedUnixNano != 0:
			m.TaskPausedUnixNano = 0
		default:
			return false
		}
		m.TaskPauseChangedUnixNano = now.UnixNano()
		return true
	})
}

// PauseChange is a pause or resume of the task that the cluster's log
// does not record yet.
type PauseChange struct {
	Paused bool
	At     time.Time
}

// UnloggedPauseChange returns the last pause or resume, unless the log
// records it already.
func (r *Repository) UnloggedPauseChange() (PauseChange, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m.TaskPauseChangedUnixNano == 0 || r.m.TaskPauseChangedUnixNano == r.m.TaskPauseLoggedUnixNano {
		return PauseChange{}, false
	}
	return PauseChange{Paused: r.m.TaskPausedUnixNano != 0, At: time.Unix(0, r.m.TaskPauseChangedUnixNano)}, true
}

// PauseChangeLogged records that the cluster's log holds the change made
// at at.
func (r *Repository) PauseChangeLogged(ctx context.Context, at time.Time) error {
	return r.update(ctx, func(m *Manifest) bool {
		if m.TaskPauseLoggedUnixNano >= at.UnixNano() {
			return false
		}
		m.TaskPauseLoggedUnixNano = at.UnixNano()
		return true
	})
}

// updateAttempts bounds how often update rereads the manifest after
// losing a race with another writer.
const updateAttempts = 5

// update applies edit to the current manifest and writes it, when edit
// reports a change. When another writer changed the manifest meanwhile
// (the backup task advancing its checkpoint, say), it rereads it and
// applies edit again, a few times.
func (r *Repository) update(ctx context.Context, edit func(*Manifest) bool) error {
	var err error
	for range updateAttempts {
		r.mu.Lock()
		err = r.refresh(ctx)
		if err == nil {
			next := r.m.clone()
			if !edit(&next) {
				r.mu.Unlock()
				return nil
			}
			err = r.writeManifest(ctx, next)
		}
		r.mu.Unlock()
		if !errors.Is(err, ErrConcurrentWriter) {
			return err
		}
	}
	return err
}
