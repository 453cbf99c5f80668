package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/superblock"
)

// expectedAtPosition is the longest prefix of ops lying at or below
// position n: all their entries are at or below n, and an op without
// entries counts as lying at its first position (so the op after the one
// ending at n is left out even if it has no entries).
func expectedAtPosition(ops []*kmblog.Op, n uint64) []*kmblog.Op {
	var out []*kmblog.Op
	for _, op := range ops {
		if op.FirstPosition > n || op.FirstPosition+uint64(len(op.Entries)) > n+1 {
			break
		}
		out = append(out, op)
	}
	return out
}

// expectedAtTime is every op committed at or before t.
func expectedAtTime(ops []*kmblog.Op, t time.Time) []*kmblog.Op {
	var out []*kmblog.Op
	for _, op := range ops {
		if time.Unix(0, op.Timestamp).After(t) {
			break
		}
		out = append(out, op)
	}
	return out
}

// checkRestored checks that dataDir is a finished restore holding exactly
// want, as the node would read it, and that sum says so.
func checkRestored(t *testing.T, dataDir string, sum Summary, want []*kmblog.Op) {
	t.Helper()
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"LOCK", "log", RestoredNote, "superblock"}) {
		t.Fatalf("data dir holds %v", names)
	}
	assertOps(t, readLog(t, filepath.Join(dataDir, "log")), want)
	var note struct {
		Target string `json:"target"`
		LastOp uint64 `json:"last_op"`
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, RestoredNote)); err != nil || json.Unmarshal(b, &note) != nil || note.Target != sum.Target.String() || note.LastOp != sum.LastOp {
		t.Fatalf("%s: %+v, %v; want target %s, last op %d", RestoredNote, note, err, sum.Target, sum.LastOp)
	}
	sb, ok, _, err := superblock.Read(dataDir)
	if err != nil || !ok {
		t.Fatalf("superblock: ok=%v err=%v", ok, err)
	}
	var last kmblog.Op
	var entriesN uint64
	if len(want) > 0 {
		last = *want[len(want)-1]
	}
	for _, op := range want {
		entriesN += uint64(len(op.Entries))
	}
	if !reflect.DeepEqual(sb, superblock.Superblock{NodeID: 1, Commit: last.Op}) {
		t.Fatalf("superblock %+v, want node 1 commit %d", sb, last.Op)
	}
	if sum.Ops != uint64(len(want)) || sum.Entries != entriesN || sum.LastOp != last.Op || sum.DataDir != dataDir {
		t.Fatalf("summary %+v, want %d ops, %d entries, last op %d", sum, len(want), entriesN, last.Op)
	}
	if len(want) > 0 && (sum.LastPosition != last.LastPosition() || !sum.LastTimestamp.Equal(time.Unix(0, last.Timestamp))) {
		t.Fatalf("summary %+v, want last position %d, time %d", sum, last.LastPosition(), last.Timestamp)
	}
	if want := uint64(len(rawRecords(want...))); sum.Bytes != want {
		t.Fatalf("summary bytes %d, want %d", sum.Bytes, want)
	}
}

