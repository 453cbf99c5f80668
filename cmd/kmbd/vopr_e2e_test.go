package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
	"github.com/kmb-db/kmb/internal/vopr"
)

var dashboardShot = flag.String("vopr.screenshot", "", "write the dashboard test's second screenshot to this PNG file (docs/vopr-dashboard.png)")

// startDashboard runs bin vopr dashboard on a free port and returns its
// page's URL.
func startDashboard(t *testing.T, bin string, args ...string) (*kmbdtest.Process, string) {
	t.Helper()
	p := kmbdtest.Start(t, "kmbd vopr dashboard", nil, bin, append([]string{"vopr", "dashboard", "--port", "0"}, args...)...)
	addr := regexp.MustCompile(`http://127\.0\.0\.1:\d+/`)
	var url string
	kmbdtest.WaitFor(t, "the dashboard's address", 60*time.Second, func() bool {
		url = addr.FindString(p.Output.String())
		return url != "" || p.Exited()
	})
	if url == "" {
		t.Fatalf("the dashboard exited:\n%s", p.Output.String())
	}
	return p, url
}

// page is what the dashboard shows, read from its DOM.
type page struct {
	SeedsDone int      `json:"seeds_done"`
	Events    int      `json:"events"`
	Checked   int      `json:"checked"`
	Failures  int      `json:"failures"`
	Live      bool     `json:"live"`
	Replicas  int      `json:"replicas"`
	Faults    []string `json:"faults"`
	Replays   []string `json:"replays"`
	Status    string   `json:"status"`
	Foreign   []string `json:"foreign"` // resources loaded from anywhere but the dashboard
}

// readPage is null until the page has loaded.
const readPage = `(() => {
  if (!document.getElementById("seeds-done")) return null;
  const n = (id) => Number(document.getElementById(id).textContent.replace(/,/g, ""));
  return {
    seeds_done: n("seeds-done"), events: n("events-total"), checked: n("ops-checked"), failures: n("failures-count"),
    live: document.getElementById("link").classList.contains("live"),
    replicas: document.querySelectorAll("#replicas tr").length,
    faults: [...document.querySelectorAll("#faults .fault")].map((e) => e.dataset.kind),
    replays: [...document.querySelectorAll(".failure .replay code")].map((e) => e.textContent),
    status: document.getElementById("run-status").textContent,
    foreign: performance.getEntriesByType("resource").map((e) => e.name).filter((u) => !u.startsWith(location.origin)),
  };
})()`

func readDashboard(t *testing.T, c *kmbdtest.Chromium) page {
	t.Helper()
	var p page
	c.Eval(t, readPage, &p)
	return p
}

func apiState(t *testing.T, url string) vopr.State {
	t.Helper()
	code, body := kmbdtest.HTTPDo(t, "GET", url+"api/state", "")
	var st vopr.State
	if code != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("GET /api/state: %d %s", code, body)
	}
	return st
}

func checkPNG(t *testing.T, b []byte, w, h int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if got := img.Bounds().Size(); got.X != w || got.Y != h {
		t.Fatalf("screenshot is %v, want %dx%d", got, w, h)
	}
}

