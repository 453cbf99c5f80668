package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/kmb-db/kmb/store/backup"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/node"
	"github.com/kmb-db/kmb/store/superblock"
)

// runLog runs kmbd log check|repair: offline commands on a stopped node's
// data dir.
func runLog(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = "usage: kmbd log check --data-dir D [--json]\n       kmbd log repair --data-dir D (--backup-repo URL | --truncate --accept-data-loss)"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("kmbd log "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the data dir of a stopped node")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object (check)")
	repoURL := fs.String("backup-repo", "", "repair: replace damaged ops with the copies in this backup repository")
	truncate := fs.Bool("truncate", false, "repair: cut the log before its first damaged record, dropping every op from there on")
	acceptLoss := fs.Bool("accept-data-loss", false, "repair: with --truncate, confirm that acknowledged writes after the damage are to be dropped")
	switch args[0] {
	case "check", "repair":
	default:
		fmt.Fprintf(stderr, "kmbd log: unknown command %q\n%s\n", args[0], usage)
		return exitUsage
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 || *dataDir == "" {
		fmt.Fprintf(stderr, "kmbd log %s: --data-dir is required and no argument is taken\n%s\n", args[0], usage)
		return exitUsage
	}
	if args[0] == "check" {
		return logCheck(*dataDir, *jsonOut, stdout, stderr)
	}
	switch {
	case *repoURL != "" && *truncate:
		fmt.Fprintln(stderr, "kmbd log repair: choose --backup-repo or --truncate, not both")
		return exitUsage
	case *repoURL == "" && !*truncate:
		fmt.Fprintf(stderr, "kmbd log repair: say how: --backup-repo URL, or --truncate --accept-data-loss\n%s\n", usage)
		return exitUsage
	case *truncate && !*acceptLoss:
		fmt.Fprintln(stderr, "kmbd log repair: --truncate drops every op from the first damaged record on, acknowledged writes included; add --accept-data-loss to do it")
		return exitUsage
	}
	return logRepair(ctx, *dataDir, *repoURL, stdout, stderr)
}

// logCheckResult is what kmbd log check reports.
type logCheckResult struct {
	DataDir  string          `json:"data_dir"`
	Segments int             `json:"segments"`
	FirstOp  uint64          `json:"first_op"`
	LastOp   uint64          `json:"last_op"`
	Damage   []damageJSON    `json:"damage"`
	Super    superblockCheck `json:"superblock"`
	OK       bool            `json:"ok"`
}

type damageJSON struct {
	Segment  string `json:"segment"`
	Offset   int64  `json:"offset"`
	Bytes    int64  `json:"bytes"`
	FirstOp  uint64 `json:"first_op"`
	LastOp   uint64 `json:"last_op,omitempty"`
	Reason   string `json:"reason"`
	Detail   string `json:"detail"`
	TornTail bool   `json:"torn_tail"`
}

type superblockCheck struct {
	Present bool   `json:"present"`
	Version uint16 `json:"version,omitempty"`
	Damaged []int  `json:"damaged_copies,omitempty"`
	Stale   []int  `json:"stale_copies,omitempty"`
	Error   string `json:"error,omitempty"`
}

// logCheck verifies every record of dataDir's log and its superblock,
// changing nothing. Exit 0: nothing wrong; 3: bad records or superblock
// copies found; 1: the check could not run.
func logCheck(dataDir string, jsonOut bool, stdout, stderr io.Writer) int {
	logDir := filepath.Join(dataDir, "log")
	if _, err := os.Stat(logDir); err != nil {
		fmt.Fprintf(stderr, "kmbd log check: %v\n", err)
		return exitFailed
	}
	damage, rep, err := kmblog.Check(kmblog.Config{Dir: logDir})
	if err != nil {
		fmt.Fprintf(stderr, "kmbd log check: %v\n", err)
		return exitFailed
	}
	res := logCheckResult{DataDir: dataDir, Segments: rep.Segments, FirstOp: rep.FirstOp, LastOp: rep.LastOp, OK: len(damage) == 0}
	for _, d := range damage {
		res.Damage = append(res.Damage, damageJSON{Segment: d.Segment, Offset: d.Offset, Bytes: d.End - d.Offset,
			FirstOp: d.FirstOp, LastOp: d.LastOp, Reason: d.Reason, Detail: d.Detail, TornTail: d.Tail})
	}
	_, ok, srep, err := superblock.Read(dataDir)
	res.Super = superblockCheck{Present: ok, Version: srep.Version, Damaged: srep.Damaged, Stale: srep.Stale}
	if err != nil {
		res.Super.Error = err.Error()
	}
	if err != nil || len(srep.Damaged) > 0 {
		res.OK = false
	}

	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		result := "ok"
		if !res.OK {
			result = "DAMAGED"
		}
		fmt.Fprintf(w, "log\t%s: %s\n", logDir, result)
		fmt.Fprintf(w, "segments\t%d, ops %d..%d\n", res.Segments, res.FirstOp, res.LastOp)
		switch {
		case res.Super.Error != "":
			fmt.Fprintf(w, "superblock\t%s\n", res.Super.Error)
		case !ok:
			fmt.Fprintf(w, "superblock\tnone\n")
		case len(srep.Damaged) > 0:
			fmt.Fprintf(w, "superblock\tversion %d, DAMAGED copies %v of %d (kmbd rewrites them from the newest valid copy when it starts)\n", srep.Version, srep.Damaged, superblock.Copies)
		default:
			fmt.Fprintf(w, "superblock\tversion %d, sound\n", srep.Version)
		}
		w.Flush()
		for _, d := range damage {
			what := "CORRUPT (not a torn write: valid records follow)"
			if d.Tail {
				what = "torn tail (kmbd cuts it when it starts; a torn write was never acknowledged)"
			}
			fmt.Fprintf(stdout, "  %s: %s\n", d, what)
		}
		if !res.OK {
			fmt.Fprintln(stdout, "Repair: in a cluster, start the node: it fetches the damaged ops from its peers. A single node: kmbd log repair --data-dir D --backup-repo URL, or as a last resort --truncate --accept-data-loss (see docs/operations.md, \"A corrupt log\").")
		}
	}
	if !res.OK {
		return exitCorrupt
	}
	return exitOK
}

