package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/kmb-db/kmb/internal/vopr"
)

// Source is what the screen shows: *vopr.Runner.
type Source interface {
	Snapshot() vopr.State
}

// refreshInterval is how often the screen reads a new snapshot.
const refreshInterval = 200 * time.Millisecond

// Run shows src on the terminal behind in and out until q is pressed or
// ctx is done.
func Run(ctx context.Context, src Source, in io.Reader, out io.Writer) error {
	m := New(src, lipgloss.NewRenderer(out))
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out), tea.WithAltScreen())
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // stopped by a signal: as good as q
	}
	return err
}

// Model is the bubbletea model of the screen.
type Model struct {
	src    Source
	st     vopr.State
	width  int
	height int
	s      styles
}

type styles struct {
	title, dim, bold, ok, warn, bad, info, bar, barEmpty, accent lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	c := func(hex string) lipgloss.Style { return r.NewStyle().Foreground(lipgloss.Color(hex)) }
	return styles{
		title:    r.NewStyle().Bold(true),
		dim:      c("#8b98a5"),
		bold:     r.NewStyle().Bold(true),
		ok:       c("#3fb950"),
		warn:     c("#d29922"),
		bad:      c("#f85149").Bold(true),
		info:     c("#58a6ff"),
		bar:      c("#4fa3ff"),
		barEmpty: c("#2a3440"),
		accent:   c("#a78bfa"),
	}
}

// New returns the model; r renders its colours (lipgloss.NewRenderer of
// the output, so that a terminal without colour gets none).
func New(src Source, r *lipgloss.Renderer) Model {
	return Model{src: src, st: src.Snapshot(), width: 80, height: 24, s: newStyles(r)}
}

type stateMsg vopr.State

func (m Model) refresh() tea.Cmd {
	return tea.Tick(refreshInterval, func(time.Time) tea.Msg { return stateMsg(m.src.Snapshot()) })
}

// Init starts the refresh ticks.
func (m Model) Init() tea.Cmd { return m.refresh() }

// Update handles keys, resizes and new snapshots.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "Q", "ctrl+c", "esc":
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		// A shrinking terminal leaves the old, wider lines behind unless
		// the screen is cleared before the next frame.
		return m, tea.ClearScreen
	case stateMsg:
		m.st = vopr.State(msg)
		return m, m.refresh()
	}
	return m, nil
}

// View draws the screen: never wider than the terminal, never taller.
func (m Model) View() string {
	w, h := max(m.width, 20), max(m.height, 4)
	head := m.header(w)
	current := m.current(w)
	faults := m.faults(w)
	footer := m.s.dim.Render(" q quit · " + m.statusWord())

	// The failing seeds and their replay commands come first; the fault
	// bars take what room is left, and give way on a short terminal.
	room := h - 1 - len(head) - len(current)
	failures := m.failures(w, room)
	if spare := room - len(failures); len(faults) > spare {
		faults = m.faultsCompact(w)
		if len(faults) > spare {
			faults = nil
		}
	}
	lines := make([]string, 0, h)
	lines = append(lines, head...)
	lines = append(lines, current...)
	lines = append(lines, faults...)
	lines = append(lines, failures...)
	if len(lines) > h-1 {
		lines = lines[:h-1]
	}
	for len(lines) < h-1 {
		lines = append(lines, "")
	}
	lines = append(lines, footer)
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, w, "…")
	}
	return strings.Join(lines, "\n")
}

func (m Model) statusWord() string {
	st := m.st
	switch {
	case st.Finished && st.Stopped:
		return "stopped"
	case st.Finished:
		return "finished"
	}
	return "running"
}

