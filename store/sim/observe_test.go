package sim

import (
	"reflect"
	"testing"
)

// Observing a run changes nothing about it: the same seeds give the same
// Result and error with and without an observer, however often it is called.
func TestObserveKeepsOutcome(t *testing.T) {
	for s := uint64(1); s <= 6; s++ {
		opts := DefaultOptions()
		opts.Seed, opts.Ticks, opts.LivenessTicks = s, 400, 400
		want, wantErr := Run(opts)

		for _, every := range []int{1, 7, 1000} {
			o := opts
			calls := 0
			o.Observe, o.ObserveTicks = func(Progress) { calls++ }, every
			got, gotErr := Run(o)
			if got != want || !reflect.DeepEqual(gotErr, wantErr) {
				t.Fatalf("seed %d observed every %d ticks:\n%v %v\nunobserved:\n%v %v", s, every, got, gotErr, want, wantErr)
			}
			if calls == 0 {
				t.Fatalf("seed %d: the observer was never called", s)
			}
		}
	}
}

// What the observer sees agrees with the Result, advances monotonically,
// and ends with one PhaseDone call carrying the linearizability check.
func TestObserveProgress(t *testing.T) {
	totals := map[string]int{}
	for s := uint64(1); s <= 8; s++ {
		opts := DefaultOptions()
		opts.Seed = s
		var seen []Progress
		opts.Observe, opts.ObserveTicks = func(p Progress) { seen = append(seen, p) }, 50
		res, err := Run(opts)
		if err != nil {
			t.Fatalf("seed %d: %v", s, err)
		}
		last := seen[len(seen)-1]
		for i, p := range seen {
			if p.Seed != s || p.TicksBound != opts.Ticks+opts.LivenessTicks || len(p.Replicas) < opts.Replicas || (i > 0 && len(p.Replicas) < len(seen[i-1].Replicas)) {
				t.Fatalf("seed %d call %d: %+v", s, i, p)
			}
			if (p.Phase == PhaseDone) != (i == len(seen)-1) {
				t.Fatalf("seed %d: call %d of %d has phase %s", s, i, len(seen), p.Phase)
			}
			if i == 0 {
				continue
			}
			prev := seen[i-1]
			if p.Step < prev.Step || p.Tick < prev.Tick || p.Events < prev.Events || p.Messages < prev.Messages || p.Requests < prev.Requests {
				t.Fatalf("seed %d: progress went back:\n%+v\n%+v", s, prev, p)
			}
			if prev.Phase == PhaseLiveness && p.Phase == PhaseFaults {
				t.Fatalf("seed %d: back to the fault phase after liveness", s)
			}
			for k := range p.Faults {
				if p.Faults[k].Count < prev.Faults[k].Count {
					t.Fatalf("seed %d: %s count went back", s, p.Faults[k].Kind)
				}
			}
		}
		// Ticks before the end are observed every 50, the fault phase included.
		if seen[0].Tick != 50 || seen[0].Phase != PhaseFaults {
			t.Fatalf("seed %d: first call %+v", s, seen[0])
		}
		if last.Step != res.Steps || last.Requests != res.Requests || last.Messages != res.Messages {
			t.Fatalf("seed %d: final progress %+v, result %v", s, last, res)
		}
		if last.Checked != res.Requests || last.Events <= res.Messages {
			t.Fatalf("seed %d: checked %d of %d requests, %d events for %d messages", s, last.Checked, res.Requests, last.Events, res.Messages)
		}
		byKind := map[string]int{}
		for _, f := range last.Faults {
			byKind[f.Kind] = f.Count
			totals[f.Kind] += f.Count
		}
		if byKind["crash"] != res.Crashes || byKind["lost_disk"] != res.Wipes || byKind["partition"] != res.Partitions || byKind["corrupt"] != res.Corruptions || byKind["drop"] > res.Dropped {
			t.Fatalf("seed %d: faults %v, result %v", s, byKind, res)
		}
		if byKind["reconfigure"] != res.Reconfigs {
			t.Fatalf("seed %d: %d reconfigure faults, %d in the result", s, byKind["reconfigure"], res.Reconfigs)
		}
		members := 0
		for _, r := range last.Replicas {
			switch {
			case r.Member:
				members++
				if !r.Up || r.Status != "normal" || r.Commit != r.Op || r.Leader == 0 || r.Epoch != res.Epoch {
					t.Fatalf("seed %d converged, yet member %+v", s, r)
				}
			case r.Up && r.Status != "removed":
				t.Fatalf("seed %d converged, yet replica %+v, not a member, is neither down nor removed", s, r)
			}
		}
		if members < opts.Replicas {
			t.Fatalf("seed %d: %d members at the end: %+v", s, members, last.Replicas)
		}
	}
	// Every kind of fault the simulator has is injected by a few default seeds.
	for k := range numFaultKinds {
		if totals[k.String()] == 0 {
			t.Errorf("no %s fault in 8 seeds: %v", k, totals)
		}
	}
}

func TestFaultKindNames(t *testing.T) {
	seen := map[string]bool{}
	for k := range numFaultKinds {
		name := k.String()
		if name == "" || name == "unknown" || seen[name] {
			t.Fatalf("fault kind %d is named %q", k, name)
		}
		seen[name] = true
	}
	for _, want := range []string{"drop", "duplicate", "delay", "partition", "crash", "torn_write", "lost_disk", "corrupt", "reconfigure"} {
		if !seen[want] {
			t.Errorf("no fault kind %q", want)
		}
	}
}
