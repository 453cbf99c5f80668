package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/kmb-db/kmb/store/backup"
	"github.com/kmb-db/kmb/telemetry"
	"github.com/kmb-db/kmb/telemetry/metric"
	"github.com/kmb-db/kmb/telemetry/spans"
)

// Exit codes of the backup, snapshot and restore commands.
const (
	exitOK      = 0
	exitFailed  = 1 // the command could not do its work
	exitUsage   = 2 // bad flags
	exitCorrupt = 3 // verify found problems in the repository
)

// pushJob is the Pushgateway job of one-shot backup commands.
const pushJob = "kmb_backup"

// oneShot is what every backup, snapshot and restore command shares: its
// flags, a JSON (or text) logger on stderr, the tracer OTEL_* configures,
// and the metrics it pushes.
type oneShot struct {
	name        string
	fs          *flag.FlagSet
	repoURL     *string
	pushgateway *string
	jsonOut     *bool
	stdout      io.Writer
	stderr      io.Writer
	tel         *telemetry.Telemetry
	logger      *slog.Logger
	push        *metric.Registry // what the command pushes
}

func newOneShot(name string, stdout, stderr io.Writer) *oneShot {
	c := &oneShot{name: name, fs: flag.NewFlagSet("kmbd "+name, flag.ContinueOnError), stdout: stdout, stderr: stderr, push: metric.NewRegistry()}
	c.fs.SetOutput(stderr)
	c.repoURL = c.fs.String("repo", "", "repository URL: file:///absolute/dir or s3://bucket/prefix?endpoint=...&region=...")
	c.pushgateway = c.fs.String("pushgateway", "", "push the command's metrics to this Prometheus Pushgateway URL (push-add) when it ends")
	c.jsonOut = c.fs.Bool("json", false, "print the result as one JSON object")
	return c
}

// parse parses args and sets up logging and tracing; it returns an exit
// code when the command must stop.
func (c *oneShot) parse(args []string, getenv func(string) string) (int, bool) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "kmbd %s: unexpected argument %q\n", c.name, c.fs.Arg(0))
		return exitUsage, false
	}
	if *c.repoURL == "" {
		fmt.Fprintf(c.stderr, "kmbd %s: --repo is required (file:///absolute/dir or s3://bucket/prefix?endpoint=...)\n", c.name)
		return exitUsage, false
	}
	cfg := telemetry.DefaultConfig()
	if err := cfg.ApplyEnv(getenv); err != nil {
		fmt.Fprintf(c.stderr, "kmbd %s: %v\n", c.name, err)
		return exitUsage, false
	}
	b := buildInfo()
	tel, err := telemetry.New(cfg, telemetry.Options{Build: telemetry.Build{Version: b.Version, Revision: b.Revision, GoVersion: b.GoVersion}, LogOutput: c.stderr})
	if err != nil {
		fmt.Fprintf(c.stderr, "kmbd %s: %v\n", c.name, err)
		return exitUsage, false
	}
	c.tel, c.logger = tel, tel.Logger("kmb_backup")
	return 0, true
}

// open opens the repository; create makes it when missing.
func (c *oneShot) open(ctx context.Context, create bool) (*backup.Repository, error) {
	b, err := backup.OpenURL(*c.repoURL)
	if err != nil {
		return nil, err
	}
	if create {
		return backup.OpenOrInit(ctx, b)
	}
	r, err := backup.Open(ctx, b)
	if errors.Is(err, backup.ErrNoRepository) {
		return nil, fmt.Errorf("%s holds no repository (run kmbd backup start --repo URL, or start kmbd with --backup-repo)", *c.repoURL)
	}
	return r, err
}

// finish pushes the metrics, flushes spans and returns code.
func (c *oneShot) finish(code int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if *c.pushgateway != "" {
		host, _ := os.Hostname()
		if err := telemetry.Push(ctx, *c.pushgateway, pushJob, map[string]string{"instance": host, "command": strings.ReplaceAll(c.name, " ", "_")}, c.push); err != nil {
			c.logger.Error("metrics push failed", slog.String("error", err.Error()))
			if code == exitOK {
				code = exitFailed
			}
		}
	}
	if err := c.tel.Shutdown(ctx); err != nil {
		c.logger.Warn("telemetry flush failed", slog.String("error", err.Error()))
	}
	return code
}

