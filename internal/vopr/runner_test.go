package vopr

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmb-db/kmb/store/sim"
)

// fakeClock advances by step at every reading, so rates are exact.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func smallOptions() sim.Options {
	o := sim.DefaultOptions()
	o.Ticks, o.LivenessTicks = 200, 400
	return o
}

// The State's totals are the sums of what the seeds did, each seed counted
// once, and agree with what sim.Run returns for the same seeds.
func TestRunnerTotals(t *testing.T) {
	opts := smallOptions()
	clock := &fakeClock{t: time.Unix(1e9, 0), step: 50 * time.Millisecond}
	r, err := NewRunner(Config{FirstSeed: 5, Seeds: 4, Sim: opts, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if failed := r.Run(t.Context()); failed != 0 {
		t.Fatalf("%d seeds failed: %+v", failed, r.Snapshot().Failures)
	}
	var want State
	crashes, wipes := 0, 0
	var last sim.Result
	for s := uint64(5); s < 9; s++ {
		o := opts
		o.Seed = s
		res, err := sim.Run(o)
		if err != nil {
			t.Fatal(err)
		}
		want.Messages += int64(res.Messages)
		want.ClientOps += int64(res.Requests)
		crashes += res.Crashes
		wipes += res.Wipes
		last = res
	}
	st := r.Snapshot()
	if st.SeedsDone != 4 || st.SeedsTotal != 4 || st.SeedsFailed != 0 || !st.Finished || st.Stopped {
		t.Fatalf("state %+v", st)
	}
	if st.Messages != want.Messages || st.ClientOps != want.ClientOps || st.ClientOpsChecked != want.ClientOps {
		t.Fatalf("messages %d ops %d checked %d, want %d %d %d", st.Messages, st.ClientOps, st.ClientOpsChecked, want.Messages, want.ClientOps, want.ClientOps)
	}
	faults := map[string]int{}
	for _, f := range st.Faults {
		faults[f.Kind] = f.Count
	}
	if faults["crash"] != crashes || faults["lost_disk"] != wipes || len(st.Faults) < 7 {
		t.Fatalf("faults %v, want %d crashes and %d lost disks", st.Faults, crashes, wipes)
	}
	if st.Current.Seed != 8 || st.Current.Phase != sim.PhaseDone || len(st.Current.Replicas) < opts.Replicas {
		t.Fatalf("current %+v", st.Current)
	}
	// The last seed's members (a reconfiguration may have changed who they
	// are) all ended normal in its last epoch, with what it committed.
	members := 0
	for _, p := range st.Current.Replicas {
		if !p.Member {
			continue
		}
		members++
		if p.Status != "normal" || p.Epoch != last.Epoch || p.Commit != last.Committed {
			t.Fatalf("member %+v at the end of seed 8, want normal in epoch %d with commit %d", p, last.Epoch, last.Committed)
		}
	}
	if members == 0 {
		t.Fatalf("no members at the end of seed 8: %+v", st.Current.Replicas)
	}
	if st.ElapsedSeconds <= 0 || st.SeedsPerSecond != 4/st.ElapsedSeconds || st.EventsPerSecond != float64(st.Events)/st.ElapsedSeconds {
		t.Fatalf("rates: %v s, %v seeds/s, %v events/s for %d events", st.ElapsedSeconds, st.SeedsPerSecond, st.EventsPerSecond, st.Events)
	}
	if len(st.History) < 2 {
		t.Fatalf("history %+v", st.History)
	}
	for i := 1; i < len(st.History); i++ {
		a, b := st.History[i-1], st.History[i]
		if b.T-a.T < SampleInterval.Seconds() && i != len(st.History)-1 || b.Events < a.Events || b.SeedsDone < a.SeedsDone {
			t.Fatalf("history %d: %+v then %+v", i, a, b)
		}
	}
	if last := st.History[len(st.History)-1]; last.SeedsDone != 4 || last.Events != st.Events {
		t.Fatalf("last sample %+v, state events %d", last, st.Events)
	}
	// The run is over: the rates stop moving.
	if again := r.Snapshot(); again.ElapsedSeconds != st.ElapsedSeconds {
		t.Fatalf("elapsed moved after the end: %v then %v", st.ElapsedSeconds, again.ElapsedSeconds)
	}
}

// Watched while it runs, the totals never go back, also where one seed
// ends and the next begins, and every change wakes the watcher.
func TestRunnerLiveMonotonic(t *testing.T) {
	r, err := NewRunner(Config{FirstSeed: 1, Seeds: 6, Sim: smallOptions()})
	if err != nil {
		t.Fatal(err)
	}
	var snaps []State
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			upd := r.Updates()
			select {
			case <-upd:
				snaps = append(snaps, r.Snapshot())
			case <-r.Done():
				return
			}
		}
	}()
	r.Run(t.Context())
	<-watched
	if len(snaps) < 10 {
		t.Fatalf("only %d updates seen", len(snaps))
	}
	for i := 1; i < len(snaps); i++ {
		a, b := snaps[i-1], snaps[i]
		if b.Version <= a.Version || b.Events < a.Events || b.Messages < a.Messages || b.ClientOps < a.ClientOps ||
			b.ClientOpsChecked < a.ClientOpsChecked || b.SeedsDone < a.SeedsDone {
			t.Fatalf("update %d went back:\n%+v\n%+v", i, a, b)
		}
		for k := range a.Faults {
			if b.Faults[k].Kind != a.Faults[k].Kind || b.Faults[k].Count < a.Faults[k].Count {
				t.Fatalf("faults went back: %v then %v", a.Faults, b.Faults)
			}
		}
	}
}

// Failing seeds are listed with the command that replays them, up to
// MaxFailuresListed; every one is counted.
func TestRunnerFailures(t *testing.T) {
	opts := sim.DefaultOptions()
	// One tick to converge in after the faults: most seeds cannot.
	opts.Ticks, opts.LivenessTicks = 20, 1
	n := MaxFailuresListed + 30
	r, err := NewRunner(Config{FirstSeed: 1, Seeds: n, Sim: opts})
	if err != nil {
		t.Fatal(err)
	}
	failed := r.Run(t.Context())
	st := r.Snapshot()
	if failed <= MaxFailuresListed || st.SeedsFailed != failed || len(st.Failures) != MaxFailuresListed {
		t.Fatalf("%d failed, state counts %d and lists %d", failed, st.SeedsFailed, len(st.Failures))
	}
	f := st.Failures[0]
	o := opts
	o.Seed = f.Seed
	res, err := sim.Run(o)
	if err == nil || err.Error() != f.Violation || res.String() != f.Result {
		t.Fatalf("listed %+v; seed %d replays as %v: %v", f, f.Seed, res, err)
	}
	if want := fmt.Sprintf("kmbd vopr --seed %d --ticks 20 --replicas 3 --trace", f.Seed); f.Replay != want {
		t.Fatalf("replay %q, want %q", f.Replay, want)
	}
	if !strings.Contains(f.Violation, "liveness") {
		t.Fatalf("violation %q", f.Violation)
	}
}

func TestRunnerStopped(t *testing.T) {
	r, err := NewRunner(Config{FirstSeed: 1, Seeds: 1000, Sim: smallOptions()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r.Run(ctx)
	st := r.Snapshot()
	if !st.Finished || !st.Stopped || st.SeedsDone != 0 {
		t.Fatalf("stopped before the start: %+v", st)
	}
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed")
	}
}

func TestNewRunnerRefusesNoSeeds(t *testing.T) {
	if _, err := NewRunner(Config{Seeds: 0}); err == nil {
		t.Fatal("0 seeds accepted")
	}
}