func (m Model) header(w int) []string {
	st := m.st
	status := m.s.info.Render("running")
	switch {
	case st.SeedsFailed > 0:
		status = m.s.bad.Render(m.statusWord() + " · " + plural(st.SeedsFailed, "failing seed"))
	case st.Finished && st.Stopped:
		status = m.s.warn.Render("stopped")
	case st.Finished:
		status = m.s.ok.Render("finished · every invariant held")
	}
	last := st.FirstSeed + uint64(st.SeedsTotal) - 1
	title := fmt.Sprintf(" %s  %s  %s", m.s.title.Render("kmb VOPR"), status,
		m.s.dim.Render(fmt.Sprintf("seeds %d–%d · %d replicas · %d fault ticks per seed · %s", st.FirstSeed, last, st.Replicas, st.Ticks, duration(st.ElapsedSeconds))))

	const labelW = 12
	barW := max(10, min(40, w-60))
	pct := 0.0
	if st.SeedsTotal > 0 {
		pct = float64(st.SeedsDone) / float64(st.SeedsTotal)
	}
	seeds := fmt.Sprintf(" %-*s%s / %s  %s %5.1f%%  %s seeds/s", labelW, "Seeds",
		m.s.bold.Render(group(int64(st.SeedsDone))), group(int64(st.SeedsTotal)), m.bar(pct, barW), 100*pct, m.s.bold.Render(fmt.Sprintf("%.1f", st.SeedsPerSecond)))
	events := fmt.Sprintf(" %-*s%s events/s  %s simulated  %s", labelW, "Events",
		m.s.bold.Render(compact(st.EventsPerSecond)), group(st.Events), m.s.bar.Render(sparkline(st.History, max(8, w-70))))
	ops := fmt.Sprintf(" %-*s%s checked for linearizability · %s completed", labelW, "Client ops",
		m.s.bold.Render(group(st.ClientOpsChecked)), group(st.ClientOps))
	return []string{title, "", seeds, events, ops, ""}
}

func (m Model) current(w int) []string {
	cur := m.st.Current
	if len(cur.Replicas) == 0 {
		return []string{" " + m.s.title.Render("Current run") + m.s.dim.Render("  starting…"), ""}
	}
	pct := 0.0
	if cur.TicksBound > 0 {
		pct = float64(cur.Tick) / float64(cur.TicksBound)
	}
	phase := m.s.warn.Render(string(cur.Phase))
	if cur.Phase != "faults" {
		phase = m.s.ok.Render(string(cur.Phase))
	}
	out := []string{
		fmt.Sprintf(" %s  seed %s · %s · tick %s of at most %s  %s", m.s.title.Render("Current run"),
			m.s.bold.Render(fmt.Sprint(cur.Seed)), phase, group(int64(cur.Tick)), group(int64(cur.TicksBound)), m.bar(pct, max(10, min(30, w-75)))),
		m.s.dim.Render(fmt.Sprintf(" %-9s %-13s %8s %9s %9s %7s", "replica", "status", "view", "op", "commit", "leader")),
	}
	for _, r := range cur.Replicas {
		id := fmt.Sprintf("%-9d", r.ID)
		if r.Up && r.Leader == r.ID {
			n := fmt.Sprint(r.ID)
			id = n + m.s.warn.Render(" ★") + strings.Repeat(" ", max(0, 7-len(n)))
		}
		status := fmt.Sprintf("%-13s", strings.ReplaceAll(r.Status, "_", " "))
		switch r.Status {
		case "normal":
			status = m.s.ok.Render(status)
		case "view_change":
			status = m.s.warn.Render(status)
		case "recovering":
			status = m.s.info.Render(status)
		default:
			status = m.s.bad.Render(status)
		}
		if !r.Up {
			out = append(out, fmt.Sprintf(" %s %s %8s %9s %9s %7s", id, status, "–", "–", "–", "–"))
			continue
		}
		leader := "–"
		if r.Leader != 0 {
			leader = fmt.Sprint(r.Leader)
		}
		out = append(out, fmt.Sprintf(" %s %s %8d %9d %9d %7s", id, status, r.View, r.Op, r.Commit, leader))
	}
	return append(out, "")
}

