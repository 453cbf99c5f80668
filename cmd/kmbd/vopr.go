package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/kmb-db/kmb/internal/vopr"
	"github.com/kmb-db/kmb/internal/vopr/dashboard"
	"github.com/kmb-db/kmb/internal/vopr/tui"
	"github.com/kmb-db/kmb/store/sim"
)

// runVOPR runs the deterministic cluster simulator: kmbd vopr --seed N,
// and its live views, kmbd vopr dashboard and kmbd vopr tui.
func runVOPR(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "dashboard":
			return runVOPRDashboard(ctx, args[1:], stdout, stderr)
		case "tui":
			return runVOPRTUI(ctx, args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("kmbd vopr", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := sim.DefaultOptions()
	var (
		seed     = fs.Uint64("seed", 1, "first seed")
		count    = fs.Int("seeds", 1, "how many consecutive seeds to run")
		ticks    = fs.Int("ticks", def.Ticks, "ticks of the fault phase")
		replicas = fs.Int("replicas", def.Replicas, "replicas in the simulated cluster")
		trace    = fs.Bool("trace", false, "print every notable event of the run")
	)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *count < 1 || *ticks < 1 || *replicas < 1 {
		fmt.Fprintln(stderr, "kmbd vopr: --seeds, --ticks and --replicas must be >= 1")
		return 2
	}
	for s := *seed; s < *seed+uint64(*count); s++ {
		opts := def
		opts.Seed, opts.Ticks, opts.Replicas = s, *ticks, *replicas
		if *trace {
			opts.Trace = func(line string) { fmt.Fprintln(stdout, line) }
		}
		res, err := sim.Run(opts)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %v\n  violation: %v\n  replay: %s\n", res, err, vopr.ReplayCommand(s, *ticks, *replicas))
			return 1
		}
		fmt.Fprintf(stdout, "ok   %v\n", res)
	}
	return 0
}

// defaultViewSeeds is how many seeds the dashboard and the TUI run when
// --seeds is not given: about a minute of runs at the default ticks.
const defaultViewSeeds = 1000

// campaignFlags declares the flags kmbd vopr dashboard and tui share and
// returns a function that checks them once parsed.
func campaignFlags(fs *flag.FlagSet) func() (vopr.Config, error) {
	def := sim.DefaultOptions()
	seed := fs.Uint64("seed", 1, "first seed")
	count := fs.Int("seeds", defaultViewSeeds, "how many consecutive seeds to run")
	ticks := fs.Int("ticks", def.Ticks, "ticks of the fault phase of each seed")
	replicas := fs.Int("replicas", def.Replicas, "replicas in the simulated cluster")
	return func() (vopr.Config, error) {
		if *count < 1 || *ticks < 1 || *replicas < 1 {
			return vopr.Config{}, fmt.Errorf("--seeds, --ticks and --replicas must be >= 1")
		}
		o := def
		o.Ticks, o.Replicas = *ticks, *replicas
		return vopr.Config{FirstSeed: *seed, Seeds: *count, Sim: o}, nil
	}
}

// parseCampaign parses the flags of a view subcommand; a non-negative
// code means stop with it.
func parseCampaign(fs *flag.FlagSet, args []string, check func() (vopr.Config, error), stderr io.Writer) (vopr.Config, int) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return vopr.Config{}, 0
		}
		return vopr.Config{}, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return vopr.Config{}, 2
	}
	cfg, err := check()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return vopr.Config{}, 2
	}
	return cfg, -1
}

// runVOPRDashboard runs the seeds and serves their live state as a web
// page until interrupted; the page keeps the final state once they end.
func runVOPRDashboard(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kmbd vopr dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 8080, "port of the web page (0: any free port)")
	listen := fs.String("listen", "127.0.0.1", "address to listen on")
	check := campaignFlags(fs)
	cfg, code := parseCampaign(fs, args, check, stderr)
	if code >= 0 {
		return code
	}
	if *port < 0 || *port > 65535 {
		fmt.Fprintf(stderr, "kmbd vopr dashboard: --port %d: must be 0..65535\n", *port)
		return 2
	}
	r, err := vopr.NewRunner(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd vopr dashboard: %v\n", err)
		return 2
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*listen, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintf(stderr, "kmbd vopr dashboard: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "kmbd vopr dashboard: http://%s/ (seeds %s; Ctrl-C stops)\n", ln.Addr(), seedRange(cfg))

	runCtx, stopRuns := context.WithCancel(ctx)
	defer stopRuns()
	go func() {
		r.Run(runCtx)
		summarize(stdout, "kmbd vopr dashboard", r.Snapshot())
		if ctx.Err() == nil {
			fmt.Fprintln(stdout, "kmbd vopr dashboard: the page keeps the final state; Ctrl-C stops")
		}
	}()
	err = dashboard.Serve(ctx, ln, dashboard.Handler(r, dashboard.Options{}))
	stopRuns()
	<-r.Done()
	if err != nil {
		fmt.Fprintf(stderr, "kmbd vopr dashboard: %v\n", err)
		return 1
	}
	return 0
}

// runVOPRTUI runs the seeds and draws their live state in the terminal
// until q is pressed, then prints the summary.
func runVOPRTUI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kmbd vopr tui", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := campaignFlags(fs)
	cfg, code := parseCampaign(fs, args, check, stderr)
	if code >= 0 {
		return code
	}
	r, err := vopr.NewRunner(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd vopr tui: %v\n", err)
		return 2
	}
	runCtx, stopRuns := context.WithCancel(ctx)
	defer stopRuns()
	go r.Run(runCtx)
	err = tui.Run(ctx, r, os.Stdin, stdout)
	stopRuns()
	<-r.Done()
	if err != nil {
		fmt.Fprintf(stderr, "kmbd vopr tui: %v\n", err)
		return 1
	}
	summarize(stdout, "kmbd vopr tui", r.Snapshot())
	return 0
}

func seedRange(cfg vopr.Config) string {
	return fmt.Sprintf("%d..%d", cfg.FirstSeed, cfg.FirstSeed+uint64(cfg.Seeds)-1)
}

// summarize prints what a campaign did, and each listed failure with its
// replay command, as kmbd vopr prints them.
func summarize(w io.Writer, who string, st vopr.State) {
	fmt.Fprintf(w, "%s: %d of %d seeds in %.1fs (%.1f seeds/s, %.0f events/s), %d client ops checked, %d failed\n",
		who, st.SeedsDone, st.SeedsTotal, st.ElapsedSeconds, st.SeedsPerSecond, st.EventsPerSecond, st.ClientOpsChecked, st.SeedsFailed)
	for _, f := range st.Failures {
		fmt.Fprintf(w, "FAIL seed=%d\n  violation: %s\n  replay: %s\n", f.Seed, f.Violation, f.Replay)
	}
	if n := st.SeedsFailed - len(st.Failures); n > 0 {
		fmt.Fprintf(w, "  (%d more failing seeds not listed)\n", n)
	}
}