func TestRestoreTargets(t *testing.T) {
	ctx := context.Background()
	r, _, ops := backedUpRepo(t, 600, 50, 73, 120)
	idleUntil := time.Unix(0, ops[599].Timestamp).Add(time.Hour)
	if err := r.AdvanceCheckpointTime(ctx, idleUntil); err != nil {
		t.Fatal(err)
	}
	m := r.Manifest()
	cp := m.Checkpoint
	// An op holding at least two entries, to aim at its middle.
	var straddle *kmblog.Op
	for _, op := range ops[200:] {
		if len(op.Entries) >= 2 {
			straddle = op
			break
		}
	}
	// An op without entries: a target at the position before it.
	var empty *kmblog.Op
	for _, op := range ops[300:] {
		if len(op.Entries) == 0 {
			empty = op
			break
		}
	}
	ts := func(i int) time.Time { return time.Unix(0, ops[i].Timestamp) }
	if len(ops[599].Entries) != 0 || ops[599].Timestamp != ops[598].Timestamp {
		t.Fatal("genOps changed: the last op should have no entries and share its commit time")
	}

	// The same ops again, in a repository where retention kept one
	// snapshot (of ops 1..450) and deleted the segments it holds.
	r2, _ := newRepo(t)
	backUp(t, r2, ops[:250], 50, 73, 120)
	snapshot(t, r2)
	backUp(t, r2, ops[250:450], 50, 73, 120)
	snapshot(t, r2)
	backUp(t, r2, ops[450:], 50, 73, 120)
	if err := r2.AdvanceCheckpointTime(ctx, idleUntil); err != nil {
		t.Fatal(err)
	}
	if res, err := r2.ApplyRetention(ctx, RetentionPolicy{KeepLast: 1}, time.Now()); err != nil || res.Snapshots != 1 || res.Segments == 0 {
		t.Fatalf("retention: %+v, %v", res, err)
	}
	if m2 := r2.Manifest(); len(m2.Snapshots) != 1 || m2.Segments[0].FirstOp != 451 {
		t.Fatalf("after retention: %d snapshots, segments from op %d", len(m2.Snapshots), m2.Segments[0].FirstOp)
	}

	for _, tc := range []struct {
		name   string
		target Target
		want   []*kmblog.Op
	}{
		{"latest", Latest(), ops},
		{"position 0", ToPosition(0), nil},
		{"position 1", ToPosition(1), expectedAtPosition(ops, 1)},
		{"position inside an op", ToPosition(straddle.FirstPosition), expectedAtPosition(ops, straddle.FirstPosition)},
		{"position before an op without entries", ToPosition(empty.FirstPosition - 1), expectedAtPosition(ops, empty.FirstPosition-1)},
		{"position at a segment's end", ToPosition(m.Segments[1].LastPosition), expectedAtPosition(ops, m.Segments[1].LastPosition)},
		{"position at a segment's start", ToPosition(m.Segments[2].FirstPosition), expectedAtPosition(ops, m.Segments[2].FirstPosition)},
		{"position 1000", ToPosition(1000), expectedAtPosition(ops, 1000)},
		// The last op has no entries: a position target leaves it out,
		// Latest does not.
		{"checkpoint position", ToPosition(cp.Position), ops[:599]},
		{"time before the first op", ToTime(ts(0).Add(-time.Nanosecond)), nil},
		{"time of the first op", ToTime(ts(0)), expectedAtTime(ops, ts(0))},
		{"time between ops", ToTime(ts(250).Add(-time.Nanosecond)), expectedAtTime(ops, ts(250).Add(-time.Nanosecond))},
		{"time of an op", ToTime(ts(400)), expectedAtTime(ops, ts(400))},
		{"time of the last op", ToTime(ts(599)), ops},
		{"checkpoint time", ToTime(cp.Time()), ops},
	} {
		for layout, r := range map[string]*Repository{"segments": r, "snapshot": r2} {
			t.Run(layout+"/"+tc.name, func(t *testing.T) {
				dataDir := filepath.Join(t.TempDir(), "data")
				var calls [][2]uint64
				sum, err := Restore(ctx, r, tc.target, dataDir, func(done, total uint64) { calls = append(calls, [2]uint64{done, total}) })
				if err != nil {
					t.Fatal(err)
				}
				checkRestored(t, dataDir, sum, tc.want)
				if sum.Target != tc.target || sum.Duration <= 0 {
					t.Fatalf("summary %+v", sum)
				}
				// Progress only grows and ends complete.
				if len(calls) == 0 {
					t.Fatal("progress never called")
				}
				for i, c := range calls {
					if c[0] > c[1] || (i > 0 && c[0] < calls[i-1][0]) {
						t.Fatalf("progress calls %v", calls)
					}
				}
				if lastCall := calls[len(calls)-1]; lastCall[0] != lastCall[1] || lastCall[0] != sum.Entries {
					t.Fatalf("last progress call %v, restored %d entries", lastCall, sum.Entries)
				}
			})
		}
	}
}

