package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/kmb-db/kmb/internal/vopr"
	"github.com/kmb-db/kmb/store/sim"
)

// runVOPR runs the deterministic cluster simulator: kmbd vopr --seed N.
func runVOPR(args []string, stdout, stderr io.Writer) int {
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
