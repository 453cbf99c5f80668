package vopr

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kmb-db/kmb/store/sim"
)

// Config is what a Runner runs.
type Config struct {
	FirstSeed uint64
	Seeds     int // consecutive seeds from FirstSeed, at least 1
	// Sim holds the simulation options every seed runs with; Seed and
	// Observe are set per run.
	Sim sim.Options
	// Now is the wall clock the rates are measured with (time.Now when
	// nil).
	Now func() time.Time
}

// Limits of what a State holds, so that its size stays bounded however
// many seeds run.
const (
	// MaxFailuresListed: failing seeds listed with their replay command;
	// State.SeedsFailed counts every one.
	MaxFailuresListed = 100
	// MaxSamples: history samples kept for the charts, one a
	// SampleInterval (five minutes of them).
	MaxSamples = 300
	// SampleInterval is how often the history is sampled.
	SampleInterval = time.Second
)

// State is the campaign's live state. /api/state serves it as JSON.
type State struct {
	// Version grows with every change; a viewer redraws when it moved.
	Version     uint64 `json:"version"`
	FirstSeed   uint64 `json:"first_seed"`
	SeedsTotal  int    `json:"seeds_total"`
	SeedsDone   int    `json:"seeds_done"`
	SeedsFailed int    `json:"seeds_failed"`
	// Finished: every seed ran, or the run was stopped (Stopped).
	Finished bool `json:"finished"`
	Stopped  bool `json:"stopped"`
	Ticks    int  `json:"ticks"`
	Replicas int  `json:"replicas"`

	ElapsedSeconds  float64 `json:"elapsed_seconds"`
	SeedsPerSecond  float64 `json:"seeds_per_second"`
	EventsPerSecond float64 `json:"events_per_second"`

	// Totals over every seed so far, the one running included.
	Events    int64            `json:"events"`
	Messages  int64            `json:"messages"`
	ClientOps int64            `json:"client_ops"` // client requests completed
	Faults    []sim.FaultCount `json:"faults"`
	// ClientOpsChecked: client operations the linearizability checker
	// accepted or refused, over the seeds that finished.
	ClientOpsChecked int64 `json:"client_ops_checked"`

	// Current is the run in progress, or the last one once finished.
	Current  sim.Progress `json:"current"`
	Failures []Failure    `json:"failures"`
	History  []Sample     `json:"history"`
}

// Failure is a seed that broke an invariant.
type Failure struct {
	Seed      uint64 `json:"seed"`
	Violation string `json:"violation"`
	Result    string `json:"result"`
	// Replay is the command line that runs this seed again, with its
	// trace: the one kmbd vopr prints.
	Replay string `json:"replay"`
}

// Sample is one point of the charts: totals at T and the rates over the
// interval before it.
type Sample struct {
	T               float64 `json:"t"` // seconds since the start
	SeedsDone       int     `json:"seeds_done"`
	Events          int64   `json:"events"`
	SeedsPerSecond  float64 `json:"seeds_per_second"`
	EventsPerSecond float64 `json:"events_per_second"`
}

// ReplayCommand is the command line that replays one seed with its trace.
func ReplayCommand(seed uint64, ticks, replicas int) string {
	return fmt.Sprintf("kmbd vopr --seed %d --ticks %d --replicas %d --trace", seed, ticks, replicas)
}

// Runner runs a campaign of seeds and keeps its State.
type Runner struct {
	cfg   Config
	now   func() time.Time
	start time.Time

	mu      sync.Mutex
	st      State
	done    totals // the seeds that finished
	cur     totals // the run in progress
	end     time.Time
	sampled time.Time // the last history sample
	fin     chan struct{}
	upd     chan struct{} // closed at the next change, when someone waits
	asked   bool          // upd was handed out
}

// totals are the additive parts of a State.
type totals struct {
	events, messages, clientOps, checked int64
	faults                               []sim.FaultCount
}

func (t *totals) add(u totals) {
	t.events += u.events
	t.messages += u.messages
	t.clientOps += u.clientOps
	t.checked += u.checked
	t.faults = addFaults(t.faults, u.faults)
}

// addFaults adds src into dst by kind, keeping the order kinds first
// appeared in, so that a kind the simulator gains shows up on its own.
func addFaults(dst, src []sim.FaultCount) []sim.FaultCount {
next:
	for _, f := range src {
		for i := range dst {
			if dst[i].Kind == f.Kind {
				dst[i].Count += f.Count
				continue next
			}
		}
		dst = append(dst, f)
	}
	return dst
}

