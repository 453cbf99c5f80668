package vsr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/store/wire"
)

// Scenario scripts (testdata/scenarios/*.txt) drive a test cluster one
// command per line; "#" starts a comment. A script fails at its first
// failing line; "sent" and "events" expectations look at what the previous
// non-expect command caused. The language:
//
//	skip BUG: text              the scenario shows a known bug: skip it
//	                            (run it anyway with VSR_RUN_BUGS=1)
//	cluster N [fresh] [hb=H] [vct=T] [pipeline=P] [maxops=M] [seed=S] [rand=R]
//	                            a new cluster of replicas 1..N; the primary
//	                            of view v is replica v%N+1. hb and vct
//	                            default to 1 and 10. Each replica's Rand is
//	                            seeded from S (default 1), or returns R%n
//	                            with rand=R (rand=0: the view-change timeout
//	                            is exactly vct ticks). Without "fresh" every
//	                            replica starts formatted (empty hard state,
//	                            view 0); with it, without state (recovery
//	                            handshake).
//	reconfig ID IDS [err=not_primary|reconfiguring|bad_config]
//	                            ProposeConfig at ID: the members IDS, in
//	                            order (address "nodeN")
//	join ID config=IDS          boot a new, empty replica ID that joins
//	                            (Durable.Join) the configuration IDS
//	compact ID OP               delete ID's ops up to OP (retention); a
//	                            replica asked for them answers with a state
//	                            transfer, which the harness serves at once
//	                            with the asked node's state at its applied
//	                            op
//	propose ID k=v... [err=not_primary|busy] [first=N]
//	                            one Propose call at ID, one op per k=v;
//	                            without err= it must succeed. ID "primary":
//	                            at a running normal primary, if there is one
//	tick IDS [N]                tick each replica of IDS N times (default 1);
//	                            nothing is delivered
//	run N [IDS]                 N rounds of: tick IDS (default all running
//	                            replicas) once, then deliver all
//	deliver [once|next] [FILTER]
//	                            deliver the queued messages matching FILTER
//	                            in queue order, and those they cause, until
//	                            none match; "once": only those queued now;
//	                            "next": only the first one (it must exist)
//	drop|dup|reverse [FILTER]   lose, duplicate, or reverse the order of the
//	                            queued messages matching FILTER
//	stash [FILTER] / unstash    hold the queued messages matching FILTER
//	                            back / queue them again (at the end)
//	block FILTER / unblock      from now on the network loses matching
//	                            messages (when sent, and queued ones when
//	                            delivered) / forget every rule
//	isolate IDS / heal          block everything from and to IDS / unblock
//	crash IDS, restart IDS      lose memory / boot from the disk
//	wipe IDS                    crash and lose the disk (restart to boot it)
//	crashat IDS POINT           crash in the middle of the next Ready that
//	                            has log changes or hard state: before_persist,
//	                            torn_append (half the appends are durable),
//	                            after_log (log durable, hard state not),
//	                            before_send (both durable, nothing sent)
//	dump                        log the cluster
//	expect status|view|logview|op|commit|applied|primary|is_primary|
//	       catching_up|up|faulty|promised|epoch|config|reconfiguring|
//	       logstart IDS = V
//	expect log ID op N = k=v[@view] | none
//	expect log ID = k=v[@view]...      the whole durable log (nothing: empty)
//	expect sent [FILTER] = N    messages sent by the previous command
//	expect queued [FILTER] = N  messages in flight now
//	expect events [id=IDS] [kind=K] [view=N] [op=N] [primary=N] [commit=N] = N
//	                            events emitted during the previous command
//	                            (sent, queued, events: ">= N" for at least N)
//
// IDS is "all" or a comma-separated list of ids (several may be given,
// separated by spaces, before "=" in expect). FILTER is a list of
// from=IDS to=IDS type=T[,T] view=N logview=N op=N commit=N; T is a wire
// type name (prepare, prepare_ok, commit, start_view_change,
// do_view_change, start_view, get_ops, ops, recovery, recovery_response). K
// is an event kind (view_change_started, view_started, became_primary,
// repair_requested, log_truncated, recovery_started, recovered,
// cluster_formed). An op's identity is "key=value@view" of its first entry
// and the view it was prepared in.
//
// Besides the expectations, the harness checks on every Ready: appends are
// contiguous, no truncation below an applied op or beyond the log, the
// persisted (epoch, view) never goes back, commit <= op, agreement of every
// applied op across replicas, one primary per view and epoch, and no epoch
// entered before its config op committed.

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/scenarios")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".txt")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runScript(t, file)
		})
	}
}

