package vsr

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

var randomSeeds = flag.Int("vsr.seeds", 0, "seeds of TestRandomSchedules per configuration (default 40, 10 with -race)")

// TestRandomSchedules drives the harness with random schedules: random
// delivery order (reordering and arbitrary delays), losses, duplicates,
// crashes, restarts and wiped disks (never more than f replicas down or
// recovering at once), then heals everything and demands convergence. The
// harness checks agreement, that no applied op is truncated, one primary
// per view and commit <= op on every Ready.
func TestRandomSchedules(t *testing.T) {
	configs := []struct {
		name  string
		n     int
		fresh bool
		wipes bool
		vct   int // ViewChangeTicks; small: many view changes
	}{
		{"3", 3, false, false, 10},
		{"3-fresh-wipes", 3, true, true, 10},
		{"3-wipes-fast-view-changes", 3, false, true, 3},
		{"5-wipes", 5, false, true, 10},
	}
	seeds := *randomSeeds
	if seeds == 0 {
		seeds = 40
		if raceEnabled {
			seeds = 10
		}
	}
	if testing.Short() {
		seeds = min(seeds, 5)
	}
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= uint64(seeds); seed++ {
				runRandom(t, seed, cfg.n, cfg.vct, cfg.fresh, cfg.wipes)
				if t.Failed() {
					return
				}
			}
		})
	}
}

// seedTB reports the seed with every failure.
type seedTB struct {
	testing.TB
	seed uint64
	n    int
}

func (s seedTB) Fatalf(format string, args ...any) {
	s.TB.Helper()
	s.TB.Fatalf("n=%d seed=%d: %s", s.n, s.seed, fmt.Sprintf(format, args...))
}

func runRandom(t *testing.T, seed uint64, n, vct int, fresh, wipes bool) {
	const steps = 2000
	rng := rand.New(rand.NewPCG(seed, 0xdecafbad))
	c := newTestCluster(seedTB{t, seed, n}, clusterOpts{N: n, Fresh: fresh, Seed: seed, ViewChangeTicks: vct, MaxOpsPerMessage: 3, MaxPipeline: 16})
	f := (n - 1) / 2
	wiped := map[uint64]bool{} // holding no state yet: counts as a failure
	for _, id := range c.ids {
		wiped[id] = fresh && n > 1
	}
	failures := func() int {
		k := 0
		for _, id := range c.ids {
			if c.nodes[id].r == nil || wiped[id] || c.nodes[id].crashAt != noCrash {
				k++
			}
		}
		return k
	}
	noteRecovered := func() {
		for _, e := range c.events {
			if e.Kind == EventRecovered || e.Kind == EventClusterFormed {
				delete(wiped, e.id)
			}
		}
		c.resetRecords()
	}
	// How far from the head of the queue a message may be delivered:
	// from almost in order to any order (arbitrary delays).
	window := []int{2, 8, 1 << 30}[seed%3]
	key := 0
	for step := 0; step < steps; step++ {
		switch x := rng.IntN(100); {
		case x < 8: // a client write at whoever is primary
			for _, id := range c.up() {
				if c.replica(id).State().IsPrimary {
					key++
					c.propose(id, fmt.Sprintf("k%d=s%d", key, seed))
				}
			}
		case x < 30:
			if up := c.up(); len(up) > 0 {
				c.tick(up[rng.IntN(len(up))])
			}
		case x < 90: // deliver a random message: any order, any delay
			if len(c.queue) > 0 {
				i := rng.IntN(min(len(c.queue), window))
				m := c.queue[i]
				c.queue = slices.Delete(c.queue, i, i+1)
				c.deliverMsg(m)
			}
		case x < 93:
			if len(c.queue) > 0 {
				i := rng.IntN(len(c.queue))
				c.queue = slices.Delete(c.queue, i, i+1)
			}
		case x < 95:
			if len(c.queue) > 0 {
				c.queue = append(c.queue, cloneMsg(c.queue[rng.IntN(len(c.queue))]))
			}
		case x < 97: // crash or wipe
			id := c.ids[rng.IntN(n)]
			if c.nodes[id].r == nil || failures() >= f {
				break
			}
			if wipes && rng.IntN(3) == 0 {
				c.wipe(id)
				wiped[id] = true // its previous life's messages stay in flight
			} else if rng.IntN(2) == 0 {
				c.crash(id)
			} else {
				// In the middle of its next durable write.
				c.nodes[id].crashAt = crashPoint(1 + rng.IntN(4))
			}
		default: // restart
			for _, id := range c.ids {
				if c.nodes[id].r == nil && rng.IntN(2) == 0 {
					c.start(id)
				}
			}
		}
		noteRecovered()
	}

	// Heal: everyone up, nothing lost, everything delivered each round.
	for round := 0; round < 300; round++ {
		for _, id := range c.ids {
			c.nodes[id].crashAt = noCrash
			if c.nodes[id].r == nil {
				c.start(id)
			}
		}
		c.run(1, c.up())
		noteRecovered()
		if clusterConverged(c) {
			return
		}
		if round%20 == 19 {
			for _, id := range c.up() {
				if c.replica(id).State().IsPrimary {
					key++
					c.propose(id, fmt.Sprintf("k%d=s%d", key, seed))
				}
			}
		}
	}
	c.fatalf("no convergence 300 rounds after healing")
}

// clusterConverged: all normal in one view, identical logs, everything committed
// and applied.
func clusterConverged(c *testCluster) bool {
	first := c.nodes[c.ids[0]]
	for _, id := range c.ids {
		n := c.nodes[id]
		if n.r == nil {
			return false
		}
		s := n.r.State()
		f := first.r.State()
		if s.Status != StatusNormal || s.CatchingUp || s.View != f.View || s.Op != f.Op || s.Commit != s.Op || n.applied != s.Op {
			return false
		}
		if logString(n.disk) != logString(first.disk) {
			return false
		}
	}
	return true
}
