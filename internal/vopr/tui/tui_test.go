package tui

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/kmb-db/kmb/internal/vopr"
	"github.com/kmb-db/kmb/store/sim"
)

var update = flag.Bool("update", false, "rewrite the golden screens in testdata/")

type fixed vopr.State

func (f fixed) Snapshot() vopr.State { return vopr.State(f) }

// sample is a campaign part way through, with two failing seeds and a
// fault kind the screen has no special case for.
func sample() vopr.State {
	return vopr.State{
		Version: 42, FirstSeed: 1, SeedsTotal: 1000, SeedsDone: 123, SeedsFailed: 2,
		Ticks: 1500, Replicas: 3, ElapsedSeconds: 8.5, SeedsPerSecond: 14.47, EventsPerSecond: 345678,
		Events: 2938263, Messages: 1811500, ClientOps: 245001, ClientOpsChecked: 244000,
		Faults: []sim.FaultCount{
			{Kind: "drop", Count: 36210}, {Kind: "duplicate", Count: 36002}, {Kind: "delay", Count: 1660000},
			{Kind: "partition", Count: 610}, {Kind: "crash", Count: 2602}, {Kind: "torn_write", Count: 377},
			{Kind: "lost_disk", Count: 160}, {Kind: "corrupt", Count: 0},
		},
		Current: sim.Progress{
			Seed: 124, Phase: sim.PhaseFaults, Tick: 800, TicksBound: 3000,
			Replicas: []sim.ReplicaProgress{
				{ID: 1, Up: true, Status: "normal", View: 12, Op: 1234, Commit: 1230, Leader: 1},
				{ID: 2, Up: true, Status: "view_change", View: 13, Op: 1200, Commit: 1190, Leader: 2},
				{ID: 3, Status: "down"},
			},
		},
		Failures: []vopr.Failure{
			{Seed: 17, Violation: "step 5120: agreement: replica 2 committed op 88 as op88/v3, committed elsewhere as op88/v2", Replay: vopr.ReplayCommand(17, 1500, 3)},
			{Seed: 61, Violation: "step 240: committed op 3 lost on replica 1 (log ends at 2)", Replay: vopr.ReplayCommand(61, 1500, 3)},
		},
		History: []vopr.Sample{{T: 1, EventsPerSecond: 100000}, {T: 2, EventsPerSecond: 300000}, {T: 3, EventsPerSecond: 345678}},
	}
}

func plain() *lipgloss.Renderer { return lipgloss.NewRenderer(io.Discard) }

func sized(m Model, w, h int) Model {
	next, cmd := m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	if cmd == nil {
		panic("a resize must clear the screen")
	}
	return next.(Model)
}

// The screen at a few sizes, against golden files: everything the issue
// lists is on it, and no line is wider than the terminal nor the screen
// taller.
func TestViewGolden(t *testing.T) {
	for _, size := range []struct{ w, h int }{{120, 40}, {100, 30}, {80, 24}, {60, 16}} {
		m := sized(New(fixed(sample()), plain()), size.w, size.h)
		screen := m.View()
		lines := strings.Split(screen, "\n")
		if len(lines) != size.h {
			t.Errorf("%dx%d: %d lines", size.w, size.h, len(lines))
		}
		for i, l := range lines {
			if ansi.StringWidth(l) > size.w {
				t.Errorf("%dx%d: line %d is %d wide: %q", size.w, size.h, i, ansi.StringWidth(l), l)
			}
		}
		if !strings.HasSuffix(lines[len(lines)-1], "q quit · running") {
			t.Errorf("%dx%d: last line %q", size.w, size.h, lines[len(lines)-1])
		}
		golden := filepath.Join("testdata", fmt.Sprintf("screen-%dx%d.golden", size.w, size.h))
		if *update {
			if err := os.WriteFile(golden, []byte(screen+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if screen+"\n" != string(want) {
			t.Errorf("%dx%d screen differs from %s (go test -update rewrites it):\n%s", size.w, size.h, golden, screen)
		}
	}
}

func TestViewContents(t *testing.T) {
	m := sized(New(fixed(sample()), plain()), 120, 40)
	screen := m.View()
	for _, want := range []string{
		"123 / 1,000", "14.5 seeds/s", "345.7 k events/s", "244,000 checked for linearizability", "245,001 completed",
		"seed 124", "faults", "tick 800 of at most 3,000",
		"view change", "down", "1 ★",
		"drop", "duplicate", "delay", "partition", "crash", "torn write", "lost disk", "corrupt",
		"Failing seeds: 2", "kmbd vopr --seed 17 --ticks 1500 --replicas 3 --trace", "kmbd vopr --seed 61 --ticks 1500 --replicas 3 --trace",
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
}

// On a short terminal the replay commands stay; the fault bars give way.
func TestViewShortKeepsReplay(t *testing.T) {
	m := sized(New(fixed(sample()), plain()), 100, 20)
	screen := m.View()
	if !strings.Contains(screen, "kmbd vopr --seed 17 ") || strings.Contains(screen, "Faults injected") {
		t.Fatalf("short screen:\n%s", screen)
	}
}

// More failing seeds than fit: as many as fit, and the count of the rest.
func TestViewManyFailures(t *testing.T) {
	st := sample()
	st.SeedsFailed = 300
	for i := range 100 {
		st.Failures = append(st.Failures, vopr.Failure{Seed: uint64(1000 + i), Violation: "x", Replay: vopr.ReplayCommand(uint64(1000+i), 1500, 3)})
	}
	m := sized(New(fixed(st), plain()), 120, 40)
	screen := m.View()
	if n := strings.Count(screen, "kmbd vopr --seed"); n < 3 || !strings.Contains(screen, "more seeds not shown") {
		t.Fatalf("%d replay lines:\n%s", n, screen)
	}
	if lines := strings.Split(screen, "\n"); len(lines) != 40 {
		t.Fatalf("%d lines", len(lines))
	}
}

func TestKeysAndRefresh(t *testing.T) {
	st := sample()
	m := New(fixed(st), plain())
	for _, k := range []tea.KeyMsg{{Type: tea.KeyRunes, Runes: []rune("q")}, {Type: tea.KeyCtrlC}, {Type: tea.KeyEsc}} {
		_, cmd := m.Update(k)
		if cmd == nil {
			t.Fatalf("%v: no command", k)
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Fatalf("%v does not quit", k)
		}
	}
	if _, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("x")}); cmd != nil {
		t.Fatal("x did something")
	}
	// A new snapshot replaces the old one and asks for the next.
	st.SeedsDone = 500
	next, cmd := m.Update(stateMsg(st))
	if cmd == nil || next.(Model).st.SeedsDone != 500 {
		t.Fatal("a snapshot was not taken in")
	}
	done := st
	done.Finished, done.SeedsFailed, done.Failures = true, 0, nil
	next, _ = sized(m, 100, 30).Update(stateMsg(done))
	if s := next.(Model).View(); !strings.Contains(s, "finished · every invariant held") || !strings.Contains(s, "q quit · finished") {
		t.Fatalf("finished screen:\n%s", s)
	}
}
