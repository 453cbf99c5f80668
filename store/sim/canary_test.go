//go:build kmb_canary

package sim

import "testing"

// With the planted commit-without-quorum bug, the simulator must report a
// violation within a few seeds. Run: go test -tags kmb_canary ./store/sim -run Canary
func TestCanaryCaught(t *testing.T) {
	for s := uint64(1); s <= 50; s++ {
		opts := DefaultOptions()
		opts.Seed = s
		if _, err := Run(opts); err != nil {
			t.Logf("seed %d caught the canary: %v", s, err)
			return
		}
	}
	t.Fatal("50 seeds ran with the canary bug and no checker noticed")
}

// A violation found while a restarted replica replays its committed ops
// (seed 10 of 300 ticks) ends the run with that replica started but
// without a replica: the last progress report shows it down.
func TestCanaryObservedFailingStart(t *testing.T) {
	opts := DefaultOptions()
	opts.Seed, opts.Ticks = 10, 300
	var last Progress
	opts.Observe = func(p Progress) { last = p }
	if _, err := Run(opts); err == nil {
		t.Fatal("seed 10 ran with the canary bug and no checker noticed")
	}
	if last.Phase != PhaseDone || len(last.Replicas) == 0 {
		t.Fatalf("last progress %+v", last)
	}
}