func (c *oneShot) fail(err error) int {
	fmt.Fprintf(c.stderr, "kmbd %s: %v\n", c.name, err)
	c.logger.Error(c.name+" failed", slog.String("error", err.Error()))
	return c.finish(exitFailed)
}

func (c *oneShot) printJSON(v any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// runBackup runs kmbd backup start|pause|resume|status|verify|list.
func runBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	usage := "usage: kmbd backup start|pause|resume|status|verify|list --repo URL [flags]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	sub := args[0]
	c := newOneShot("backup "+sub, stdout, stderr)
	switch sub {
	case "start", "pause", "resume", "status", "list", "verify":
	default:
		fmt.Fprintf(stderr, "kmbd backup: unknown command %q\n%s\n", sub, usage)
		return exitUsage
	}
	if code, ok := c.parse(args[1:], getenv); !ok {
		return code
	}
	switch sub {
	case "start", "pause", "resume":
		r, err := c.open(ctx, sub == "start")
		if err != nil {
			return c.fail(err)
		}
		if err := r.SetPaused(ctx, sub == "pause", time.Now()); err != nil {
			return c.fail(err)
		}
		verb := map[string]string{"start": "started", "pause": "paused", "resume": "resumed"}[sub]
		c.logger.Info("backup task "+verb, slog.String("repository", *c.repoURL), slog.String("repository_id", r.Stats().RepositoryID))
		fmt.Fprintf(stdout, "backup task %s in %s; the node that leads the cluster follows within its checkpoint_interval\n", verb, *c.repoURL)
		return c.finish(exitOK)
	case "status":
		r, err := c.open(ctx, false)
		if err != nil {
			return c.fail(err)
		}
		c.status(r.Stats())
		return c.finish(exitOK)
	case "list":
		r, err := c.open(ctx, false)
		if err != nil {
			return c.fail(err)
		}
		c.list(r.Manifest())
		return c.finish(exitOK)
	default:
		return c.verify(ctx)
	}
}

func fmtWhen(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339) + " (" + time.Since(t).Round(time.Second).String() + " ago)"
}

func (c *oneShot) status(s backup.Stats) {
	state := "not paused: the leader of a cluster started with this --backup-repo runs it"
	if !s.Paused.IsZero() {
		state = "paused since " + fmtWhen(s.Paused)
	}
	if *c.jsonOut {
		c.printJSON(map[string]any{
			"repository": *c.repoURL, "repository_id": s.RepositoryID, "state": map[bool]string{true: "running", false: "paused"}[s.Paused.IsZero()],
			"checkpoint_op": s.Checkpoint.Op, "checkpoint_position": s.Checkpoint.Position, "checkpoint_time": s.Checkpoint.Time(),
			"segments": s.Segments, "snapshots": s.Snapshots, "stored_bytes": s.StoredBytes,
			"last_snapshot_success": s.LastSnapshotSuccess, "last_verify_success": s.LastVerifySuccess,
			"oldest_restorable": s.OldestRestorable, "created": s.Created,
		})
		return
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "repository\t%s (id %s)\n", *c.repoURL, s.RepositoryID)
	fmt.Fprintf(w, "task\t%s\n", state)
	fmt.Fprintf(w, "checkpoint\top %d, position %d, committed up to %s\n", s.Checkpoint.Op, s.Checkpoint.Position, fmtWhen(s.Checkpoint.Time()))
	fmt.Fprintf(w, "restorable\tfrom %s to the checkpoint\n", fmtWhen(s.OldestRestorable))
	fmt.Fprintf(w, "segments\t%d\n", s.Segments)
	fmt.Fprintf(w, "snapshots\t%d, last success %s\n", s.Snapshots, fmtWhen(s.LastSnapshotSuccess))
	fmt.Fprintf(w, "last verify success\t%s\n", fmtWhen(s.LastVerifySuccess))
	fmt.Fprintf(w, "stored\t%s\n", fmtBytes(s.StoredBytes))
	w.Flush()
}

