package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kmb-db/kmb/store/internal/durable"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/superblock"
)

// Names in a data dir. The node reads "log" and "superblock" and locks
// "LOCK"; the other two exist only while a restore runs, or after one
// was interrupted.
const (
	dataLogDir     = "log"
	restoringLog   = "log.restoring"
	dataDirLock    = "LOCK"
	restoreBatchOp = 1024    // ops per log Append
	restoreBatchB  = 4 << 20 // raw bytes per log Append
)

// Target is the point a restore stops at. The zero Target is Latest.
type Target struct {
	kind     targetKind
	position uint64
	time     time.Time
}

type targetKind int

const (
	targetLatest targetKind = iota
	targetPosition
	targetTime
)

// Latest restores everything up to the checkpoint.
func Latest() Target { return Target{} }

// ToPosition restores every op that lies at or below position n: every
// op whose last entry's position is at most n (an op without entries
// counts as lying at its first position). An op holding positions on
// both sides of n is left out, so the restore may end below n.
func ToPosition(n uint64) Target { return Target{kind: targetPosition, position: n} }

// ToTime restores every op committed at or before t. Commit timestamps
// never decrease along the log (the leader assigns each op at least its
// predecessor's), so this is a prefix of the log; should a repository
// hold a decrease, the restore stops at the first op later than t.
func ToTime(t time.Time) Target { return Target{kind: targetTime, time: t} }

func (t Target) String() string {
	switch t.kind {
	case targetPosition:
		return fmt.Sprintf("position %d", t.position)
	case targetTime:
		return "time " + t.time.UTC().Format(time.RFC3339Nano)
	default:
		return "latest"
	}
}

// Summary describes a restore: a finished one, or as far as a failed one
// got.
type Summary struct {
	Target   Target
	DataDir  string
	Segments int    // segment objects read
	Ops      uint64 // ops restored
	Entries  uint64
	// Bytes is the raw size restored: the records with their headers,
	// as in SegmentInfo.RawBytes. StoredBytes is what was read from
	// the repository for it.
	Bytes, StoredBytes uint64
	Duration           time.Duration
	// The last op restored; zero when none was.
	LastOp        uint64
	LastPosition  uint64
	LastTimestamp time.Time
}

// RestoringMarker is the file a restore keeps in the data dir it writes
// until it has finished. A data dir holding it must not be served (the node
// refuses it) and cannot be restored into again: delete it and restart.
const RestoringMarker = "RESTORING"

// RestoredNote is the file a finished restore leaves in the data dir: a
// JSON object describing the restore, which the node commits to its log
// as an admin op ("restore") when it first leads, then removes.
const RestoredNote = "restored.json"

// Restore writes the ops of repo up to target into a new data dir,
// dataDir, that a kmbd started with --data-dir dataDir (node_id 1) then
// serves: dataDir/log holds the ops as the node's log, and
// dataDir/superblock names node 1 in view 0 with every restored op
// committed.
//
// It refuses a target past the repository's checkpoint, since the
// repository cannot vouch for ops after it, and a dataDir that exists and
// is not empty. Before touching dataDir it checks that every segment the
// target needs is present; it checks each one's size and SHA-256 before
// using it, and decodes and verifies every record. A segment past the
// target is never read, so damage there does not matter. Errors name the
// segment at fault.
//
// progress, if not nil, is called as ops are written with the number of
// entries restored so far and the number expected in all; the total is
// exact for a position target and an upper bound for a time target, and
// the last call has done == total.
//
// The log is written to dataDir/log.restoring, with a RESTORING marker
// beside it, and renamed to dataDir/log only once complete and synced;
// the superblock comes last, then the marker goes. A restore that fails
// or is killed leaves dataDir as it stands, and a new restore refuses it
// because it is not empty: the operator deletes it and restores again,
// which gives the same result as an uninterrupted restore.
func Restore(ctx context.Context, repo *Repository, target Target, dataDir string, progress func(done, total uint64)) (sum Summary, err error) {
	return RestoreNode(ctx, repo, target, dataDir, SingleNode(), progress)
}

