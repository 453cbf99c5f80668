package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/vsr"
	"github.com/kmb-db/kmb/store/wire"
)

// Options configure one simulation. Zero fields take the defaults of
// DefaultOptions.
type Options struct {
	Seed     uint64
	Replicas int
	Clients  int
	// Ticks is the length of the fault phase; LivenessTicks bounds the
	// phase that follows, with every fault healed, in which the cluster
	// must converge.
	Ticks         int
	LivenessTicks int
	// StepsPerTick: network steps per replica tick. A message takes
	// 1..MaxDelaySteps steps.
	StepsPerTick  int
	MaxDelaySteps int
	// Fault rates, per step (crash, partition) or per message (drop, dup).
	DropRate  float64
	DupRate   float64
	CrashRate float64
	WipeRate  float64 // share of crashes that also lose the disk
	// CorruptRate is the share of crashes after which stored ops of the
	// crashed replica are found corrupt on restart (bit rot, misdirected
	// writes), and, per step, the chance that an op of a running replica
	// rots. Corruption hits a minority: a replica is only corrupted when
	// the fault budget allows one more failure.
	CorruptRate   float64
	PartitionRate float64
	// ReconfigRate is the chance per step that the primary is asked to
	// change the configuration (see reconfig.go): replace a replica (half
	// the time one that then fails for good), grow by two replicas up to
	// MaxReplicas, or shrink by two down to Replicas. Negative: never.
	ReconfigRate float64
	MaxReplicas  int
	// CheckpointEvery: each replica checkpoints its state machine every
	// this many applied ops (0: never); with Retention it then deletes
	// the ops the checkpoint covers, so that replicas behind get a state
	// transfer.
	CheckpointEvery int
	Retention       bool
	// Keys the clients write and read.
	Keys int
	// Trace, when set, receives one line per notable event (for replaying
	// a failing seed).
	Trace func(line string)
	// Observe, when set, receives the run's state every ObserveTicks ticks
	// (default 25) and once at the end. It runs on the simulator's
	// goroutine, so it must be quick; observing never changes a run.
	Observe      func(Progress)
	ObserveTicks int
	// CanaryTruncateCorrupt plants the bug that storage fault handling
	// exists to prevent: a restarted replica cuts its log at the first
	// corrupt op instead of holding the ops for repair. The checkers must
	// catch it.
	CanaryTruncateCorrupt bool
}