func (c *oneShot) list(m backup.Manifest) {
	if *c.jsonOut {
		c.printJSON(map[string]any{"snapshots": m.Snapshots, "segments": m.Segments, "checkpoint": m.Checkpoint})
		return
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tID\tOPS\tPOSITIONS\tCOMMITTED UP TO\tSTORED")
	for _, s := range m.Snapshots {
		fmt.Fprintf(w, "snapshot\t%s\t1..%d\t1..%d\t%s\t%s\n", s.ID, s.Op, s.Position, time.Unix(0, s.TimestampUnixNano).UTC().Format(time.RFC3339), fmtBytes(s.StoredBytes()))
	}
	for _, s := range m.Segments {
		fmt.Fprintf(w, "segment\t%s\t%d..%d\t%d..%d\t%s\t%s\n", s.Name, s.FirstOp, s.LastOp, s.FirstPosition, s.LastPosition,
			time.Unix(0, s.LastTimestampUnixNano).UTC().Format(time.RFC3339), fmtBytes(s.StoredBytes))
	}
	w.Flush()
}

func (c *oneShot) verify(ctx context.Context) int {
	b, err := backup.OpenURL(*c.repoURL)
	if err != nil {
		return c.fail(err)
	}
	ctx, span := c.tel.Spans.StartAlways(ctx, spans.BackupVerify)
	rep, err := backup.VerifyBackendProgress(ctx, b, c.progressLine("verify", "objects", nil))
	now := time.Now()
	backup.RecordVerify(c.push, &rep, err, now)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return c.fail(err)
	}
	span.SetAttributes(spans.AttrProblems.Int(len(rep.Problems)))
	if !rep.OK() {
		span.SetStatus(codes.Error, "repository corrupt")
	}
	span.End()
	if rep.OK() {
		if r, err := backup.Open(ctx, b); err == nil {
			if err := r.RecordVerifySuccess(ctx, now); err != nil {
				c.logger.Warn("verify passed but could not be recorded in the manifest", slog.String("error", err.Error()))
			}
		}
	}
	for _, p := range rep.Problems {
		c.logger.Error("backup repository problem", slog.String("object", p.Object), slog.String("kind", p.Kind), slog.String("detail", p.Detail))
	}
	c.logger.Info("backup verify finished", slog.Bool("ok", rep.OK()), slog.Int("problems", len(rep.Problems)), slog.Int("objects", rep.Segments),
		slog.Int("objects_ok", rep.SegmentsOK), slog.Int("orphans", len(rep.Orphans)), slog.Uint64("entries", rep.Entries),
		slog.Uint64("stored_bytes", rep.StoredBytes), slog.Duration("duration", rep.Duration))
	if *c.jsonOut {
		c.printJSON(map[string]any{"ok": rep.OK(), "problems": rep.Problems, "orphans": rep.Orphans, "objects": rep.Segments,
			"objects_ok": rep.SegmentsOK, "checkpoint": rep.Checkpoint, "entries": rep.Entries, "stored_bytes": rep.StoredBytes,
			"duration_seconds": rep.Duration.Seconds()})
	} else {
		w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		result := "ok"
		if !rep.OK() {
			result = fmt.Sprintf("CORRUPT: %d problems", len(rep.Problems))
		}
		fmt.Fprintf(w, "verify\t%s\n", result)
		fmt.Fprintf(w, "objects\t%d checked, %d sound, %d not listed in the manifest (harmless)\n", rep.Segments, rep.SegmentsOK, len(rep.Orphans))
		fmt.Fprintf(w, "checkpoint\top %d, position %d\n", rep.Checkpoint.Op, rep.Checkpoint.Position)
		fmt.Fprintf(w, "entries\t%d in %s stored\n", rep.Entries, fmtBytes(rep.StoredBytes))
		fmt.Fprintf(w, "duration\t%s\n", rep.Duration.Round(time.Millisecond))
		w.Flush()
		for _, p := range rep.Problems {
			fmt.Fprintf(c.stdout, "  %s\n", p)
		}
	}
	if !rep.OK() {
		return c.finish(exitCorrupt)
	}
	return c.finish(exitOK)
}