// NewRunner returns a Runner that has not started.
func NewRunner(cfg Config) (*Runner, error) {
	if cfg.Seeds < 1 {
		return nil, fmt.Errorf("vopr: %d seeds: at least 1 is needed", cfg.Seeds)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	o := cfg.Sim
	def := sim.DefaultOptions()
	if o.Ticks == 0 {
		o.Ticks = def.Ticks
	}
	if o.Replicas == 0 {
		o.Replicas = def.Replicas
	}
	cfg.Sim = o
	r := &Runner{cfg: cfg, now: cfg.Now, fin: make(chan struct{}), upd: make(chan struct{})}
	r.st = State{
		FirstSeed: cfg.FirstSeed, SeedsTotal: cfg.Seeds,
		Ticks: o.Ticks, Replicas: o.Replicas,
		Failures: []Failure{}, History: []Sample{},
	}
	return r, nil
}

// Run runs the seeds one after the other until all ran or ctx is done
// (the seed running then finishes first: one takes a fraction of a
// second). It returns the number of failing seeds.
func (r *Runner) Run(ctx context.Context) int {
	r.mu.Lock()
	r.start = r.now()
	r.sample(r.start) // the charts start from nothing
	r.mu.Unlock()
	for i := range r.cfg.Seeds {
		if ctx.Err() != nil {
			r.mu.Lock()
			r.st.Stopped = true
			r.mu.Unlock()
			break
		}
		seed := r.cfg.FirstSeed + uint64(i)
		opts := r.cfg.Sim
		opts.Seed, opts.Observe = seed, r.observe
		res, err := sim.Run(opts)
		r.finishSeed(seed, res, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.end = r.now()
	r.st.Finished = true
	r.sample(r.end)
	r.changedLocked()
	close(r.fin)
	return r.st.SeedsFailed
}

func (r *Runner) observe(p sim.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Current = p
	r.cur = totals{
		events: int64(p.Events), messages: int64(p.Messages), clientOps: int64(p.Requests),
		checked: int64(p.Checked), faults: p.Faults,
	}
	if p.Phase == sim.PhaseDone {
		// The final call: the seed's totals move to the finished ones.
		r.done.add(r.cur)
		r.cur = totals{}
	}
	if now := r.now(); now.Sub(r.sampled) >= SampleInterval {
		r.sample(now)
	}
	r.changedLocked()
}

func (r *Runner) finishSeed(seed uint64, res sim.Result, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.SeedsDone++
	if err != nil {
		r.st.SeedsFailed++
		if len(r.st.Failures) < MaxFailuresListed {
			r.st.Failures = append(r.st.Failures, Failure{
				Seed: seed, Violation: err.Error(), Result: res.String(),
				Replay: ReplayCommand(seed, r.cfg.Sim.Ticks, r.cfg.Sim.Replicas),
			})
		}
	}
	r.changedLocked()
}

// sample appends a history point at now.
func (r *Runner) sample(now time.Time) {
	r.sampled = now
	t := now.Sub(r.start).Seconds()
	s := Sample{T: t, SeedsDone: r.st.SeedsDone, Events: r.done.events + r.cur.events}
	prev := Sample{}
	if n := len(r.st.History); n > 0 {
		prev = r.st.History[n-1]
	}
	if dt := t - prev.T; dt > 0 && len(r.st.History) > 0 {
		s.SeedsPerSecond = float64(s.SeedsDone-prev.SeedsDone) / dt
		s.EventsPerSecond = float64(s.Events-prev.Events) / dt
	}
	if len(r.st.History) == MaxSamples {
		r.st.History = append(r.st.History[:0], r.st.History[1:]...)
	}
	r.st.History = append(r.st.History, s)
}

// changedLocked marks a change: Version moves and waiting viewers wake.
func (r *Runner) changedLocked() {
	r.st.Version++
	if r.asked {
		close(r.upd)
		r.upd, r.asked = make(chan struct{}), false
	}
}

// Updates returns a channel closed at the next change of the State.
func (r *Runner) Updates() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = true
	return r.upd
}

// Done is closed once Run has returned.
func (r *Runner) Done() <-chan struct{} { return r.fin }

// Snapshot returns a copy of the State, with its totals and rates as of
// now.
func (r *Runner) Snapshot() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	var t totals
	t.add(r.done)
	t.add(r.cur)
	st.Events, st.Messages, st.ClientOps, st.ClientOpsChecked = t.events, t.messages, t.clientOps, t.checked
	st.Faults = t.faults
	if st.Faults == nil {
		st.Faults = []sim.FaultCount{}
	}
	if !r.start.IsZero() {
		end := r.end
		if end.IsZero() {
			end = r.now()
		}
		st.ElapsedSeconds = end.Sub(r.start).Seconds()
		if st.ElapsedSeconds > 0 {
			st.SeedsPerSecond = float64(st.SeedsDone) / st.ElapsedSeconds
			st.EventsPerSecond = float64(st.Events) / st.ElapsedSeconds
		}
	}
	st.Current.Replicas = append([]sim.ReplicaProgress(nil), st.Current.Replicas...)
	st.Current.Faults = append([]sim.FaultCount(nil), st.Current.Faults...)
	st.Failures = append([]Failure{}, st.Failures...)
	st.History = append([]Sample{}, st.History...)
	return st
}