// DefaultOptions returns the options CI runs.
func DefaultOptions() Options {
	return Options{
		Replicas:        3,
		Clients:         4,
		Ticks:           1500,
		LivenessTicks:   1500,
		StepsPerTick:    8,
		MaxDelaySteps:   12,
		DropRate:        0.02,
		DupRate:         0.02,
		CrashRate:       0.0005,
		WipeRate:        0.25,
		CorruptRate:     0.3,
		PartitionRate:   0.0005,
		ReconfigRate:    0.0003,
		MaxReplicas:     5,
		CheckpointEvery: 100,
		Retention:       true,
		Keys:            5,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Replicas == 0 {
		o.Replicas = d.Replicas
	}
	if o.Clients == 0 {
		o.Clients = d.Clients
	}
	if o.Ticks == 0 {
		o.Ticks = d.Ticks
	}
	if o.LivenessTicks == 0 {
		o.LivenessTicks = d.LivenessTicks
	}
	if o.StepsPerTick == 0 {
		o.StepsPerTick = d.StepsPerTick
	}
	if o.MaxDelaySteps == 0 {
		o.MaxDelaySteps = d.MaxDelaySteps
	}
	if o.Keys == 0 {
		o.Keys = d.Keys
	}
	if o.MaxReplicas < o.Replicas {
		o.MaxReplicas = max(d.MaxReplicas, o.Replicas)
	}
	if o.ObserveTicks <= 0 {
		o.ObserveTicks = defaultObserveTicks
	}
	return o
}

// Result summarises a run.
type Result struct {
	Seed           uint64
	Steps          int
	Committed      uint64 // ops committed by the end
	Requests       int    // client requests completed
	ViewChanges    int    // views started across replicas
	MaxView        uint64
	Crashes, Wipes int
	Corruptions    int // corrupt stored ops, counted one per op
	Repaired       int // corrupt ops repaired from another replica's copy
	Replaced       int // runs of corrupt ops found never committed and replaced
	Partitions     int
	Reconfigs      int    // configuration changes proposed
	Transfers      int    // checkpoints installed by state transfer
	Epoch          uint64 // the last epoch started
	Messages       int    // delivered
	Dropped        int
	ConvergedAfter int // ticks of the liveness phase it took to converge
}

func (r Result) String() string {
	return fmt.Sprintf("seed=%d steps=%d committed=%d requests=%d view_changes=%d max_view=%d crashes=%d wipes=%d corruptions=%d repaired=%d replaced=%d partitions=%d reconfigs=%d epoch=%d transfers=%d messages=%d dropped=%d converged_after_ticks=%d",
		r.Seed, r.Steps, r.Committed, r.Requests, r.ViewChanges, r.MaxView, r.Crashes, r.Wipes, r.Corruptions, r.Repaired, r.Replaced, r.Partitions, r.Reconfigs, r.Epoch, r.Transfers, r.Messages, r.Dropped, r.ConvergedAfter)
}

// Violation is an invariant the run broke.
type Violation struct {
	Step    int
	Message string
}

func (v *Violation) Error() string { return fmt.Sprintf("step %d: %s", v.Step, v.Message) }

type envelope struct {
	at  int
	seq int // tie-break: delivery order is (at, seq), deterministic
	m   wire.Message
}

// world is one simulation.
type world struct {
	opts  Options
	rng   *rand.Rand
	step  int
	ids   []uint64 // every host ever started, in order
	hosts map[uint64]*host

	// The configuration (reconfig.go): the last epoch any replica entered
	// and its members; the one before, while the change is not complete;
	// and a proposed one whose epoch has not started.
	epoch      uint64
	config     []uint64
	prevConfig []uint64
	configs    map[uint64][]uint64 // epoch → members, from committed config ops
	proposal   *proposal
	nextID     uint64

	net     []envelope
	seq     int
	part    map[uint64]int // partition group per replica; nil = none
	healAt  int
	faulty  bool // fault phase
	clients []*client

	committed map[uint64]string // op → identity, the first time any replica applied it
	chains    map[uint64]kmblog.Chain
	transfers []transfer
	primaries map[[2]uint64]uint64 // (epoch, view) → replica that became its primary
	history   []operation
	res       Result
	err       *Violation

	// What Observe reports beyond Result.
	tick    int
	events  int // replica inputs: messages delivered, ticks, proposals
	faults  [numFaultKinds]int
	checked int // client operations given to the linearizability checker
}

// Run runs one simulation and returns its result, or the first invariant
// violation.
func Run(opts Options) (Result, error) {
	opts = opts.withDefaults()
	w := &world{
		opts:      opts,
		rng:       rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		hosts:     map[uint64]*host{},
		committed: map[uint64]string{},
		chains:    map[uint64]kmblog.Chain{},
		primaries: map[[2]uint64]uint64{},
		configs:   map[uint64][]uint64{},
	}
	w.res.Seed = opts.Seed
	for i := 1; i <= opts.Replicas; i++ {
		w.ids = append(w.ids, uint64(i))
	}
	w.config, w.configs[0] = slices.Clone(w.ids), slices.Clone(w.ids)
	w.nextID = uint64(opts.Replicas) + 1
	for _, id := range w.ids {
		h := &host{id: id, w: w}
		w.hosts[id] = h
		h.start()
	}
	for i := 0; i < opts.Clients; i++ {
		w.clients = append(w.clients, &client{id: uint64(i + 1), w: w, target: w.ids[0]})
	}

	w.faulty = true
	for tick := 0; tick < opts.Ticks && w.err == nil; tick++ {
		w.runTick()
	}
	// Liveness: heal everything and demand convergence.
	w.faulty = false
	w.part = nil
	for _, id := range w.ids {
		if h := w.hosts[id]; !h.up && !h.retired {
			h.start()
		}
	}
	for tick := 0; tick < opts.LivenessTicks && w.err == nil; tick++ {
		w.runTick()
		if w.converged() {
			w.res.ConvergedAfter = tick + 1
			break
		}
	}
	if w.err == nil && w.res.ConvergedAfter == 0 {
		w.fail("liveness: no convergence within %d ticks of healing: %s", opts.LivenessTicks, w.describe())
	}
	if w.err == nil {
		w.checkFinal()
	}
	if w.err == nil {
		w.checkLinearizable()
	}
	w.observe(PhaseDone)
	w.res.Steps = w.step
	for _, h := range w.hosts {
		if h.r != nil {
			w.res.Committed = max(w.res.Committed, h.r.State().Commit)
			w.res.MaxView = max(w.res.MaxView, h.r.State().View)
		}
	}
	w.res.Epoch = w.epoch
	if w.err != nil {
		return w.res, w.err
	}
	return w.res, nil
}

func (w *world) fail(format string, args ...any) {
	if w.err == nil {
		w.err = &Violation{Step: w.step, Message: fmt.Sprintf(format, args...)}
	}
}

func (w *world) tracef(format string, args ...any) {
	if w.opts.Trace != nil {
		w.opts.Trace(fmt.Sprintf("step %d: ", w.step) + fmt.Sprintf(format, args...))
	}
}

func (w *world) chance(p float64) bool { return p > 0 && w.rng.Float64() < p }

func (w *world) runTick() {
	for s := 0; s < w.opts.StepsPerTick && w.err == nil; s++ {
		w.step++
		if w.faulty {
			w.injectFaults()
		}
		w.deliver()
		w.syncPending()
		w.deliverTransfers()
		for _, c := range w.clients {
			c.act()
		}
	}
	for _, id := range w.ids {
		h := w.hosts[id]
		if h.up {
			w.events++
			h.r.Tick()
			h.handleReady()
		} else if w.step >= h.restartAt && !h.retired {
			h.start()
		}
	}
	w.tick++
	if w.tick%w.opts.ObserveTicks == 0 {
		phase := PhaseLiveness
		if w.faulty {
			phase = PhaseFaults
		}
		w.observe(phase)
	}
}

// syncPending completes, at random steps, the fsyncs a replica runs off
// its loop (vsr.Ready.SyncLater): other messages are taken meanwhile.
func (w *world) syncPending() {
	for _, id := range w.ids {
		if h := w.hosts[id]; h.up && len(h.pending) > 0 && w.chance(0.5) && w.err == nil {
			h.syncPending()
			h.handleReady()
		}
	}
}

func (w *world) injectFaults() {
	if w.chance(w.opts.CrashRate) && w.budget() > 0 {
		h := w.hosts[w.ids[w.rng.IntN(len(w.ids))]]
		if h.up {
			h.crash(w.chance(w.opts.WipeRate))
		}
	}
	if w.chance(w.opts.CorruptRate*w.opts.CrashRate) && w.budget() > 0 {
		// Bit rot under a running replica: it finds out when it reads
		// the op.
		h := w.hosts[w.ids[w.rng.IntN(len(w.ids))]]
		if h.up && !h.damaged() && h.r.State().Status != vsr.StatusRemoved {
			h.corruptSome(1)
		}
	}
	if w.part == nil && w.chance(w.opts.PartitionRate) {
		w.part = map[uint64]int{}
		for _, id := range w.ids {
			w.part[id] = w.rng.IntN(2)
		}
		w.healAt = w.step + w.opts.StepsPerTick*(10+w.rng.IntN(60))
		w.res.Partitions++
		w.faults[FaultPartition]++
	}
	if w.part != nil && w.step >= w.healAt {
		w.part = nil
	}
	if w.chance(w.opts.ReconfigRate) {
		w.reconfigure()
	}
}

func (w *world) send(m wire.Message) {
	if w.faulty && w.chance(w.opts.DropRate) {
		w.res.Dropped++
		w.faults[FaultDrop]++
		return
	}
	copies := 1
	if w.faulty && w.chance(w.opts.DupRate) {
		copies = 2
		w.faults[FaultDuplicate]++
	}
	for i := 0; i < copies; i++ {
		w.seq++
		delay := 1 + w.rng.IntN(w.opts.MaxDelaySteps)
		if delay > 1 {
			w.faults[FaultDelay]++
		}
		w.net = append(w.net, envelope{at: w.step + delay, seq: w.seq, m: m})
	}
}

func (w *world) deliver() {
	slices.SortFunc(w.net, func(a, b envelope) int {
		if a.at != b.at {
			return a.at - b.at
		}
		return a.seq - b.seq
	})
	n := 0
	for n < len(w.net) && w.net[n].at <= w.step {
		n++
	}
	due := slices.Clone(w.net[:n])
	w.net = w.net[n:]
	for _, e := range due {
		to := w.hosts[e.m.To]
		if to == nil || !to.up {
			w.res.Dropped++
			continue
		}
		if w.part != nil && w.part[e.m.From] != w.part[e.m.To] {
			w.res.Dropped++
			continue
		}
		w.res.Messages++
		w.events++
		to.r.Step(e.m)
		to.handleReady()
		if w.err != nil {
			return
		}
	}
}

// converged: every member of the current configuration normal in its
// epoch and one view with one primary, every log identical up to a common
// commit number equal to its op number, no configuration change pending,
// every replica left out of it down or removed, and every client request
// answered.
func (w *world) converged() bool {
	w.trackProposal()
	if w.proposal != nil {
		return false
	}
	var view, op uint64
	for i, id := range w.config {
		h := w.hosts[id]
		if !h.up {
			return false
		}
		s := h.r.State()
		if s.Status != vsr.StatusNormal || s.Epoch != w.epoch || s.Reconfiguring || s.CatchingUp ||
			s.Commit != s.Op || h.applied != s.Commit || s.Faulty > 0 || s.Promised > 0 {
			return false
		}
		if i == 0 {
			view, op = s.View, s.Op
		} else if s.View != view || s.Op != op {
			return false
		}
	}
	for _, id := range w.ids {
		h := w.hosts[id]
		if !h.up || slices.Contains(w.config, id) {
			continue
		}
		// A non-member ends removed, or, started on an empty disk to
		// join (a removed node whose disk was lost, restarted with its
		// joining flags), still waiting to be added: nobody calls it,
		// and it takes part in nothing. The same holds for a member
		// whose disk was lost and that was replaced while it recovered:
		// it holds nothing, and no epoch that left it out answers it.
		s := h.r.State()
		waitsToJoin := h.join && s.Status == vsr.StatusJoining && s.Epoch == 0 && s.Op == 0
		replacedWhileRecovering := h.wiped && s.Status == vsr.StatusRecovering && s.Epoch == 0 && s.Op == 0
		if s.Status != vsr.StatusRemoved && !waitsToJoin && !replacedWhileRecovering {
			return false
		}
	}
	for _, c := range w.clients {
		if c.pending != nil {
			return false
		}
	}
	return true
}

func (w *world) describe() string {
	var b strings.Builder
	for _, id := range w.ids {
		h := w.hosts[id]
		if !h.up {
			fmt.Fprintf(&b, "[%d down] ", id)
			continue
		}
		s := h.r.State()
		fmt.Fprintf(&b, "[%d %s e%d v%d lv%d op%d c%d applied%d faulty%d promised%d] ", id, s.Status, s.Epoch, s.View, s.LogView, s.Op, s.Commit, h.applied, s.Faulty, s.Promised)
	}
	fmt.Fprintf(&b, "epoch=%d config=%v ", w.epoch, w.config)
	if w.proposal != nil {
		fmt.Fprintf(&b, "proposed=%v(op %d) ", w.proposal.members, w.proposal.op)
	}
	pending := 0
	for _, c := range w.clients {
		if c.pending != nil {
			pending++
		}
	}
	fmt.Fprintf(&b, "pending_clients=%d", pending)
	return b.String()
}

// checkFinal: every committed op is on every replica of the current
// configuration, unchanged.
func (w *world) checkFinal() {
	for _, id := range w.config {
		h := w.hosts[id]
		for op, want := range w.committed {
			if op > uint64(len(h.log)) {
				w.fail("committed op %d lost on replica %d (log ends at %d)", op, id, len(h.log))
				return
			}
			if got := identity(h.log[op-1]); got != want {
				w.fail("committed op %d changed on replica %d: %s, committed as %s", op, id, got, want)
				return
			}
		}
	}
}

func identity(op *kmblog.Op) string {
	first := ""
	if len(op.Entries) > 0 {
		first = op.Entries[0].Key + "=" + string(op.Entries[0].Value)
	}
	return fmt.Sprintf("op%d/v%d/c%d/r%d/%s/%s", op.Op, op.View, op.ClientID, op.RequestID, op.Tenant, first)
}