// runSnapshot runs kmbd snapshot create.
func runSnapshot(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "usage: kmbd snapshot create --repo URL [--keep-last N] [--keep-within D] [--pushgateway URL]")
		return exitUsage
	}
	c := newOneShot("snapshot create", stdout, stderr)
	keepLast := c.fs.Int("keep-last", 0, "after the snapshot, keep only the newest N snapshots (0: no count limit)")
	keepWithin := c.fs.Duration("keep-within", 0, "after the snapshot, also keep snapshots taken within this duration (0: off)")
	if code, ok := c.parse(args[1:], getenv); !ok {
		return code
	}
	r, err := c.open(ctx, false)
	if err != nil {
		return c.fail(err)
	}
	ctx, span := c.tel.Spans.StartAlways(ctx, spans.Snapshot)
	res, err := r.CreateSnapshot(ctx, time.Now(), 0, c.progressLine("snapshot", "entries", nil))
	backup.RecordSnapshot(c.push, res, err, time.Now())
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return c.fail(err)
	}
	span.End()
	ret, err := r.ApplyRetention(ctx, backup.RetentionPolicy{KeepLast: *keepLast, KeepWithin: *keepWithin}, time.Now())
	if err != nil {
		return c.fail(fmt.Errorf("snapshot %s taken, but retention failed: %w", res.Snapshot.ID, err))
	}
	c.summary("snapshot", res.Snapshot.Position, res.RawBytes, res.StoredBytes, res.Duration, []kv{
		{"snapshot", res.Snapshot.ID},
		{"position", strconv.FormatUint(res.Snapshot.Position, 10)},
		{"new", strconv.FormatBool(res.Created)},
		{"retention", fmt.Sprintf("%d snapshots and %d segments deleted", ret.Snapshots, ret.Segments)},
	})
	return c.finish(exitOK)
}

// runRestore runs kmbd restore.
func runRestore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := newOneShot("restore", stdout, stderr)
	toPosition := c.fs.String("to-position", "", "restore up to this log position")
	toTime := c.fs.String("to-time", "", "restore the ops committed at or before this RFC 3339 time")
	dataDir := c.fs.String("data-dir", "", "the new data dir to write (must not exist or be empty)")
	nodeID := c.fs.Uint64("node-id", 1, "the node the data dir is for (with --replicas, one of them)")
	replicas := c.fs.String("replicas", "", "the cluster the restored nodes form, id=host:port,... as kmbd --replicas; empty: a single node")
	if code, ok := c.parse(args, getenv); !ok {
		return code
	}
	peers, err := parseReplicas(*replicas)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd restore: --replicas: %v\n", err)
		return exitUsage
	}
	who := backup.SingleNode()
	who.ID = *nodeID
	if len(peers) > 0 {
		if _, ok := peers[*nodeID]; !ok {
			fmt.Fprintf(stderr, "kmbd restore: --node-id %d is not in --replicas %q\n", *nodeID, *replicas)
			return exitUsage
		}
		if len(peers) > 1 && *toPosition == "" && *toTime == "" {
			fmt.Fprintln(stderr, "kmbd restore: --replicas names a cluster: give --to-position or --to-time, the same for every node, so that all restore the same ops (the repository's checkpoint may move between the runs)")
			return exitUsage
		}
		ids := make([]uint64, 0, len(peers))
		for id := range peers {
			ids = append(ids, id)
		}
		who = backup.ClusterNode(*nodeID, ids)
	} else if *nodeID != 1 {
		fmt.Fprintln(stderr, "kmbd restore: --node-id without --replicas: a single restored node is node 1")
		return exitUsage
	}
	target := backup.Latest()
	switch {
	case *toPosition != "" && *toTime != "":
		fmt.Fprintln(stderr, "kmbd restore: give --to-position or --to-time, not both")
		return exitUsage
	case *toPosition != "":
		n, err := strconv.ParseUint(*toPosition, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "kmbd restore: --to-position %q: accepted a position, 0 or more\n", *toPosition)
			return exitUsage
		}
		target = backup.ToPosition(n)
	case *toTime != "":
		t, err := time.Parse(time.RFC3339Nano, *toTime)
		if err != nil {
			fmt.Fprintf(stderr, "kmbd restore: --to-time %q: accepted an RFC 3339 time such as 2026-11-22T10:00:00Z\n", *toTime)
			return exitUsage
		}
		target = backup.ToTime(t)
	}
	if *dataDir == "" {
		fmt.Fprintln(stderr, "kmbd restore: --data-dir is required: the new data dir to write")
		return exitUsage
	}
	r, err := c.open(ctx, false)
	if err != nil {
		return c.fail(err)
	}
	m := backup.NewRestoreMetrics(c.push)
	m.InProgress.Set(1)
	ctx, span := c.tel.Spans.StartAlways(ctx, spans.Restore, spans.AttrRestoreTarget.String(target.String()))
	c.logger.Info("restore started", slog.String("repository", *c.repoURL), slog.String("target", target.String()), slog.String("data_dir", *dataDir))
	sum, err := backup.RestoreNode(ctx, r, target, *dataDir, who, c.progressLine("restore", "entries", m.Progress))
	m.InProgress.Set(0)
	m.Entries.Add(sum.Entries)
	result := "success"
	if err != nil {
		result = "failure"
		span.SetStatus(codes.Error, err.Error())
	}
	m.Duration.With(result).ObserveDuration(sum.Duration)
	span.SetAttributes(spans.AttrOpNumberLast.Int64(int64(sum.LastOp)), spans.AttrBatchEntries.Int64(int64(sum.Entries)))
	span.End()
	if err != nil {
		return c.fail(err)
	}
	next := "kmbd --data-dir " + sum.DataDir
	if len(peers) > 0 {
		next = fmt.Sprintf("kmbd --node-id %d --replicas %s --data-dir %s", who.ID, *replicas, sum.DataDir)
	}
	c.summary("restore", sum.Entries, sum.Bytes, sum.StoredBytes, sum.Duration, []kv{
		{"target", target.String()},
		{"data dir", sum.DataDir},
		{"last position", strconv.FormatUint(sum.LastPosition, 10)},
		{"last op", strconv.FormatUint(sum.LastOp, 10)},
		{"objects read", strconv.Itoa(sum.Segments)},
		{"next", next},
	})
	return c.finish(exitOK)
}

