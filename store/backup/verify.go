package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Kinds of Problem. They are fixed strings, fit for a metric label.
const (
	ProblemMissing   = "missing"           // the object is not in the repository
	ProblemChecksum  = "checksum mismatch" // size or SHA-256 differs from the manifest's
	ProblemCorrupt   = "corrupt"           // zstd, record length or CRC, op decoding, or continuity inside the object
	ProblemMismatch  = "manifest mismatch" // the object's ops differ from what its manifest entry says
	ProblemManifest  = "manifest invalid"  // the manifest fails its checksum, does not parse, or is inconsistent
	ProblemNotListed = "not contiguous"    // without a manifest: objects that leave a gap or overlap
)

// Problem is one thing Verify found wrong.
type Problem struct {
	Object string // the key: a segment's, or manifest.json
	Kind   string // one of the Problem* constants
	Detail string
}

func (p Problem) String() string {
	if p.Detail == "" {
		return p.Object + ": " + p.Kind
	}
	return p.Object + ": " + p.Kind + ": " + p.Detail
}

// Report is what Verify found.
type Report struct {
	RepositoryID string
	// ManifestOK: the manifest was read, passed its checksum and is
	// consistent. When it could not be read or failed its checksum,
	// the segment objects found by listing were verified instead.
	ManifestOK bool
	Checkpoint Checkpoint
	Segments   int // segment objects and snapshot parts examined
	SegmentsOK int // of which verified without problem
	// Totals over the segments that verified.
	Ops, Entries, RawBytes, StoredBytes uint64
	// Problems lists everything wrong, in manifest order. Empty means
	// the repository is sound.
	Problems []Problem
	// Orphans are segment objects the manifest does not list. A crash
	// between writing a segment and the manifest leaves one behind,
	// which is harmless (the retry overwrites or supersedes it), so
	// they are not problems.
	Orphans  []string
	Duration time.Duration
}

// OK reports whether Verify found no problem.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks the repository as stored: see VerifyBackend.
func (r *Repository) Verify(ctx context.Context) (Report, error) {
	return VerifyBackend(ctx, r.backend)
}

// VerifyBackend reads the manifest and every segment object of the
// repository on b, and reports every problem rather than stopping at the
// first: a manifest that fails its checksum or is inconsistent; for each
// segment it lists, a missing object, a size or SHA-256 mismatch, a zstd
// stream, record checksum or op that does not decode, ops or positions
// that are not contiguous, and contents (op, position and time range,
// entries, raw size) that differ from the manifest's entry. Segment
// entries are checked to be contiguous from op and position 1 and to end
// at the checkpoint. When the manifest is missing or fails its checksum,
// the segment objects found by listing are decoded and checked for
// continuity instead.
//
// It only reads. Its error is for failures to reach the repository
// (other than a missing object) and for ctx; what is wrong with the
// repository is in the Report.
func VerifyBackend(ctx context.Context, b Backend) (Report, error) {
	return VerifyBackendProgress(ctx, b, nil)
}

// VerifyBackendProgress is VerifyBackend calling progress, if not nil,
// after each object with the objects verified so far and the number to
// verify.
func VerifyBackendProgress(ctx context.Context, b Backend, progress func(done, total uint64)) (Report, error) {
	start := time.Now()
	v := verifier{backend: b, progress: progress}
	defer func() { v.rep.Duration = time.Since(start) }()
	dec, err := newSegmentDecoder()
	if err != nil {
		return Report{}, err
	}
	defer dec.Close()
	v.dec = dec

	data, err := b.Get(ctx, ManifestKey)
	var m Manifest
	switch {
	case errors.Is(err, ErrNotFound):
		v.problem(ManifestKey, ProblemMissing, "")
	case err != nil:
		return Report{}, fmt.Errorf("backup: verify: read %s: %w", ManifestKey, err)
	default:
		m, err = decodeManifest(data)
		if err != nil {
			v.problem(ManifestKey, ProblemManifest, strings.TrimPrefix(err.Error(), ErrCorruptManifest.Error()+": "))
		}
	}
	listed, err := b.List(ctx, segmentsPrefix)
	if err != nil {
		return Report{}, fmt.Errorf("backup: verify: list %s: %w", segmentsPrefix, err)
	}
	parts, err := b.List(ctx, snapshotsPrefix)
	if err != nil {
		return Report{}, fmt.Errorf("backup: verify: list %s: %w", snapshotsPrefix, err)
	}

	if m.Version == 0 {
		err = v.withoutManifest(ctx, listed)
	} else {
		err = v.withManifest(ctx, &m, append(listed, parts...))
	}
	return v.rep, err
}