// Node is the replica a restored data dir is for.
type Node struct {
	// ID is the node id the superblock names.
	ID uint64
	// Records is set for the one node of the cluster that commits the
	// restore to the log (RestoredNote) when it leads: the node of the
	// lowest id, which leads the first view. The others' data dirs get no
	// note, so the restore is in the log once, not once per node.
	Records bool
}

// SingleNode is the data dir of a single-node cluster: node 1.
func SingleNode() Node { return Node{ID: restoredNodeID, Records: true} }

// ClusterNode is the data dir of node id of a cluster of the replicas ids.
func ClusterNode(id uint64, ids []uint64) Node {
	return Node{ID: id, Records: id == slices.Min(ids)}
}

// RestoreNode is Restore for node n of a cluster: the data dir holds the
// same log as every other node's restored to the same target, and a
// superblock naming node n.ID in view 0 with every restored op committed,
// so that the nodes, started with the same cluster.replicas, form the
// cluster again in view 0. Every node must be restored to the same
// target, which only a position or a time pins (the checkpoint moves if
// the repository is still written to).
func RestoreNode(ctx context.Context, repo *Repository, target Target, dataDir string, n Node, progress func(done, total uint64)) (sum Summary, err error) {
	start := time.Now()
	sum = Summary{Target: target, DataDir: dataDir}
	defer func() { sum.Duration = time.Since(start) }()
	m := repo.Manifest()
	cp := m.Checkpoint

	chain := m.sources(target)
	include, needed, total, err := plan(target, &m, chain)
	if err != nil {
		return sum, err
	}
	var segs []SegmentInfo
	for _, s := range chain {
		if !needed(s) {
			break
		}
		segs = append(segs, s)
	}
	// A missing object is found before anything is written.
	if len(segs) > 0 {
		present := map[string]bool{}
		for _, prefix := range []string{segmentsPrefix, snapshotsPrefix} {
			keys, err := repo.backend.List(ctx, prefix)
			if err != nil {
				return sum, fmt.Errorf("restore: list %s: %w", prefix, err)
			}
			for _, k := range keys {
				present[k] = true
			}
		}
		for _, s := range segs {
			if !present[s.Name] {
				return sum, fmt.Errorf("restore to %s: object %s (ops %d..%d) is missing from the repository; run kmbd backup verify",
					target, s.Name, s.FirstOp, s.LastOp)
			}
		}
	}

	unlock, err := prepareDataDir(dataDir)
	if err != nil {
		return sum, err
	}
	defer unlock()
	mark, _ := json.Marshal(map[string]any{
		"repository_id": m.RepositoryID,
		"target":        target.String(),
		"checkpoint_op": cp.Op,
		"started":       start.UTC().Format(time.RFC3339Nano),
		"note":          "a restore into this directory is running or was interrupted; if none is running, delete the directory and restore again",
	})
	if err := durable.WriteFile(dataDir, RestoringMarker, append(mark, '\n')); err != nil {
		return sum, fmt.Errorf("restore: %w", err)
	}
	interrupted := func(err error) error {
		return fmt.Errorf("%w; %s holds an incomplete restore: delete it before restoring again", err, dataDir)
	}

	l, _, err := kmblog.Open(kmblog.Config{Dir: filepath.Join(dataDir, restoringLog)}, nil, nil)
	if err != nil {
		return sum, interrupted(fmt.Errorf("restore: %w", err))
	}
	w := restoreWriter{log: l, sum: &sum, progress: progress, total: total}
	err = w.run(ctx, repo.backend, segs, include)
	if err == nil {
		err = l.Sync()
	}
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return sum, interrupted(fmt.Errorf("restore to %s: %w", target, err))
	}

	if err := os.Rename(filepath.Join(dataDir, restoringLog), filepath.Join(dataDir, dataLogDir)); err != nil {
		return sum, interrupted(fmt.Errorf("restore: %w", err))
	}
	if err := durable.SyncDir(dataDir); err != nil {
		return sum, interrupted(fmt.Errorf("restore: %w", err))
	}
	if err := superblock.Write(dataDir, superblock.Superblock{NodeID: n.ID, Commit: sum.LastOp}); err != nil {
		return sum, interrupted(fmt.Errorf("restore: write superblock: %w", err))
	}
	// What the node commits to its log, for the audit trail, when it
	// first leads.
	note, _ := json.Marshal(map[string]any{
		"repository_id": m.RepositoryID,
		"target":        target.String(),
		"checkpoint_op": cp.Op,
		"last_op":       sum.LastOp,
		"last_position": sum.LastPosition,
		"node_id":       n.ID,
		"restored_at":   time.Now().UTC().Format(time.RFC3339Nano),
	})
	if n.Records {
		if err := durable.WriteFile(dataDir, RestoredNote, append(note, '\n')); err != nil {
			return sum, interrupted(fmt.Errorf("restore: %w", err))
		}
	}
	if err := os.Remove(filepath.Join(dataDir, RestoringMarker)); err != nil {
		return sum, fmt.Errorf("restore: %w", err)
	}
	if err := durable.SyncDir(dataDir); err != nil {
		return sum, fmt.Errorf("restore: %w", err)
	}
	if progress != nil {
		progress(sum.Entries, sum.Entries)
	}
	return sum, nil
}