// progressLine returns a progress callback that calls also (when not nil)
// and, on a terminal, rewrites one line of stderr at most five times a
// second: "restore:  42.0%  1200 / 2857 entries  5000 entries/s". It
// ends the line when done reaches total.
func (c *oneShot) progressLine(what, unit string, also func(done, total uint64)) func(done, total uint64) {
	if !isTerminal(c.stderr) {
		return also
	}
	start, last := time.Now(), time.Time{}
	return func(done, total uint64) {
		if also != nil {
			also(done, total)
		}
		now := time.Now()
		if now.Sub(last) < 200*time.Millisecond && done < total {
			return
		}
		last = now
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		rate := float64(done) / max(now.Sub(start).Seconds(), 1e-9)
		fmt.Fprintf(c.stderr, "\r%s: %5.1f%%  %d / %d %s  %.0f %s/s ", what, pct, done, total, unit, rate, unit)
		if done >= total {
			fmt.Fprintln(c.stderr)
		}
	}
}

type kv struct{ k, v string }

// summary prints the end-of-run table and logs it as one JSON event.
func (c *oneShot) summary(what string, entries, raw, stored uint64, d time.Duration, extra []kv) {
	secs := max(d.Seconds(), 1e-9)
	ratio := 0.0
	if stored > 0 {
		ratio = float64(raw) / float64(stored)
	}
	c.logger.Info(what+" finished",
		slog.Uint64("entries", entries), slog.Uint64("bytes", raw), slog.Uint64("stored_bytes", stored),
		slog.Float64("duration_seconds", d.Seconds()), slog.Float64("entries_per_second", float64(entries)/secs),
		slog.Float64("bytes_per_second", float64(raw)/secs), slog.Float64("compression_ratio", ratio))
	if *c.jsonOut {
		out := map[string]any{"entries": entries, "bytes": raw, "stored_bytes": stored, "duration_seconds": d.Seconds(),
			"entries_per_second": float64(entries) / secs, "bytes_per_second": float64(raw) / secs, "compression_ratio": ratio}
		for _, e := range extra {
			out[strings.ReplaceAll(e.k, " ", "_")] = e.v
		}
		c.printJSON(out)
		return
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "%s summary\t\n", what)
	for _, e := range extra {
		fmt.Fprintf(w, "  %s\t%s\n", e.k, e.v)
	}
	fmt.Fprintf(w, "  entries\t%d\n", entries)
	fmt.Fprintf(w, "  bytes\t%s raw\n", fmtBytes(raw))
	fmt.Fprintf(w, "  stored\t%s (compression ratio %.2f)\n", fmtBytes(stored), ratio)
	fmt.Fprintf(w, "  duration\t%s\n", d.Round(time.Millisecond))
	fmt.Fprintf(w, "  throughput\t%.0f entries/s, %s/s\n", float64(entries)/secs, fmtBytes(uint64(float64(raw)/secs)))
	w.Flush()
}

func fmtBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// isTerminal reports whether w is a terminal, where progress lines go.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
