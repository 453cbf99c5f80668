package sim

import (
	"flag"
	"os"
	"strconv"
	"testing"
)

var (
	seeds     = flag.Int("sim.seeds", 40, "number of seeds to run")
	firstSeed = flag.Uint64("sim.first", 1, "first seed")
)

// TestSeeds runs the simulator over a fixed seed range with every checker.
// More: go test ./store/sim -run TestSeeds -sim.seeds 2000 -sim.first 1000
func TestSeeds(t *testing.T) {
	n := *seeds
	if v := os.Getenv("KMB_SIM_SEEDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	var total Result
	for s := *firstSeed; s < *firstSeed+uint64(n); s++ {
		opts := DefaultOptions()
		opts.Seed = s
		res, err := Run(opts)
		if err != nil {
			t.Fatalf("seed %d: %v\nreplay: go run ./cmd/kmbd vopr --seed %d\nresult: %v", s, err, s, res)
		}
		total.Committed += res.Committed
		total.Requests += res.Requests
		total.ViewChanges += res.ViewChanges
		total.Crashes += res.Crashes
		total.Wipes += res.Wipes
		total.Partitions += res.Partitions
	}
	t.Logf("%d seeds: committed=%d requests=%d view_changes=%d crashes=%d wipes=%d partitions=%d",
		n, total.Committed, total.Requests, total.ViewChanges, total.Crashes, total.Wipes, total.Partitions)
}

// The same seed replays the same run exactly.
func TestDeterministic(t *testing.T) {
	opts := DefaultOptions()
	opts.Seed = 7
	a, errA := Run(opts)
	b, errB := Run(opts)
	if a != b || (errA == nil) != (errB == nil) {
		t.Fatalf("seed 7 ran twice differently:\n%v %v\n%v %v", a, errA, b, errB)
	}
	if a.Committed == 0 || a.Requests == 0 {
		t.Fatalf("the run did nothing: %v", a)
	}
}

// A healthy cluster without faults commits every request and converges
// immediately.
func TestNoFaults(t *testing.T) {
	opts := DefaultOptions()
	opts.Seed = 3
	opts.DropRate, opts.DupRate, opts.CrashRate, opts.PartitionRate, opts.ReconfigRate = 0, 0, 0, 0, 0
	res, err := Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.ViewChanges != 3 || res.Requests < 100 {
		t.Fatalf("fault-free run: %v", res)
	}
}

func TestFiveReplicas(t *testing.T) {
	for s := uint64(1); s <= 5; s++ {
		opts := DefaultOptions()
		opts.Seed, opts.Replicas = s, 5
		if _, err := Run(opts); err != nil {
			t.Fatalf("seed %d: %v", s, err)
		}
	}
}

// Seeds that once found a bug, kept so that it stays fixed.
func TestRegressionSeeds(t *testing.T) {
	for _, s := range []struct {
		seed uint64
		bug  string
	}{
		{1642, "a replica of an older epoch followed the Ops of a replica in a view change as if it led, voted with a log view it did not hold, and lost a committed op"},
		{1543, "a recovering replica counted answers of a later epoch against its own configuration and never finished"},
		{1182, "a configuration change was taken for lost while its config op was only in the proposer's memory"},
		{1292, "a replica that lost its disk recovered into a configuration that had left it out"},
		{2199, "a new member left out by a shrink before it joined was expected to learn of it"},
		{38, "a config op in the log before a snapshot was installed stayed pending, and a data op at its number started the epoch"},
		{4345, "a replica in a view change of an epoch that was over refused the snapshot that would let it leave it"},
		{3370, "a replica that lost its disk took ops from one replica and a commit number from another, and applied an op that never committed"},
		{20688, "a replica whose epoch was over took a second snapshot of the old epoch after the first consumed the request, and waited for ever to learn it was removed"},
		{30072, "a new member that installed a snapshot from a replica in a view change claimed that view's log with only the snapshot's prefix, led the next view and lost committed ops"},
		{30376, "a replica that lost its disk entered the epoch by fetching its ops and led the epoch's first view again with only the log up to the config op, though it had led that view past it before"},
		{30448, "a replica waiting for its view's primary already held the primary's whole log, and heartbeats alone never ended its catch-up"},
		{30773, "a replica that lost its disk joined through an older epoch's snapshot instead of recovering, and voted in a view change without a committed op it had acknowledged"},
		{60012, "the replay at a restart applied ops no other replica had applied yet without recording them, and a checkpoint of them looked uncommitted"},
		{33573, "a replica fetching the rest of an older epoch's snapshot kept asking one replica, which was down for good"},
		{33682, "a replica whose snapshot came from a view older than its own went back to that view, leaving its view change half cleared"},
		{35091, "retention deleted a committed config op before the epoch it started was durable, and the restarted primary never learned the epoch"},
		{69453, "a new member fetching the rest of its snapshot from a replica of an older epoch took a config op that left it out for its removal, though a later epoch adds it"},
		{71532, "a replica that installed a later epoch's snapshot while recovering restarted before persisting it, and looked for the epoch's config op in a log that starts after it"},
		{102102, "a new member that restarted from a checkpoint of the epoch that added it waited to be added, in an epoch whose members no longer call it"},
		{201746, "(the checker) a removed member whose disk was lost, restarted with its joining flags, waits to be added, which nobody will do: not a failure to converge"},
		{602737, "(the checker) a member whose disk was lost and that was replaced while it recovered stays recovering, which nobody will answer: not a failure to converge"},
		{502049, "a new primary that found its own copy of an op corrupt while installing the best DoViewChange log started the view anyway, with the rest of that log missing, and committed past the faulty op"},
		{614297, "(the world) the primary crashed handling the Ready of a replace, losing it, before its victim failed for good: the victim stayed retired though still a member, and the configuration never converged"},
		{622941, "a primary that committed a shrink and crashed before entering its epoch restarted in a view change of the old one; it asked the new epoch's members for the ops after its commit number, which they did not have, and never entered the epoch it had committed"},
	} {
		opts := DefaultOptions()
		opts.Seed = s.seed
		if _, err := Run(opts); err != nil {
			t.Errorf("seed %d (%s): %v", s.seed, s.bug, err)
		}
	}
}