type scriptLine struct {
	no   int
	text string
	args []string
}

func parseScript(t *testing.T, file string) []scriptLine {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lines []scriptLine
	for i, raw := range strings.Split(string(b), "\n") {
		text := raw
		if j := strings.Index(text, "#"); j >= 0 {
			text = text[:j]
		}
		args := strings.Fields(text)
		if len(args) == 0 {
			continue
		}
		lines = append(lines, scriptLine{no: i + 1, text: strings.TrimSpace(text), args: args})
	}
	return lines
}

func runScript(t *testing.T, file string) {
	lines := parseScript(t, file)
	s := &script{t: t, file: file}
	for _, l := range lines {
		s.line = l
		if err := s.exec(l.args); err != nil {
			if s.c != nil {
				t.Fatalf("%s:%d: %s: %v\ncluster: %s", file, l.no, l.text, err, s.c.describe())
			}
			t.Fatalf("%s:%d: %s: %v", file, l.no, l.text, err)
		}
	}
}

type script struct {
	t    *testing.T
	file string
	line scriptLine
	c    *testCluster
}

// lineTB makes harness failures point at the script line.
type lineTB struct {
	testing.TB
	s *script
}

func (l lineTB) Fatalf(format string, args ...any) {
	l.TB.Helper()
	l.TB.Fatalf("%s:%d: %s: %s", l.s.file, l.s.line.no, l.s.line.text, fmt.Sprintf(format, args...))
}

func (s *script) exec(args []string) error {
	cmd, args := args[0], args[1:]
	if cmd == "skip" {
		if os.Getenv("VSR_RUN_BUGS") == "" {
			s.t.Skip(strings.Join(args, " "))
		}
		return nil
	}
	if cmd == "cluster" {
		return s.cluster(args)
	}
	if s.c == nil {
		return errors.New("no cluster yet")
	}
	c := s.c
	if cmd != "expect" && cmd != "dump" {
		c.resetRecords()
	}
	switch cmd {
	case "propose":
		return s.propose(args)
	case "reconfig":
		return s.reconfig(args)
	case "join":
		return s.join(args)
	case "compact":
		if len(args) != 2 {
			return errors.New("usage: compact ID OP")
		}
		ids, err := s.ids(args[0])
		if err != nil || len(ids) != 1 {
			return fmt.Errorf("compact needs one replica id, got %q", args[0])
		}
		op, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			return err
		}
		c.compact(c.node(ids[0]), op)
	case "tick":
		if len(args) < 1 || len(args) > 2 {
			return errors.New("usage: tick IDS [N]")
		}
		ids, err := s.ids(args[0])
		if err != nil {
			return err
		}
		n := 1
		if len(args) == 2 {
			if n, err = strconv.Atoi(args[1]); err != nil {
				return err
			}
		}
		for range n {
			for _, id := range ids {
				c.tick(id)
			}
		}
	case "run":
		if len(args) < 1 || len(args) > 2 {
			return errors.New("usage: run N [IDS]")
		}
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		for range n {
			ids := c.up()
			if len(args) == 2 {
				if ids, err = s.ids(args[1]); err != nil {
					return err
				}
			}
			c.run(1, ids)
		}
	case "deliver":
		mode := ""
		if len(args) > 0 && (args[0] == "once" || args[0] == "next") {
			mode, args = args[0], args[1:]
		}
		f, err := s.filter(args)
		if err != nil {
			return err
		}
		switch mode {
		case "once":
			c.deliverOnce(f)
		case "next":
			if !c.deliverNext(f) {
				return fmt.Errorf("no queued message matches %s", f)
			}
		default:
			c.deliver(f)
		}
	case "unstash":
		c.unstash()
	case "drop", "dup", "reverse", "block", "stash":
		f, err := s.filter(args)
		if err != nil {
			return err
		}
		switch cmd {
		case "drop":
			c.drop(f)
		case "stash":
			c.stashMsgs(f)
		case "dup":
			c.dup(f)
		case "reverse":
			c.reverse(f)
		case "block":
			if len(args) == 0 {
				return errors.New("block needs a filter")
			}
			c.blocks = append(c.blocks, f)
		}
	case "unblock", "heal":
		c.blocks = nil
	case "crashat":
		if len(args) != 2 {
			return errors.New("usage: crashat IDS POINT")
		}
		ids, err := s.ids(args[0])
		if err != nil {
			return err
		}
		at, ok := crashPointNames[args[1]]
		if !ok {
			return fmt.Errorf("unknown crash point %q", args[1])
		}
		for _, id := range ids {
			c.node(id).crashAt = at
		}
	case "isolate", "crash", "restart", "wipe":
		if len(args) != 1 {
			return fmt.Errorf("usage: %s IDS", cmd)
		}
		ids, err := s.ids(args[0])
		if err != nil {
			return err
		}
		for _, id := range ids {
			switch cmd {
			case "isolate":
				c.blocks = append(c.blocks, msgFilter{from: []uint64{id}}, msgFilter{to: []uint64{id}})
			case "crash":
				c.crash(id)
			case "restart":
				c.start(id)
			case "wipe":
				c.wipe(id)
			}
		}
	case "corrupt":
		// corrupt ID FIRST[-LAST]: those ops of ID's log stop reading back.
		if len(args) != 2 {
			return errors.New("usage: corrupt ID FIRST[-LAST]")
		}
		ids, err := s.ids(args[0])
		if err != nil || len(ids) != 1 {
			return fmt.Errorf("corrupt needs one replica id, got %q", args[0])
		}
		lo, hi, _ := strings.Cut(args[1], "-")
		first, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return err
		}
		last := first
		if hi != "" {
			if last, err = strconv.ParseUint(hi, 10, 64); err != nil {
				return err
			}
		}
		n := c.node(ids[0])
		if n.corrupt == nil {
			n.corrupt = map[uint64]bool{}
		}
		for op := first; op <= last; op++ {
			if op == 0 || op > uint64(len(n.disk)) {
				return fmt.Errorf("replica %d has no op %d", n.id, op)
			}
			n.corrupt[op] = true
		}
	case "dump":
		s.t.Logf("%s:%d: %s", s.file, s.line.no, c.describe())
	case "expect":
		return s.expect(args)
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}

