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
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kmb-db/kmb/client"
	"github.com/kmb-db/kmb/store/audit"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/superblock"
	"github.com/kmb-db/kmb/telemetry/logging"
)

// runAudit runs kmbd audit export|verify.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = "usage: kmbd audit export (--addr HOST:PORT | --data-dir D) --start DAY --end DAY [--tenant T] [--format json|ndjson|csv] --output FILE\n       kmbd audit verify FILE [--addr HOST:PORT]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "export":
		return auditExport(ctx, args[1:], stdout, stderr)
	case "verify":
		return auditVerify(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "kmbd audit: unknown command %q\n%s\n", args[0], usage)
	return exitUsage
}

// nodeFlags are the flags of commands that talk to a node's client API:
// --addr and the client flags (--token, --cacert, --cert, --key).
type nodeFlags struct {
	addr *string
	*clientFlags
}

func addNodeFlags(fs *flag.FlagSet) nodeFlags {
	return nodeFlags{
		addr:        fs.String("addr", "", "a node's client API, host:port (the leader or any replica)"),
		clientFlags: addClientFlags(fs),
	}
}

// apiClient returns the client of the node named by --addr: https when a
// TLS flag is set, the token from --token or $KMB_TOKEN. Calls are bounded
// by their context only: an export of a long log takes as long as it takes.
func (f nodeFlags) apiClient() (*client.Client, error) {
	token, cfg, err := f.load(os.Getenv)
	if err != nil {
		return nil, err
	}
	return client.New([]string{*f.addr}, client.Options{Token: token, TLSConfig: cfg, RequestTimeout: -1})
}

// auditLogger logs the commands' JSON events to stderr, as the backup
// commands do.
func auditLogger(stderr io.Writer) *slog.Logger {
	h, err := logging.NewHandler(stderr, logging.Options{DefaultTarget: "kmb_audit"})
	if err != nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(h)
}

// auditExport writes an export to a temporary file next to --output,
// checks it, and renames it into place: no partial file is ever left
// under the final name.
func auditExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kmbd audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nf := addNodeFlags(fs)
	dataDir := fs.String("data-dir", "", "export from a stopped node's data dir instead of --addr")
	start := fs.String("start", "", "first UTC day (2024-01-01) or RFC 3339 instant, inclusive")
	end := fs.String("end", "", "last UTC day (2024-12-31) or RFC 3339 instant, inclusive")
	tenant := fs.String("tenant", "", "one tenant's ops only")
	format := fs.String("format", "json", "json, ndjson or csv")
	output := fs.String("output", "", "the file to write")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "kmbd audit export: "+format+"\n", a...)
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case (*nf.addr == "") == (*dataDir == ""):
		return usage("give one of --addr HOST:PORT and --data-dir D")
	case *start == "" || *end == "":
		return usage("--start and --end are required (UTC days like 2024-01-01, or RFC 3339 instants)")
	case *output == "":
		return usage("--output FILE is required")
	}
	rg, err := audit.ParseRange(*start, *end)
	if err != nil {
		return usage("%v", err)
	}
	rg.Tenant = *tenant
	if *tenant != "" && !validTenantID(*tenant) {
		return usage("--tenant %q: accepted [a-z0-9][a-z0-9_-]{0,63}", *tenant)
	}
	f, err := audit.ParseFormat(*format)
	if err != nil {
		return usage("--%v", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(*output), "."+filepath.Base(*output)+".tmp-*")
	if err != nil {
		return usage("--output %s: %v", *output, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	logger := auditLogger(stderr)
	progress := auditProgress(stderr, "export")
	began := time.Now()

	var sum audit.Summary
	if *dataDir != "" {
		sum, err = exportOffline(ctx, *dataDir, tmp, rg, f, progress)
	} else {
		err = exportOnline(ctx, nf, tmp, rg, f, progress)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err != nil {
		fmt.Fprintf(stderr, "kmbd audit export: %v\n", err)
		logger.Error("audit export failed", slog.String("error", err.Error()))
		return exitFailed
	}
	// What was written must verify before it takes the final name.
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		fmt.Fprintf(stderr, "kmbd audit export: %v\n", err)
		return exitFailed
	}
	rep, err := audit.Verify(tmp)
	if err == nil && !rep.OK() {
		err = fmt.Errorf("the export does not verify: %s", rep.Problem)
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), *output)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kmbd audit export: %v\n", err)
		logger.Error("audit export failed", slog.String("error", err.Error()))
		return exitFailed
	}
	done = true
	fi, _ := os.Stat(*output)
	d := time.Since(began)
	secs := max(d.Seconds(), 1e-9)
	logger.Info("audit export finished", slog.String("output", *output), slog.String("format", string(f)),
		slog.Uint64("records", rep.Records), slog.Uint64("ops", rep.Ops), slog.Uint64("first_op", rep.FirstOp), slog.Uint64("last_op", rep.LastOp),
		slog.Int64("bytes", fi.Size()), slog.Float64("duration_seconds", d.Seconds()), slog.Float64("records_per_second", float64(rep.Records)/secs))
	_ = sum
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "audit export summary\t\n")
	fmt.Fprintf(w, "  output\t%s (%s)\n", *output, f)
	fmt.Fprintf(w, "  range\t%s .. %s%s\n", rg.Start.Format(time.RFC3339), rg.End.Add(-time.Nanosecond).Format(time.RFC3339Nano), tenantNote(rg.Tenant))
	fmt.Fprintf(w, "  records\t%d in %d ops (ops %d..%d)\n", rep.Records, rep.Ops, rep.FirstOp, rep.LastOp)
	fmt.Fprintf(w, "  chain\tbefore %x, last %x\n", rep.ChainBefore[:8], rep.ChainLast[:8])
	fmt.Fprintf(w, "  bytes\t%s\n", fmtBytes(uint64(fi.Size())))
	fmt.Fprintf(w, "  duration\t%s\n", d.Round(time.Millisecond))
	fmt.Fprintf(w, "  rate\t%.0f records/s, %s/s\n", float64(rep.Records)/secs, fmtBytes(uint64(float64(fi.Size())/secs)))
	w.Flush()
	return exitOK
}