// The dashboard in a real headless Chromium: it renders the run, updates
// it live over /events, and loads nothing from anywhere else.
func TestVOPRDashboardChromium(t *testing.T) {
	chromium := kmbdtest.RequireTool(t, "KMB_CHROMIUM", "chromium")
	bin := kmbdtest.Binary(t)
	_, url := startDashboard(t, bin, "--seeds", "100000", "--ticks", "300")

	const w, h = 1280, 1050
	c := kmbdtest.StartChromium(t, chromium, w, h)
	c.Navigate(t, url)
	var first page
	kmbdtest.WaitFor(t, "the page to show a running campaign", 60*time.Second, func() bool {
		first = readDashboard(t, c)
		return first.Live && first.SeedsDone > 0 && first.Events > 0 && first.Replicas == 3 && len(first.Faults) > 0
	})
	shot1 := c.Screenshot(t)

	var second page
	kmbdtest.WaitFor(t, "the page's numbers to advance", 60*time.Second, func() bool {
		second = readDashboard(t, c)
		return second.SeedsDone > first.SeedsDone && second.Events > first.Events && second.Checked > first.Checked
	})
	if *dashboardShot != "" {
		// For the picture in docs/: charts with some history behind them.
		kmbdtest.WaitFor(t, "15 s of history", 60*time.Second, func() bool { return len(apiState(t, url).History) > 15 })
	}
	shot2 := c.Screenshot(t)
	checkPNG(t, shot1, w, h)
	checkPNG(t, shot2, w, h)
	if bytes.Equal(shot1, shot2) {
		t.Fatal("the two screenshots are the same picture")
	}
	t.Logf("first %+v\nthen  %+v", first, second)

	want := []string{"drop", "duplicate", "delay", "partition", "crash", "torn_write", "lost_disk", "corrupt"}
	for _, k := range want {
		if !strings.Contains(strings.Join(second.Faults, " "), k) {
			t.Errorf("the page shows faults %v, not %s", second.Faults, k)
		}
	}
	if len(second.Foreign) > 0 {
		t.Errorf("the page loaded resources from elsewhere: %v", second.Foreign)
	}
	if second.Failures != 0 || !strings.HasPrefix(second.Status, "running") {
		t.Errorf("page status %q with %d failures", second.Status, second.Failures)
	}
	// The page lags the state by at most a frame or two.
	if st := apiState(t, url); st.SeedsDone < second.SeedsDone || st.Events < int64(second.Events) {
		t.Errorf("/api/state %d seeds, %d events is behind the page", st.SeedsDone, st.Events)
	}
	if *dashboardShot != "" {
		if err := os.WriteFile(*dashboardShot, shot2, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tmuxSession is a program in a detached tmux session on a private server.
type tmuxSession struct {
	t    *testing.T
	tmux string
	sock string
}

func startTmux(t *testing.T, w, h int, command string) *tmuxSession {
	t.Helper()
	tmux := kmbdtest.RequireTool(t, "KMB_TMUX", "tmux")
	s := &tmuxSession{t: t, tmux: tmux, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	s.run("new-session", "-d", "-s", "vopr", "-x", strconv.Itoa(w), "-y", strconv.Itoa(h), command)
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", s.sock, "kill-server").Run() })
	return s
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(s.tmux, append([]string{"-S", s.sock}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (s *tmuxSession) screen() string { return s.run("capture-pane", "-p", "-t", "vopr") }

// scrollback is the screen and the lines scrolled off it, wrapped lines
// joined.
func (s *tmuxSession) scrollback() string {
	return s.run("capture-pane", "-p", "-J", "-S", "-1000", "-t", "vopr")
}

var (
	tuiSeeds  = regexp.MustCompile(`Seeds\s+([\d,]+) / ([\d,]+)`)
	tuiEvents = regexp.MustCompile(`([\d,]+) simulated`)
)

func number(re *regexp.Regexp, screen string) int {
	m := re.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	return n
}

// quit presses q and waits for the program to exit 0, as recorded by
// tuiCommand's shell in the file status.
func (s *tmuxSession) quit(status string) {
	s.t.Helper()
	s.run("send-keys", "-t", "vopr", "q")
	var code []byte
	kmbdtest.WaitFor(s.t, "kmbd vopr tui to exit after q", 30*time.Second, func() bool {
		code, _ = os.ReadFile(status)
		return len(code) > 0
	})
	if strings.TrimSpace(string(code)) != "0" {
		s.t.Fatalf("exit status %q after q:\n%s", code, s.screen())
	}
}

// tuiCommand runs bin vopr tui in a shell that records its exit status.
func tuiCommand(t *testing.T, bin string, args ...string) (string, string) {
	status := filepath.Join(t.TempDir(), "status")
	return fmt.Sprintf("%s vopr tui %s; echo $? > %s; sleep 60", bin, strings.Join(args, " "), status), status
}

// cleanScreen: the screen fills the pane of h rows exactly once: one
// title on the top row, the footer on the last.
func cleanScreen(screen string, h int) bool {
	lines := strings.Split(strings.TrimSuffix(screen, "\n"), "\n")
	return len(lines) == h && strings.HasPrefix(lines[0], " kmb VOPR") && strings.HasPrefix(lines[h-1], " q quit") &&
		strings.Count(screen, "kmb VOPR") == 1 && strings.Count(screen, "q quit") == 1
}

func checkScreen(t *testing.T, screen string, h int) {
	t.Helper()
	if !cleanScreen(screen, h) {
		t.Fatalf("screen of %d rows is not drawn cleanly:\n%s", h, screen)
	}
}

// The TUI under tmux: it shows the seeds advancing, redraws cleanly when
// the terminal shrinks and grows, and q exits 0.
func TestVOPRTUITmux(t *testing.T) {
	bin := kmbdtest.Binary(t)
	cmd, status := tuiCommand(t, bin, "--seeds", "100000", "--ticks", "300")
	s := startTmux(t, 120, 40, cmd)

	var first string
	kmbdtest.WaitFor(t, "the TUI to show seeds done", 60*time.Second, func() bool {
		first = s.screen()
		return number(tuiSeeds, first) > 0 && number(tuiEvents, first) > 0
	})
	checkScreen(t, first, 40)
	for _, want := range []string{"100,000", "Current run", "replica", "normal", "Faults injected", "torn write", "lost disk", "checked for linearizability"} {
		if !strings.Contains(first, want) {
			t.Fatalf("the screen lacks %q:\n%s", want, first)
		}
	}
	var second string
	kmbdtest.WaitFor(t, "the seeds to advance", 60*time.Second, func() bool {
		second = s.screen()
		return number(tuiSeeds, second) > number(tuiSeeds, first) && number(tuiEvents, second) > number(tuiEvents, first)
	})

	for _, size := range []struct{ w, h int }{{80, 24}, {120, 40}} {
		s.run("resize-window", "-t", "vopr", "-x", strconv.Itoa(size.w), "-y", strconv.Itoa(size.h))
		// Until the program redraws, tmux shows the old frame cut to the new
		// size; the redraw must replace it with a whole, clean screen.
		var screen string
		deadline := time.Now().Add(30 * time.Second)
		for screen = s.screen(); !cleanScreen(screen, size.h); screen = s.screen() {
			if time.Now().After(deadline) {
				t.Fatalf("no clean redraw at %dx%d within 30s:\n%s", size.w, size.h, screen)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, l := range strings.Split(screen, "\n") {
			if len([]rune(l)) > size.w {
				t.Fatalf("a line wider than %d columns: %q", size.w, l)
			}
		}
	}

	s.quit(status)
	if after := s.scrollback(); !strings.Contains(after, "kmbd vopr tui: ") || !strings.Contains(after, "0 failed") {
		t.Fatalf("no summary after quitting:\n%s", after)
	}
}

// With the planted bug (-tags kmb_canary) both views show failing seeds,
// each with the command that replays it, and the command does.
func TestVOPRCanaryViews(t *testing.T) {
	chromium := kmbdtest.RequireTool(t, "KMB_CHROMIUM", "chromium")
	kmbdtest.RequireTool(t, "KMB_TMUX", "tmux")
	bin := kmbdtest.BinaryWithTags(t, "kmb_canary")

	t.Run("dashboard", func(t *testing.T) {
		_, url := startDashboard(t, bin, "--seeds", "12", "--ticks", "300")
		c := kmbdtest.StartChromium(t, chromium, 1280, 1050)
		c.Navigate(t, url)
		var p page
		kmbdtest.WaitFor(t, "the page to list failing seeds", 120*time.Second, func() bool {
			p = readDashboard(t, c)
			return p.Failures > 0 && len(p.Replays) > 0 && strings.HasPrefix(p.Status, "finished")
		})
		st := apiState(t, url)
		if st.SeedsFailed != p.Failures || len(st.Failures) != len(p.Replays) {
			t.Fatalf("page %+v, state %d failed %d listed", p, st.SeedsFailed, len(st.Failures))
		}
		f := st.Failures[0]
		if p.Replays[0] != f.Replay || f.Replay != vopr.ReplayCommand(f.Seed, 300, 3) {
			t.Fatalf("page shows %q, state %+v", p.Replays[0], f)
		}
		// The replay command (without --trace, which prints every event)
		// fails the same way.
		out, err := exec.Command(bin, "vopr", "--seed", strconv.FormatUint(f.Seed, 10), "--ticks", "300", "--replicas", "3").CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "violation: "+f.Violation) {
			t.Fatalf("replaying seed %d: %v\n%s\nwanted violation %q", f.Seed, err, out, f.Violation)
		}
	})

	t.Run("tui", func(t *testing.T) {
		cmd, status := tuiCommand(t, bin, "--seeds", "12", "--ticks", "300")
		s := startTmux(t, 120, 40, cmd)
		replay := regexp.MustCompile(`kmbd vopr --seed (\d+) --ticks 300 --replicas 3 --trace`)
		var screen string
		kmbdtest.WaitFor(t, "the TUI to show a failing seed's replay command", 120*time.Second, func() bool {
			screen = s.screen()
			return strings.Contains(screen, "Failing seeds:") && replay.MatchString(screen)
		})
		checkScreen(t, screen, 40)
		seed := replay.FindStringSubmatch(screen)[1]
		if !regexp.MustCompile(`seed ` + seed + ` step \d+: `).MatchString(screen) {
			t.Fatalf("seed %s is listed without its violation:\n%s", seed, screen)
		}
		s.quit(status)
		if after := s.scrollback(); !strings.Contains(after, "FAIL seed="+seed) || !strings.Contains(after, "replay: kmbd vopr --seed "+seed+" ") {
			t.Fatalf("the summary after q lacks seed %s:\n%s", seed, after)
		}
	})
}