func (s *script) cluster(args []string) error {
	if len(args) < 1 {
		return errors.New("usage: cluster N [fresh] [hb=H] [vct=T] [pipeline=P] [maxops=M] [seed=S] [rand=R]")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	o := clusterOpts{N: n, Seed: 1}
	for _, a := range args[1:] {
		if a == "fresh" {
			o.Fresh = true
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("bad option %q", a)
		}
		x, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("option %q: %v", a, err)
		}
		switch k {
		case "hb":
			o.HeartbeatTicks = x
		case "vct":
			o.ViewChangeTicks = x
		case "pipeline":
			o.MaxPipeline = x
		case "maxops":
			o.MaxOpsPerMessage = x
		case "seed":
			o.Seed = uint64(x)
		case "rand":
			o.FixedRand = &x
		default:
			return fmt.Errorf("unknown option %q", a)
		}
	}
	s.c = newTestCluster(lineTB{s.t, s}, o)
	return nil
}

// reconfig ID IDS [err=not_primary|reconfiguring|bad_config]: ProposeConfig
// at ID with the members IDS, in order.
func (s *script) reconfig(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return errors.New("usage: reconfig ID IDS [err=E]")
	}
	at, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return err
	}
	var members []Member
	for _, p := range strings.Split(args[1], ",") {
		id, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return fmt.Errorf("bad replica id %q", p)
		}
		members = append(members, Member{ID: id, Addr: fmt.Sprintf("node%d", id)})
	}
	_, err = s.c.replica(at).ProposeConfig(members, "test")
	s.c.handleReady(s.c.node(at))
	got := ""
	switch {
	case err == nil:
	case errors.Is(err, ErrNotPrimary):
		got = "not_primary"
	case errors.Is(err, ErrReconfiguring):
		got = "reconfiguring"
	case errors.Is(err, ErrBadConfig):
		got = "bad_config"
	default:
		got = err.Error()
	}
	want := ""
	if len(args) == 3 {
		want = strings.TrimPrefix(args[2], "err=")
	}
	if got != want {
		return fmt.Errorf("ProposeConfig: error %q (%v), want %q", got, err, want)
	}
	return nil
}