func snapshot(t *testing.T, r *Repository) SnapshotResult {
	t.Helper()
	res, err := r.CreateSnapshot(context.Background(), time.Now(), 4<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRestoreRefuses(t *testing.T) {
	ctx := context.Background()
	r, _, _ := backedUpRepo(t, 100, 30)
	cp := r.Checkpoint()
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "superblock"), nil, 0o644)

	for _, tc := range []struct {
		name    string
		target  Target
		dataDir string
		want    string
	}{
		{"position past the checkpoint", ToPosition(cp.Position + 1), filepath.Join(t.TempDir(), "d"), "checkpoint is position"},
		{"time past the checkpoint", ToTime(cp.Time().Add(time.Nanosecond)), filepath.Join(t.TempDir(), "d"), "checkpoint time is"},
		{"non-empty data dir", Latest(), full, "is not empty (it holds superblock)"},
		{"data dir is a file", Latest(), file, "not a directory"},
		{"no data dir", Latest(), "", "no data dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Restore(ctx, r, tc.target, tc.dataDir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}

	// An existing empty directory is fine.
	dir := t.TempDir()
	if _, err := Restore(ctx, r, Latest(), dir, nil); err != nil {
		t.Fatal(err)
	}
	// An empty repository restores to an empty log.
	empty, _ := newRepo(t)
	dir = filepath.Join(t.TempDir(), "d")
	sum, err := Restore(ctx, empty, Latest(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRestored(t, dir, sum, nil)
}

// Damage refuses the restores that need it, with an error naming the
// segment, and not those that stop before it.
func TestRestoreDamage(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, b *DirBackend, key string)
		want   string
	}{
		{"flipped byte", func(t *testing.T, b *DirBackend, key string) { flipByte(t, b, key, 100) }, "is corrupt"},
		{"truncated", func(t *testing.T, b *DirBackend, key string) { truncate(t, b, key, 50) }, "is corrupt"},
		{"deleted", func(t *testing.T, b *DirBackend, key string) { b.Delete(ctx, key) }, "is missing from the repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, b, ops := backedUpRepo(t, 300, 50)
			bad := r.Manifest().Segments[3] // ops 151..200
			tc.damage(t, b, bad.Name)

			for _, target := range []Target{Latest(), ToPosition(bad.FirstPosition), ToTime(time.Unix(0, ops[160].Timestamp))} {
				dataDir := filepath.Join(t.TempDir(), "d")
				_, err := Restore(ctx, r, target, dataDir, nil)
				if err == nil || !strings.Contains(err.Error(), bad.Name) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("restore to %s past the damage: %v, want an error naming %s and saying %q", target, err, bad.Name, tc.want)
				}
				if tc.name == "deleted" {
					// Found before anything was written.
					if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
						t.Fatalf("data dir created for a restore that cannot finish: %v", err)
					}
				} else if !strings.Contains(err.Error(), "incomplete restore: delete it") {
					t.Fatalf("error does not tell to delete the data dir: %v", err)
				}
			}

			// Targets that stop before the damaged segment work.
			lastGood := r.Manifest().Segments[2]
			for _, target := range []Target{
				ToPosition(lastGood.LastPosition),
				ToPosition(100),
				ToTime(time.Unix(0, lastGood.LastTimestampUnixNano)),
			} {
				dataDir := filepath.Join(t.TempDir(), "d")
				sum, err := Restore(ctx, r, target, dataDir, nil)
				if err != nil {
					t.Fatalf("restore to %s, before the damage: %v", target, err)
				}
				var want []*kmblog.Op
				if target.kind == targetPosition {
					want = expectedAtPosition(ops, target.position)
				} else {
					want = expectedAtTime(ops, target.time)
				}
				checkRestored(t, dataDir, sum, want)
			}
		})
	}
}