// logRepair replaces damaged ops of dataDir's log with the backup
// repository's copies (verified against the log's chain hashes), or cuts
// the log before the first damage.
func logRepair(ctx context.Context, dataDir, repoURL string, stdout, stderr io.Writer) int {
	lock, err := node.LockDataDir(dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd log repair: %v: stop the node first\n", err)
		return exitFailed
	}
	defer lock.Close()
	logDir := filepath.Join(dataDir, "log")
	l, rep, err := kmblog.Open(kmblog.Config{Dir: logDir, TolerateCorruption: true, VerifyAll: true}, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd log repair: %v\n", err)
		return exitFailed
	}
	defer l.Close()
	if rep.TruncatedBytes > 0 {
		fmt.Fprintf(stdout, "torn tail cut: %d bytes of %s at offset %d (%s)\n", rep.TruncatedBytes, rep.TruncatedSegment, rep.TruncatedOffset, rep.Reason)
	}
	faulty := l.Faulty()
	if len(faulty) == 0 {
		fmt.Fprintf(stdout, "log %s: no corrupt ops; nothing to repair\n", logDir)
		return exitOK
	}

	if repoURL == "" {
		cut := faulty[0].FirstOp - 1
		dropped := l.LastOp() - cut
		if err := l.TruncateAfter(cut); err != nil {
			fmt.Fprintf(stderr, "kmbd log repair: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "log %s cut after op %d: %d ops dropped (ops %d..%d), acknowledged writes among them\n",
			logDir, cut, dropped, cut+1, cut+dropped)
		return exitOK
	}

	b, err := backup.OpenURL(repoURL)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd log repair: %v\n", err)
		return exitFailed
	}
	repo, err := backup.Open(ctx, b)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd log repair: %s: %v\n", repoURL, err)
		return exitFailed
	}
	for _, d := range faulty {
		ops, err := backupCopies(ctx, repo, l, d)
		if err == nil {
			err = l.Repair(ops)
		}
		if err != nil {
			fmt.Fprintf(stderr, "kmbd log repair: ops %d..%d (%s): %v\n", d.FirstOp, d.LastOp, d.Segment, err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "repaired ops %d..%d of %s from %s\n", d.FirstOp, d.LastOp, d.Segment, repoURL)
	}
	return exitOK
}

// backupCopies reads the ops of damaged run d from repo. Ops backed up
// before the log had chain hashes carry none; theirs are computed from the
// op before the run, which Repair then checks like any other.
func backupCopies(ctx context.Context, repo *backup.Repository, l *kmblog.Log, d kmblog.Damage) ([]*kmblog.Op, error) {
	var prev kmblog.Chain
	if d.FirstOp > 1 {
		before, err := l.Read(d.FirstOp - 1)
		if err != nil {
			return nil, fmt.Errorf("op %d before the damage: %w", d.FirstOp-1, err)
		}
		prev = before.Chain
	}
	var ops []*kmblog.Op
	err := repo.ReadOps(ctx, d.FirstOp, d.LastOp, func(op *kmblog.Op) error {
		if op.Chain == (kmblog.Chain{}) {
			op.Chain = kmblog.ChainHash(prev, op)
		}
		prev = op.Chain
		ops = append(ops, op)
		return nil
	})
	return ops, err
}