// join ID config=IDS: a new, empty replica that joins the cluster whose
// next configuration is IDS.
func (s *script) join(args []string) error {
	if len(args) != 2 || !strings.HasPrefix(args[1], "config=") {
		return errors.New("usage: join ID config=IDS")
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return err
	}
	var replicas []uint64
	for _, p := range strings.Split(strings.TrimPrefix(args[1], "config="), ",") {
		x, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return fmt.Errorf("bad replica id %q", p)
		}
		replicas = append(replicas, x)
	}
	s.c.addJoiner(id, replicas)
	return nil
}

func (s *script) propose(args []string) error {
	if len(args) < 1 {
		return errors.New("usage: propose ID k=v... [err=E] [first=N]")
	}
	var ids []uint64
	var err error
	if args[0] == "primary" {
		for _, id := range s.c.up() {
			if s.c.replica(id).State().IsPrimary {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return nil // nobody to propose to
		}
		ids = ids[:1]
	} else if ids, err = s.ids(args[0]); err != nil || len(ids) != 1 {
		return fmt.Errorf("propose needs one replica id, got %q", args[0])
	}
	var kvs []string
	wantErr, wantFirst := "", -1
	for _, a := range args[1:] {
		switch {
		case strings.HasPrefix(a, "err="):
			wantErr = strings.TrimPrefix(a, "err=")
		case strings.HasPrefix(a, "first="):
			if wantFirst, err = strconv.Atoi(strings.TrimPrefix(a, "first=")); err != nil {
				return err
			}
		default:
			kvs = append(kvs, a)
		}
	}
	first, err := s.c.propose(ids[0], kvs...)
	got := ""
	switch {
	case err == nil:
	case errors.Is(err, ErrNotPrimary):
		got = "not_primary"
	case errors.Is(err, ErrBusy):
		got = "busy"
	case errors.Is(err, ErrReconfiguring):
		got = "reconfiguring"
	default:
		got = err.Error()
	}
	if got != wantErr {
		return fmt.Errorf("propose: got error %q, want %q", got, wantErr)
	}
	if wantFirst >= 0 && first != uint64(wantFirst) {
		return fmt.Errorf("propose: first op %d, want %d", first, wantFirst)
	}
	return nil
}

// ids parses "all" or "1,2,3".
func (s *script) ids(a string) ([]uint64, error) {
	if a == "all" {
		return slices.Clone(s.c.ids), nil
	}
	var ids []uint64
	for _, p := range strings.Split(a, ",") {
		id, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad replica id %q", p)
		}
		if s.c.nodes[id] == nil {
			return nil, fmt.Errorf("no replica %d", id)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

var typeNames = func() map[string]wire.Type {
	m := map[string]wire.Type{}
	for t := wire.Type(1); t <= wire.MaxType; t++ {
		m[t.String()] = t
	}
	return m
}()

var kindNames = map[string]EventKind{
	"view_change_started":      EventViewChangeStarted,
	"view_started":             EventViewStarted,
	"became_primary":           EventBecamePrimary,
	"repair_requested":         EventRepairRequested,
	"chain_mismatch":           EventChainMismatch,
	"corrupt_op":               EventCorruptOp,
	"repaired":                 EventRepaired,
	"repair_replaced":          EventRepairReplaced,
	"repair_stalled":           EventRepairStalled,
	"log_truncated":            EventLogTruncated,
	"recovery_started":         EventRecoveryStarted,
	"recovered":                EventRecovered,
	"cluster_formed":           EventClusterFormed,
	"epoch_started":            EventEpochStarted,
	"removed":                  EventRemoved,
	"state_transfer_requested": EventStateTransferRequested,
	"state_installed":          EventStateInstalled,
}

func (s *script) filter(args []string) (msgFilter, error) {
	var f msgFilter
	for _, a := range args {
		if a == "all" {
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return f, fmt.Errorf("bad filter term %q", a)
		}
		switch k {
		case "from", "to":
			ids, err := s.ids(v)
			if err != nil {
				return f, err
			}
			if k == "from" {
				f.from = ids
			} else {
				f.to = ids
			}
		case "type":
			for _, name := range strings.Split(v, ",") {
				typ, ok := typeNames[name]
				if !ok {
					return f, fmt.Errorf("unknown message type %q", name)
				}
				f.types = append(f.types, typ)
			}
		case "view", "logview", "op", "commit":
			x, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return f, err
			}
			switch k {
			case "view":
				f.view = &x
			case "logview":
				f.logView = &x
			case "op":
				f.op = &x
			case "commit":
				f.commit = &x
			}
		default:
			return f, fmt.Errorf("unknown filter key %q", k)
		}
	}
	return f, nil
}

// splitEq splits args at the "=" (or ">=") token.
func splitEq(args []string) (lhs, rhs []string, atLeast bool, err error) {
	for i, a := range args {
		if a == "=" || a == ">=" {
			return args[:i], args[i+1:], a == ">=", nil
		}
	}
	return nil, nil, false, errors.New(`expect needs " = "`)
}

func countOK(got, want int, atLeast bool) bool {
	if atLeast {
		return got >= want
	}
	return got == want
}

func (s *script) expect(args []string) error {
	if len(args) < 1 {
		return errors.New("usage: expect WHAT ... = VALUE")
	}
	what := args[0]
	lhs, rhs, atLeast, err := splitEq(args[1:])
	if err != nil {
		return err
	}
	if atLeast && what != "sent" && what != "queued" && what != "events" {
		return fmt.Errorf("expect %s: >= only counts messages and events", what)
	}
	c := s.c
	switch what {
	case "sent", "queued":
		f, err := s.filter(lhs)
		if err != nil {
			return err
		}
		want, err := oneInt(rhs)
		if err != nil {
			return err
		}
		msgs := c.sent
		if what == "queued" {
			msgs = c.queue
		}
		var got []string
		for _, m := range msgs {
			if f.match(m) {
				got = append(got, fmtMsg(m))
			}
		}
		if !countOK(len(got), want, atLeast) {
			return fmt.Errorf("%d %s messages match %s, want %d:\n  %s", len(got), what, f, want, strings.Join(got, "\n  "))
		}
		return nil
	case "events":
		return s.expectEvents(lhs, rhs, atLeast)
	case "log":
		return s.expectLog(lhs, rhs)
	}

	// Per-replica values.
	var ids []uint64
	for _, a := range lhs {
		x, err := s.ids(a)
		if err != nil {
			return err
		}
		ids = append(ids, x...)
	}
	if len(ids) == 0 || len(rhs) != 1 {
		return fmt.Errorf("usage: expect %s IDS = VALUE", what)
	}
	want := rhs[0]
	for _, id := range ids {
		n := c.node(id)
		if what == "up" {
			if got := strconv.FormatBool(n.r != nil); got != want {
				return fmt.Errorf("replica %d: up = %s, want %s", id, got, want)
			}
			continue
		}
		if what == "applied" {
			if got := strconv.FormatUint(n.applied, 10); got != want {
				return fmt.Errorf("replica %d: applied = %s, want %s", id, got, want)
			}
			continue
		}
		if n.r == nil {
			return fmt.Errorf("replica %d is down", id)
		}
		st := n.r.State()
		var got string
		switch what {
		case "status":
			got = st.Status.String()
		case "view":
			got = strconv.FormatUint(st.View, 10)
		case "logview":
			got = strconv.FormatUint(st.LogView, 10)
		case "op":
			got = strconv.FormatUint(st.Op, 10)
		case "commit":
			got = strconv.FormatUint(st.Commit, 10)
		case "primary":
			got = strconv.FormatUint(st.Primary, 10)
		case "is_primary":
			got = strconv.FormatBool(st.IsPrimary)
		case "catching_up":
			got = strconv.FormatBool(st.CatchingUp)
		case "faulty":
			got = strconv.FormatUint(st.Faulty, 10)
		case "promised":
			got = strconv.FormatUint(st.Promised, 10)
		case "epoch":
			got = strconv.FormatUint(st.Epoch, 10)
		case "config":
			var parts []string
			for _, id := range st.Config {
				parts = append(parts, strconv.FormatUint(id, 10))
			}
			got = strings.Join(parts, ",")
		case "reconfiguring":
			got = strconv.FormatBool(st.Reconfiguring)
		case "logstart":
			got = strconv.FormatUint(n.r.LogStart(), 10)
		default:
			return fmt.Errorf("unknown expectation %q", what)
		}
		if got != want {
			return fmt.Errorf("replica %d: %s = %s, want %s", id, what, got, want)
		}
	}
	return nil
}

func oneInt(rhs []string) (int, error) {
	if len(rhs) != 1 {
		return 0, errors.New("want one number after =")
	}
	return strconv.Atoi(rhs[0])
}

// expectLog: "log ID op N = IDENT|none" or "log ID = IDENT...".
func (s *script) expectLog(lhs, rhs []string) error {
	if len(lhs) != 1 && !(len(lhs) == 3 && lhs[1] == "op") {
		return errors.New("usage: expect log ID [op N] = ...")
	}
	ids, err := s.ids(lhs[0])
	if err != nil || len(ids) != 1 {
		return fmt.Errorf("expect log needs one replica id, got %q", lhs[0])
	}
	n := s.c.node(ids[0])
	if len(lhs) == 3 {
		k, err := strconv.Atoi(lhs[2])
		if err != nil || k < 1 {
			return fmt.Errorf("bad op number %q", lhs[2])
		}
		if len(rhs) != 1 {
			return errors.New("want one op identity after =")
		}
		got := "none"
		if k <= len(n.disk) {
			got = opIdent(n.disk[k-1])
			if n.disk[k-1].Op != uint64(k) {
				return fmt.Errorf("replica %d: disk slot %d holds op %d", n.id, k, n.disk[k-1].Op)
			}
		}
		if !identMatch(got, rhs[0]) {
			return fmt.Errorf("replica %d: op %d = %s, want %s", n.id, k, got, rhs[0])
		}
		return nil
	}
	if len(n.disk) != len(rhs) {
		return fmt.Errorf("replica %d: log = [%s], want [%s]", n.id, logString(n.disk), strings.Join(rhs, " "))
	}
	for i, want := range rhs {
		if !identMatch(opIdent(n.disk[i]), want) {
			return fmt.Errorf("replica %d: log = [%s], want [%s]", n.id, logString(n.disk), strings.Join(rhs, " "))
		}
	}
	return nil
}

// identMatch compares an identity "k=v@view" with a wanted one that may
// leave out "@view".
func identMatch(got, want string) bool {
	if strings.Contains(want, "@") || got == "none" {
		return got == want
	}
	kv, _, _ := strings.Cut(got, "@")
	return kv == want
}

func (s *script) expectEvents(lhs, rhs []string, atLeast bool) error {
	want, err := oneInt(rhs)
	if err != nil {
		return err
	}
	var ids []uint64
	var kind EventKind
	fields := map[string]uint64{}
	for _, a := range lhs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("bad event term %q", a)
		}
		switch k {
		case "id":
			if ids, err = s.ids(v); err != nil {
				return err
			}
		case "kind":
			if kind, ok = kindNames[v]; !ok {
				return fmt.Errorf("unknown event kind %q", v)
			}
		case "view", "op", "primary", "commit":
			x, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return err
			}
			fields[k] = x
		default:
			return fmt.Errorf("unknown event key %q", k)
		}
	}
	var got []string
	for _, e := range s.c.events {
		if len(ids) > 0 && !slices.Contains(ids, e.id) || kind != 0 && e.Kind != kind {
			continue
		}
		if x, ok := fields["view"]; ok && e.View != x {
			continue
		}
		if x, ok := fields["op"]; ok && e.Op != x {
			continue
		}
		if x, ok := fields["primary"]; ok && e.Primary != x {
			continue
		}
		if x, ok := fields["commit"]; ok && e.Commit != x {
			continue
		}
		got = append(got, fmt.Sprintf("replica %d: %s", e.id, fmtEvent(e.Event)))
	}
	if !countOK(len(got), want, atLeast) {
		var all []string
		for _, e := range s.c.events {
			all = append(all, fmt.Sprintf("replica %d: %s", e.id, fmtEvent(e.Event)))
		}
		return fmt.Errorf("%d events match, want %d; all events of the previous command:\n  %s", len(got), want, strings.Join(all, "\n  "))
	}
	return nil
}

func fmtEvent(e Event) string {
	name := "unknown"
	for k, v := range kindNames {
		if v == e.Kind {
			name = k
		}
	}
	return fmt.Sprintf("%s view=%d primary=%d op=%d commit=%d", name, e.View, e.Primary, e.Op, e.Commit)
}