// treeOf maps every file under dir to its contents.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		if rel == RestoredNote {
			// It says when the restore ran; its other fields must match.
			var note map[string]any
			if err := json.Unmarshal(b, &note); err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			delete(note, "restored_at")
			b, _ = json.Marshal(note)
			out[rel] = string(b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkInterrupted(t *testing.T, ctx context.Context, r *Repository, dataDir string, reference map[string]string) {
	t.Helper()
	for _, name := range []string{"RESTORING", "log.restoring", "LOCK"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Fatalf("interrupted restore: %v", err)
		}
	}
	for _, name := range []string{"log", "superblock"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("interrupted restore left %s, which a node would read: %v", name, err)
		}
	}
	// Restoring into it again is refused, and says why.
	_, err := Restore(ctx, r, Latest(), dataDir, nil)
	if err == nil || !strings.Contains(err.Error(), "not empty") || !strings.Contains(err.Error(), "interrupted restore") {
		t.Fatalf("restore into an interrupted restore's dir: %v", err)
	}
	// A fresh directory gets the same result as an uninterrupted restore.
	fresh := filepath.Join(t.TempDir(), "fresh")
	if _, err := Restore(ctx, r, Latest(), fresh, nil); err != nil {
		t.Fatal(err)
	}
	if got := treeOf(t, fresh); !reflect.DeepEqual(got, reference) {
		t.Fatalf("restore after an interruption differs from an uninterrupted one: files %v vs %v", slices.Sorted(mapsKeys(got)), slices.Sorted(mapsKeys(reference)))
	}
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestRestoreInterrupted(t *testing.T) {
	ctx := context.Background()
	r, _, _ := backedUpRepo(t, 5000, 700)
	refDir := filepath.Join(t.TempDir(), "ref")
	if _, err := Restore(ctx, r, Latest(), refDir, nil); err != nil {
		t.Fatal(err)
	}
	reference := treeOf(t, refDir)

	cctx, cancel := context.WithCancel(ctx)
	dataDir := filepath.Join(t.TempDir(), "d")
	_, err := Restore(cctx, r, Latest(), dataDir, func(done, total uint64) {
		if done > total/3 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("cancelled restore: %v", err)
	}
	checkInterrupted(t, ctx, r, dataDir, reference)
}

// A restore killed with SIGKILL half way leaves a directory that is
// refused, and restoring afresh gives the same result.
func TestRestoreKilled(t *testing.T) {
	if os.Getenv("KMB_BACKUP_RESTORE_HELPER") != "" {
		restoreHelper(t)
		return
	}
	ctx := context.Background()
	r, b, _ := backedUpRepo(t, 5000, 700)
	refDir := filepath.Join(t.TempDir(), "ref")
	if _, err := Restore(ctx, r, Latest(), refDir, nil); err != nil {
		t.Fatal(err)
	}
	reference := treeOf(t, refDir)

	dataDir := filepath.Join(t.TempDir(), "d")
	cmd := exec.Command(os.Args[0], "-test.run=^TestRestoreKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KMB_BACKUP_RESTORE_HELPER=1", "KMB_BACKUP_REPO="+b.Root(), "KMB_BACKUP_DATA_DIR="+dataDir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v\n%s", err, out)
	}
	checkInterrupted(t, ctx, r, dataDir, reference)
}

// restoreHelper runs in a child process: it restores and kills itself
// with SIGKILL a third of the way through.
func restoreHelper(t *testing.T) {
	b, err := NewDirBackend(os.Getenv("KMB_BACKUP_REPO"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	Restore(context.Background(), r, Latest(), os.Getenv("KMB_BACKUP_DATA_DIR"), func(done, total uint64) {
		if done > total/3 {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
	})
	t.Fatal("restore finished before it was killed")
}

// The restored log's segments are those of a log written op by op: the
// data dir is a node's, not a copy of the repository's objects.
func TestRestoredLogIsPlainLog(t *testing.T) {
	ctx := context.Background()
	r, _, ops := backedUpRepo(t, 300, 100)
	dataDir := filepath.Join(t.TempDir(), "d")
	if _, err := Restore(ctx, r, Latest(), dataDir, nil); err != nil {
		t.Fatal(err)
	}
	direct := t.TempDir()
	l, _, err := kmblog.Open(kmblog.Config{Dir: direct}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ops...); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, want := treeOf(t, filepath.Join(dataDir, "log")), treeOf(t, direct)
	if len(got) != len(want) {
		t.Fatalf("segments %v vs %v", len(got), len(want))
	}
	for name, data := range want {
		if !bytes.Equal([]byte(got[name]), []byte(data)) {
			t.Fatalf("segment %s differs from the source log's", name)
		}
	}
}

// TestReadOps reads ranges of ops back from segments and, after
// retention, from a snapshot's parts.
func TestReadOps(t *testing.T) {
	r, _, ops := backedUpRepo(t, 60, 10, 25, 25)
	ctx := context.Background()
	read := func(first, last uint64) ([]kmblog.Op, error) {
		var got []kmblog.Op
		err := r.ReadOps(ctx, first, last, func(op *kmblog.Op) error { got = append(got, *op); return nil })
		return got, err
	}
	for _, rg := range [][2]uint64{{1, 60}, {1, 1}, {7, 33}, {60, 60}, {11, 35}} {
		got, err := read(rg[0], rg[1])
		if err != nil {
			t.Fatalf("ops %v: %v", rg, err)
		}
		assertOps(t, got, ops[rg[0]-1:rg[1]])
	}
	if _, err := read(50, 61); err == nil || !strings.Contains(err.Error(), "checkpoint") {
		t.Fatalf("ops past the checkpoint: %v", err)
	}
	if _, err := read(0, 3); err == nil {
		t.Fatal("op 0 was read")
	}
	if _, err := r.CreateSnapshot(ctx, time.Now(), 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ApplyRetention(ctx, RetentionPolicy{KeepLast: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := read(5, 40)
	if err != nil {
		t.Fatalf("after retention: %v", err)
	}
	assertOps(t, got, ops[4:40])
}
