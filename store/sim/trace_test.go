package sim

import (
	"flag"
	"testing"
)

var traceSeed = flag.Uint64("sim.trace", 0, "replay this seed with a trace")

// TestTrace replays one seed with its trace: go test ./store/sim -run TestTrace -sim.trace 1384 -v
func TestTrace(t *testing.T) {
	if *traceSeed == 0 {
		t.Skip("no -sim.trace seed given")
	}
	opts := DefaultOptions()
	opts.Seed = *traceSeed
	opts.Trace = func(line string) { t.Log(line) }
	res, err := Run(opts)
	t.Logf("result: %v, error: %v", res, err)
}
