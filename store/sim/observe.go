package sim

import "slices"

// FaultKind is one kind of fault the simulator injects.
type FaultKind uint8

// The fault kinds, in the order Progress lists them. A new kind is one
// constant here and one name in faultNames: everything that shows
// Progress.Faults picks it up from the list.
const (
	FaultDrop        FaultKind = iota // a message lost by the network
	FaultDuplicate                    // a message delivered twice
	FaultDelay                        // a message held back more than one step (this is what reorders messages)
	FaultPartition                    // the cluster split in two groups
	FaultCrash                        // a replica stopped, at any point of handling a Ready
	FaultTornWrite                    // a crash that kept only a prefix of the ops being appended
	FaultLostDisk                     // a crash that also lost the replica's disk
	FaultCorrupt                      // a stored op that rotted on disk (one per op)
	FaultReconfigure                  // a configuration change proposed (replace, grow, shrink)
	numFaultKinds
)

var faultNames = [numFaultKinds]string{
	FaultDrop:        "drop",
	FaultDuplicate:   "duplicate",
	FaultDelay:       "delay",
	FaultPartition:   "partition",
	FaultCrash:       "crash",
	FaultTornWrite:   "torn_write",
	FaultLostDisk:    "lost_disk",
	FaultCorrupt:     "corrupt",
	FaultReconfigure: "reconfigure",
}

func (k FaultKind) String() string {
	if k < numFaultKinds {
		return faultNames[k]
	}
	return "unknown"
}

// Phase is the part of a run the simulator is in.
type Phase string

const (
	// PhaseFaults: faults are injected.
	PhaseFaults Phase = "faults"
	// PhaseLiveness: every fault is healed and the cluster must converge.
	PhaseLiveness Phase = "liveness"
	// PhaseDone: the run ended; Checked holds the linearizability check.
	PhaseDone Phase = "done"
)

// FaultCount is how many faults of one kind a run injected so far.
type FaultCount struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

// ReplicaProgress is one replica's state as the simulator sees it.
type ReplicaProgress struct {
	ID     uint64 `json:"id"`
	Member bool   `json:"member"` // of the current configuration
	Up     bool   `json:"up"`
	Status string `json:"status"` // vsr status, or "down"
	Epoch  uint64 `json:"epoch"`
	View   uint64 `json:"view"`
	Op     uint64 `json:"op"`
	Commit uint64 `json:"commit"`
	// Leader is the primary of the replica's view as it believes it.
	Leader uint64 `json:"leader"`
}

// Progress is a run's live state, handed to Options.Observe.
type Progress struct {
	Seed       uint64            `json:"seed"`
	Phase      Phase             `json:"phase"`
	Step       int               `json:"step"`
	Tick       int               `json:"tick"`        // ticks run, both phases
	TicksBound int               `json:"ticks_bound"` // Ticks + LivenessTicks: most a run takes
	Replicas   []ReplicaProgress `json:"replicas"`
	Faults     []FaultCount      `json:"faults"` // every kind, in FaultKind order
	// Events counts the inputs the replicas processed: messages delivered,
	// ticks and client proposals.
	Events   int `json:"events"`
	Messages int `json:"messages"` // delivered
	// Requests: client requests completed (answered).
	Requests int `json:"requests"`
	// Checked: client operations handed to the linearizability checker;
	// set only when Phase is PhaseDone and the check ran (it does not
	// when an earlier checker already failed the run).
	Checked int `json:"checked"`
}

// defaultObserveTicks is how often Observe is called when
// Options.ObserveTicks is 0.
const defaultObserveTicks = 25

// observe hands the run's state to Options.Observe. It reads the world
// and consumes no randomness, so observing never changes a run.
func (w *world) observe(phase Phase) {
	if w.opts.Observe == nil {
		return
	}
	p := Progress{
		Seed:       w.opts.Seed,
		Phase:      phase,
		Step:       w.step,
		Tick:       w.tick,
		TicksBound: w.opts.Ticks + w.opts.LivenessTicks,
		Replicas:   make([]ReplicaProgress, 0, len(w.ids)),
		Faults:     make([]FaultCount, numFaultKinds),
		Events:     w.events,
		Messages:   w.res.Messages,
		Requests:   w.res.Requests,
		Checked:    w.checked,
	}
	for _, id := range w.ids {
		h := w.hosts[id]
		member := slices.Contains(w.config, id)
		// (A start that failed, replaying a violation, left no replica.)
		if !h.up || h.r == nil {
			p.Replicas = append(p.Replicas, ReplicaProgress{ID: id, Member: member, Status: "down"})
			continue
		}
		s := h.r.State()
		p.Replicas = append(p.Replicas, ReplicaProgress{
			ID: id, Member: member, Up: true, Status: s.Status.String(), Epoch: s.Epoch,
			View: s.View, Op: s.Op, Commit: s.Commit, Leader: s.Primary,
		})
	}
	for k := range numFaultKinds {
		p.Faults[k] = FaultCount{Kind: k.String(), Count: w.faults[k]}
	}
	w.opts.Observe(p)
}