// faults: one bar per kind, whatever kinds the simulator reports, on a log
// scale (delays number in the millions, lost disks in the tens).
func (m Model) faults(w int) []string {
	fs := m.st.Faults
	if len(fs) == 0 {
		return nil
	}
	out := []string{" " + m.s.title.Render("Faults injected") + m.s.dim.Render("  all seeds · log scale")}
	top := 1
	nameW := 0
	for _, f := range fs {
		top = max(top, f.Count)
		nameW = max(nameW, len(f.Kind))
	}
	barW := max(10, min(50, w-nameW-20))
	for _, f := range fs {
		frac := math.Log10(1+float64(f.Count)) / math.Log10(1+float64(top))
		out = append(out, fmt.Sprintf(" %-*s %12s  %s", nameW+1, strings.ReplaceAll(f.Kind, "_", " "), group(int64(f.Count)), m.s.accent.Render(solid(frac, barW))))
	}
	return append(out, "")
}

// faultsCompact is faults in as few lines as the width allows, for a
// terminal too short for the bars.
func (m Model) faultsCompact(w int) []string {
	out := []string{" " + m.s.title.Render("Faults injected") + m.s.dim.Render("  all seeds")}
	line := ""
	for _, f := range m.st.Faults {
		item := strings.ReplaceAll(f.Kind, "_", " ") + " " + m.s.bold.Render(group(int64(f.Count)))
		if line != "" && ansi.StringWidth(line)+3+ansi.StringWidth(item) > w {
			out = append(out, line)
			line = ""
		}
		if line == "" {
			line = " " + item
		} else {
			line += m.s.dim.Render(" · ") + item
		}
	}
	if line != "" {
		out = append(out, line)
	}
	return append(out, "")
}

// failures lists the failing seeds that fit in room lines, each with its
// replay command, and says how many more there are.
func (m Model) failures(w, room int) []string {
	st := m.st
	if st.SeedsFailed == 0 || room < 1 {
		return nil
	}
	out := []string{" " + m.s.bad.Render(fmt.Sprintf("Failing seeds: %d", st.SeedsFailed)) + m.s.dim.Render("  each replays exactly:")}
	shown := 0
	for _, f := range st.Failures {
		entry := []string{
			fmt.Sprintf(" %s %s", m.s.bold.Render(fmt.Sprintf("seed %d", f.Seed)), m.s.bad.Render(f.Violation)),
			"   " + f.Replay,
		}
		// Keep a line for the count of the rest, when there is a rest.
		reserve := 0
		if shown+1 < st.SeedsFailed {
			reserve = 1
		}
		if len(out)+len(entry)+reserve > room {
			break
		}
		out = append(out, entry...)
		shown++
	}
	if rest := st.SeedsFailed - shown; rest > 0 && len(out) < room {
		out = append(out, m.s.dim.Render(fmt.Sprintf(" … and %s not shown", plural(rest, "more seed"))))
	}
	return out
}

func (m Model) bar(frac float64, width int) string {
	n := int(math.Round(max(0, min(1, frac)) * float64(width)))
	return m.s.bar.Render(strings.Repeat("█", n)) + m.s.barEmpty.Render(strings.Repeat("░", width-n))
}

func solid(frac float64, width int) string {
	n := int(math.Round(max(0, min(1, frac)) * float64(width)))
	if frac > 0 && n == 0 {
		n = 1
	}
	return strings.Repeat("■", n)
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the last width samples' events/s.
func sparkline(h []vopr.Sample, width int) string {
	if len(h) > width {
		h = h[len(h)-width:]
	}
	top := 0.0
	for _, s := range h {
		top = max(top, s.EventsPerSecond)
	}
	var b strings.Builder
	for _, s := range h {
		i := 0
		if top > 0 {
			i = int(math.Round(s.EventsPerSecond / top * float64(len(sparks)-1)))
		}
		b.WriteRune(sparks[i])
	}
	return b.String()
}

// group writes 1234567 as 1,234,567 (counts are never negative).
func group(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// compact writes 1234567 as 1.23 M.
func compact(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2f G", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1f k", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func duration(s float64) string {
	d := time.Duration(s * float64(time.Second))
	if d < time.Minute {
		return fmt.Sprintf("%.1f s", s)
	}
	return d.Truncate(time.Second).String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
