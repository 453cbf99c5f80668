package kmbdtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Buffer collects a process's output while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// LogLines parses every line written so far as one of kmbd's JSON log
// lines; a line that is not JSON fails the test.
func (b *Buffer) LogLines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// Process is a child process owned by one test: its stdout and stderr go to
// Output, it is stopped when the test ends, and its output is logged if the
// test failed.
type Process struct {
	Name   string // in messages
	Cmd    *exec.Cmd
	Output *Buffer
	done   chan struct{} // closed once Cmd.Wait has returned
}

// cleanupGrace is how long a process still running when its test ends gets
// between SIGTERM and SIGKILL: enough for kmbd, Prometheus or Jaeger to shut
// down cleanly, and bounded so a hung one cannot hold up the test binary.
const cleanupGrace = 10 * time.Second

// Start starts bin with args, with env added to the test's environment.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Cmd: exec.Command(bin, args...), Output: &Buffer{}, done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p.Output, p.Output
	p.Cmd.Env = append(os.Environ(), env...)
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Terminate(cleanupGrace)
		if t.Failed() {
			// The end says why it failed; all of a loaded node's debug
			// log would drown the test's own messages.
			out := p.Output.String()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("%s output:\n%s", p.Name, out)
		}
	})
	return p
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Terminate sends SIGTERM and waits for the process to exit, killing it
// after grace.
func (p *Process) Terminate(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// kill stops the process at once, as a crash would (kill -9).
func (p *Process) kill(t testing.TB) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", p.Name, err)
	}
	<-p.done
}