// sources returns the objects a restore to t reads, in op order: the
// parts of the newest snapshot that does not pass t (or of the oldest
// snapshot, when retention removed the segments that reach back to op
// 1), then the segments after that snapshot. A segment that straddles
// the snapshot's end is read whole; the ops the snapshot already gave
// are skipped.
func (m *Manifest) sources(t Target) []SegmentInfo {
	var base *SnapshotInfo
	for i := range m.Snapshots {
		s := &m.Snapshots[i]
		within := true
		switch t.kind {
		case targetPosition:
			within = s.Position <= t.position
		case targetTime:
			within = s.TimestampUnixNano <= t.time.UnixNano()
		}
		if within {
			base = s
		}
	}
	if base == nil && len(m.Snapshots) > 0 && (len(m.Segments) == 0 || m.Segments[0].FirstOp != 1) {
		base = &m.Snapshots[0]
	}
	var out []SegmentInfo
	after := uint64(0)
	if base != nil {
		out = append(out, base.Parts...)
		after = base.Op
	}
	for _, s := range m.Segments {
		if s.LastOp > after {
			out = append(out, s)
		}
	}
	return out
}

// plan turns target into which ops to restore, which of chain's objects
// to read (a prefix), and how many entries that should come to.
func plan(t Target, m *Manifest, chain []SegmentInfo) (include func(*kmblog.Op) bool, needed func(SegmentInfo) bool, total uint64, err error) {
	cp := m.Checkpoint
	switch t.kind {
	case targetPosition:
		n := t.position
		if n > cp.Position {
			return nil, nil, 0, fmt.Errorf("restore to %s: the repository's checkpoint is position %d (op %d, committed %s): later positions may exist that it does not hold",
				t, cp.Position, cp.Op, fmtTime(cp.Time()))
		}
		include = func(op *kmblog.Op) bool { return op.FirstPosition <= n && op.LastPosition() <= n }
		needed = func(s SegmentInfo) bool { return s.FirstPosition <= n }
		return include, needed, n, nil
	case targetTime:
		ns := t.time.UnixNano()
		if ns > cp.TimestampUnixNano {
			return nil, nil, 0, fmt.Errorf("restore to %s: the repository's checkpoint time is %s (op %d, position %d): ops committed later may exist that it does not hold",
				t, fmtTime(cp.Time()), cp.Op, cp.Position)
		}
		include = func(op *kmblog.Op) bool { return op.Timestamp <= ns }
		needed = func(s SegmentInfo) bool { return s.FirstTimestampUnixNano <= ns }
		for _, s := range chain {
			if needed(s) {
				total = s.LastPosition
			}
		}
		return include, needed, total, nil
	default:
		include = func(op *kmblog.Op) bool { return op.Op <= cp.Op }
		needed = func(SegmentInfo) bool { return true }
		return include, needed, cp.Position, nil
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// prepareDataDir creates dataDir, or checks that it is an empty
// directory, and locks it as a node would, so that no kmbd starts on it
// while the restore runs.
func prepareDataDir(dir string) (unlock func(), err error) {
	if dir == "" {
		return nil, errors.New("restore: no data dir given")
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("restore: create data dir: %w", err)
		}
		if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("restore: data dir: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("restore: data dir %s is not a directory", dir)
	default:
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("restore: data dir: %w", err)
		}
		if len(entries) > 0 {
			var names []string
			for _, e := range entries[:min(len(entries), 5)] {
				names = append(names, e.Name())
			}
			hint := ""
			for _, e := range entries {
				if e.Name() == RestoringMarker {
					hint = " It holds an interrupted restore (a RESTORING file):"
				}
			}
			return nil, fmt.Errorf("restore: data dir %s is not empty (it holds %s).%s a restore only writes into a new or empty directory; delete it, or choose another, and run the restore again",
				dir, strings.Join(names, ", "), hint)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, dataDirLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("restore: data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("restore: data dir %s is in use by another process", dir)
	}
	return func() { f.Close() }, nil
}

// restoreWriter reads segments and appends their ops to the new log.
type restoreWriter struct {
	log      *kmblog.Log
	sum      *Summary
	progress func(done, total uint64)
	total    uint64

	batch      []*kmblog.Op
	batchBytes int
	last       uint64       // the last op added
	chain      kmblog.Chain // its chain hash
	chainer    kmblog.Chainer
}

func (w *restoreWriter) run(ctx context.Context, b Backend, segs []SegmentInfo, include func(*kmblog.Op) bool) error {
	dec, err := newSegmentDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	for _, s := range segs {
		done, err := w.segment(ctx, b, dec, s, include)
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	return w.flush(ctx)
}

// segment restores the ops of s that include accepts, and reports whether
// it met the first op past the target.
func (w *restoreWriter) segment(ctx context.Context, b Backend, dec *segmentDecoder, s SegmentInfo, include func(*kmblog.Op) bool) (bool, error) {
	past := false
	n, err := readObject(ctx, b, dec, s, func(op *kmblog.Op, size int) (bool, error) {
		if op.Op <= w.last {
			return true, nil // a snapshot already gave it
		}
		if !include(op) {
			past = true
			return false, nil
		}
		return true, w.add(ctx, op, size)
	})
	w.sum.Segments++
	w.sum.StoredBytes += uint64(n)
	return past, err
}

// add appends op to the batch once its chain hash checks out. Ops backed
// up before the log had chain hashes (format version 1) carry the zero
// hash, and get theirs computed here, as the node's migration would.
func (w *restoreWriter) add(ctx context.Context, op *kmblog.Op, size int) error {
	c := w.chainer.Op(w.chain, op)
	switch {
	case op.Chain == kmblog.Chain{}:
		op.Chain = c
	case op.Chain != c:
		return fmt.Errorf("%w: op %d has chain hash %x, but the ops before it imply %x: the repository does not hold one consistent log; run kmbd backup verify",
			ErrCorruptSegment, op.Op, op.Chain[:8], c[:8])
	}
	w.chain = c
	w.batch = append(w.batch, op)
	w.last = op.Op
	w.batchBytes += size
	w.sum.Bytes += uint64(size)
	if len(w.batch) >= restoreBatchOp || w.batchBytes >= restoreBatchB {
		return w.flush(ctx)
	}
	return nil
}

func (w *restoreWriter) flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(w.batch) == 0 {
		return nil
	}
	if err := w.log.Append(w.batch...); err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	for _, op := range w.batch {
		w.sum.Ops++
		w.sum.Entries += uint64(len(op.Entries))
	}
	last := w.batch[len(w.batch)-1]
	w.sum.LastOp, w.sum.LastPosition = last.Op, last.LastPosition()
	w.sum.LastTimestamp = time.Unix(0, last.Timestamp).UTC()
	clear(w.batch)
	w.batch, w.batchBytes = w.batch[:0], 0
	if w.progress != nil {
		w.progress(w.sum.LastPosition, max(w.total, w.sum.LastPosition))
	}
	return nil
}