func tenantNote(t string) string {
	if t == "" {
		return ", every tenant"
	}
	return ", tenant " + t
}

// validTenantID is the API's rule for tenant ids.
func validTenantID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

// exportOnline streams GET /v1/audit into w.
func exportOnline(ctx context.Context, nf nodeFlags, w io.Writer, rg audit.Range, f audit.Format, progress func(done, total uint64)) error {
	c, err := nf.apiClient()
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.AuditExport(ctx, rg.Query(f), &progressWriter{w: w, progress: progress})
	return err
}

// progressWriter reports the bytes written so far to progress, if any.
type progressWriter struct {
	w        io.Writer
	done     uint64
	progress func(done, total uint64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += uint64(n)
	if p.progress != nil {
		p.progress(p.done, 0)
	}
	return n, err
}

// offlineLog is a stopped node's log as an audit source: its committed
// ops, as far as the superblock's commit number says.
type offlineLog struct {
	l      *kmblog.Log
	commit uint64
}

func (o offlineLog) FirstOpAt(t int64) uint64 { return o.l.FirstOpAt(t) }

func (o offlineLog) Scan(from uint64, fn func(*kmblog.Op) error) error {
	return o.l.ScanRange(from, o.commit, fn)
}

func (o offlineLog) Chain(n uint64) (kmblog.Chain, error) {
	if n == 0 {
		return kmblog.Chain{}, nil
	}
	op, err := o.l.Read(n)
	return op.Chain, err
}

func exportOffline(ctx context.Context, dataDir string, w io.Writer, rg audit.Range, f audit.Format, progress func(done, total uint64)) (audit.Summary, error) {
	sb, ok, _, err := superblock.Read(dataDir)
	if err != nil {
		return audit.Summary{}, err
	}
	if !ok {
		return audit.Summary{}, fmt.Errorf("--data-dir %s holds no kmbd data (no superblock)", dataDir)
	}
	l, _, err := kmblog.Open(kmblog.Config{Dir: filepath.Join(dataDir, "log"), ReadOnly: true}, nil, nil)
	if err != nil {
		return audit.Summary{}, err
	}
	defer l.Close()
	src := offlineLog{l: l, commit: min(sb.Commit, l.LastOp())}
	meta := audit.Meta{NodeID: sb.NodeID}
	if c, err := src.Chain(1); err == nil && src.commit >= 1 {
		meta.Cluster = fmt.Sprintf("%x", c[:])
	}
	return audit.Export(ctx, w, src, rg, f, meta, progress)
}

// auditProgress draws a progress line on a terminal.
func auditProgress(stderr io.Writer, what string) func(done, total uint64) {
	if !isTerminal(stderr) {
		return nil
	}
	start, last := time.Now(), time.Time{}
	return func(done, total uint64) {
		now := time.Now()
		if now.Sub(last) < 200*time.Millisecond && (total == 0 || done < total) {
			return
		}
		last = now
		secs := max(now.Sub(start).Seconds(), 1e-9)
		if total == 0 { // bytes received from a node
			fmt.Fprintf(stderr, "\r%s: %s received, %s/s ", what, fmtBytes(done), fmtBytes(uint64(float64(done)/secs)))
			return
		}
		fmt.Fprintf(stderr, "\r%s: %5.1f%% of the range ", what, 100*float64(done)/float64(total))
		if done >= total {
			fmt.Fprintln(stderr)
		}
	}
}

// auditVerify checks an export: exit 0 intact, 3 a record altered,
// dropped, inserted or reordered (or, with --addr, a chain that differs
// from the cluster's), 1 when the check could not run.
func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kmbd audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nf := addNodeFlags(fs)
	jsonOut := fs.Bool("json", false, "print the result as one JSON object")
	// The file comes first, the flags after it, or the other way round.
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kmbd audit verify: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if file == "" {
		fmt.Fprintln(stderr, "usage: kmbd audit verify FILE [--addr HOST:PORT]")
		return exitUsage
	}
	in, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd audit verify: %v\n", err)
		return exitFailed
	}
	defer in.Close()
	began := time.Now()
	rep, err := audit.Verify(in)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd audit verify: %s: %v\n", file, err)
		return exitFailed
	}
	live := ""
	if rep.OK() && *nf.addr != "" {
		problem, err := verifyLive(ctx, nf, &rep)
		if err != nil {
			fmt.Fprintf(stderr, "kmbd audit verify: checking against %s: %v\n", *nf.addr, err)
			return exitFailed
		}
		if problem != "" {
			rep.Problem = &audit.Problem{What: problem}
		} else {
			live = "matches the cluster at " + *nf.addr
		}
	}
	d := time.Since(began)
	result := "intact"
	if !rep.OK() {
		result = "CORRUPT: " + rep.Problem.String()
	}
	if *jsonOut {
		out := map[string]any{"ok": rep.OK(), "format": rep.Format, "records": rep.Records, "ops": rep.Ops,
			"first_op": rep.FirstOp, "last_op": rep.LastOp, "chain_before": fmt.Sprintf("%x", rep.ChainBefore[:]),
			"chain_last": fmt.Sprintf("%x", rep.ChainLast[:]), "node_id": rep.NodeID, "cluster": rep.Cluster,
			"tenant": rep.Range.Tenant, "duration_seconds": d.Seconds()}
		if rep.Problem != nil {
			out["problem"] = rep.Problem.String()
			out["problem_record"] = rep.Problem.Record
		}
		if live != "" {
			out["live"] = live
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "verify\t%s\n", result)
		fmt.Fprintf(w, "file\t%s (%s), from node %d of cluster %s\n", file, rep.Format, rep.NodeID, shortHex(rep.Cluster))
		fmt.Fprintf(w, "records\t%d in %d ops (ops %d..%d)%s\n", rep.Records, rep.Ops, rep.FirstOp, rep.LastOp, tenantNote(rep.Range.Tenant))
		fmt.Fprintf(w, "chain\tbefore %x, last %x\n", rep.ChainBefore[:8], rep.ChainLast[:8])
		if live != "" {
			fmt.Fprintf(w, "live\t%s\n", live)
		} else if rep.Filtered && *nf.addr == "" {
			fmt.Fprintf(w, "note\tone tenant's export: each op checks out; --addr also checks them against the cluster\n")
		}
		fmt.Fprintf(w, "duration\t%s\n", d.Round(time.Millisecond))
		w.Flush()
	}
	if !rep.OK() {
		return exitCorrupt
	}
	return exitOK
}

