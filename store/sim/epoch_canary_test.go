//go:build kmb_canary_epoch

package sim

import "testing"

// TestEpochCanaryCaught: with the kmb_canary_epoch build tag a replica
// enters a new epoch as soon as the config op is in its log, before it
// commits. The checkers must report a violation within a few seeds.
// Run: go test -tags kmb_canary_epoch ./store/sim -run EpochCanary
func TestEpochCanaryCaught(t *testing.T) {
	for s := uint64(1); s <= 50; s++ {
		opts := DefaultOptions()
		opts.Seed = s
		opts.ReconfigRate *= 10
		if _, err := Run(opts); err != nil {
			t.Logf("seed %d caught the canary: %v", s, err)
			return
		}
	}
	t.Fatal("50 seeds ran with the epoch canary and no checker noticed")
}