type verifier struct {
	backend  Backend
	dec      *segmentDecoder
	rep      Report
	progress func(done, total uint64)
	total    uint64 // objects to verify, for progress
}

func (v *verifier) problem(object, kind, detail string) {
	v.rep.Problems = append(v.rep.Problems, Problem{Object: object, Kind: kind, Detail: detail})
}

func (v *verifier) withManifest(ctx context.Context, m *Manifest, listed []string) error {
	v.rep.RepositoryID, v.rep.Checkpoint = m.RepositoryID, m.Checkpoint
	ps := m.problems()
	for _, p := range ps {
		v.problem(ManifestKey, ProblemManifest, p)
	}
	v.rep.ManifestOK = len(ps) == 0
	inManifest := make(map[string]bool, len(m.Segments))
	v.total = uint64(len(m.Segments))
	for _, s := range m.Snapshots {
		v.total += uint64(len(s.Parts))
	}
	for i := range m.Snapshots {
		for j := range m.Snapshots[i].Parts {
			info := &m.Snapshots[i].Parts[j]
			inManifest[info.Name] = true
			if err := v.segment(ctx, info.Name, info); err != nil {
				return err
			}
		}
	}
	for i := range m.Segments {
		info := &m.Segments[i]
		inManifest[info.Name] = true
		if err := v.segment(ctx, info.Name, info); err != nil {
			return err
		}
	}
	for _, key := range listed {
		if !inManifest[key] {
			v.rep.Orphans = append(v.rep.Orphans, key)
		}
	}
	return nil
}

// withoutManifest verifies the objects under segments/ against their
// names, and their continuity, when no manifest can be trusted.
func (v *verifier) withoutManifest(ctx context.Context, listed []string) error {
	v.total = uint64(len(listed))
	var nextOp, nextPos uint64 = 1, 1
	for _, key := range listed {
		first, last, ok := ParseSegmentKey(key)
		if !ok {
			v.rep.Orphans = append(v.rep.Orphans, key)
			continue
		}
		if first != nextOp {
			v.problem(key, ProblemNotListed, fmt.Sprintf("starts at op %d, want op %d", first, nextOp))
		}
		info := &SegmentInfo{Name: key, FirstOp: first, LastOp: last}
		before := len(v.rep.Problems)
		if err := v.segment(ctx, key, nil); err != nil {
			return err
		}
		d := v.dec
		if len(v.rep.Problems) == before {
			if d.firstOp.Op != info.FirstOp || d.lastOp.Op != info.LastOp {
				v.problem(key, ProblemMismatch, fmt.Sprintf("holds ops %d..%d, its name says %d..%d", d.firstOp.Op, d.lastOp.Op, first, last))
			} else if first == nextOp && d.firstOp.FirstPosition != nextPos {
				v.problem(key, ProblemNotListed, fmt.Sprintf("starts at position %d, want position %d", d.firstOp.FirstPosition, nextPos))
			}
			nextPos = d.nextPos
		}
		nextOp = last + 1
	}
	return nil
}

// segment verifies one object; info is its manifest entry, nil when there
// is no manifest to compare with. Only errors reaching the backend, or
// of ctx, are returned.
func (v *verifier) segment(ctx context.Context, key string, info *SegmentInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v.rep.Segments++
	before := len(v.rep.Problems)
	data, err := v.backend.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		v.problem(key, ProblemMissing, "")
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup: verify: read %s: %w", key, err)
	}
	if info != nil {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); uint64(len(data)) != info.StoredBytes || got != info.SHA256 {
			v.problem(key, ProblemChecksum, fmt.Sprintf("%d bytes with sha256 %s, the manifest says %d bytes with sha256 %s",
				len(data), got, info.StoredBytes, info.SHA256))
		}
	}
	// Decode even after a checksum mismatch, to say what the damage
	// does to the records.
	d := v.dec
	err = d.reset(data)
	for err == nil {
		_, err = d.nextOp()
	}
	if err != io.EOF {
		v.problem(key, ProblemCorrupt, strings.TrimPrefix(err.Error(), ErrCorruptSegment.Error()+": "))
	} else if info != nil {
		if diffs := d.check(*info); len(diffs) > 0 {
			v.problem(key, ProblemMismatch, strings.Join(diffs, "; "))
		}
	}
	if v.progress != nil {
		v.progress(uint64(v.rep.Segments), max(v.total, uint64(v.rep.Segments)))
	}
	if len(v.rep.Problems) == before {
		v.rep.SegmentsOK++
		v.rep.Ops += d.ops
		v.rep.Entries += d.entries
		v.rep.RawBytes += d.off
		v.rep.StoredBytes += uint64(len(data))
	}
	return nil
}