func shortHex(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	if s == "" {
		return "(none)"
	}
	return s
}

// verifyLive compares the file's chain hashes with the cluster's: the hash
// before the first op and of the last (which vouch for everything between
// in an export of every tenant), and for a tenant's export every op's.
func verifyLive(ctx context.Context, nf nodeFlags, rep *audit.Report) (string, error) {
	c, err := nf.apiClient()
	if err != nil {
		return "", err
	}
	defer c.Close()
	want := map[uint64]kmblog.Chain{}
	if rep.Ops > 0 {
		want[rep.FirstOp-1] = rep.ChainBefore
		want[rep.LastOp] = rep.ChainLast
	}
	for op, ch := range rep.OpChains {
		want[op] = ch
	}
	delete(want, 0)
	ops := make([]uint64, 0, len(want))
	for op := range want {
		ops = append(ops, op)
	}
	for len(ops) > 0 {
		batch := ops[:min(len(ops), 1000)]
		ops = ops[len(batch):]
		cluster, chains, err := c.AuditChains(ctx, batch)
		if err != nil {
			return "", err
		}
		if rep.Cluster != "" && cluster != rep.Cluster {
			return fmt.Sprintf("the file comes from cluster %s, %s is in cluster %s", shortHex(rep.Cluster), *nf.addr, shortHex(cluster)), nil
		}
		for _, op := range batch {
			h := chains[op]
			if h == "" {
				return "", fmt.Errorf("the cluster does not hold op %d (not yet committed on that node, or not in its local log)", op)
			}
			if w := want[op]; h != fmt.Sprintf("%x", w[:]) {
				return fmt.Sprintf("op %d: the file's chain hash %x differs from the cluster's %s", op, w[:8], h[:16]), nil
			}
		}
	}
	return "", nil
}
