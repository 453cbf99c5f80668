package sim

import "testing"

// TestCorruptionCanaryCaught plants the bug storage fault handling exists
// to prevent, a replica that cuts its log at the first corrupt op as if it
// were a torn write, and requires the checkers to catch it: a committed op
// lost or changed, or replicas disagreeing.
func TestCorruptionCanaryCaught(t *testing.T) {
	const seeds = 200
	for s := uint64(1); s <= seeds; s++ {
		opts := DefaultOptions()
		opts.Seed = s
		opts.CorruptRate = 1
		opts.CrashRate *= 4
		opts.CanaryTruncateCorrupt = true
		if _, err := Run(opts); err != nil {
			t.Logf("seed %d caught the truncating replica: %v", s, err)
			return
		}
	}
	t.Fatalf("%d seeds ran with replicas that cut their logs at corrupt ops and no checker noticed", seeds)
}

// TestCorruptionHeavy runs seeds with every crash rotting the disk and
// crashes four times as often: every checker must hold.
func TestCorruptionHeavy(t *testing.T) {
	n := uint64(30)
	if testing.Short() {
		n = 5
	}
	var res Result
	for s := uint64(1); s <= n; s++ {
		opts := DefaultOptions()
		opts.Seed = 7000 + s
		opts.CorruptRate = 1
		opts.CrashRate *= 4
		r, err := Run(opts)
		if err != nil {
			t.Fatalf("seed %d: %v\n  replay: go test ./store/sim -run TestCorruptionHeavy (seed %d)\n  result: %v", opts.Seed, err, opts.Seed, r)
		}
		res.Corruptions += r.Corruptions
		res.Repaired += r.Repaired
		res.Replaced += r.Replaced
	}
	if res.Corruptions == 0 || res.Repaired == 0 {
		t.Fatalf("no corruption was injected or repaired: %+v", res)
	}
	t.Logf("%d seeds: %d corrupt ops, %d repaired in place, %d runs replaced", n, res.Corruptions, res.Repaired, res.Replaced)
}
