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
