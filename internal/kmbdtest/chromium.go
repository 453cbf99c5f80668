package kmbdtest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Chromium is a headless Chromium driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: requests on fd 3, answers on fd 4, each
// message a JSON object ended by a NUL byte), so that a test can load a
// page, read its DOM and take screenshots with nothing but the browser.
type Chromium struct {
	cmd     *exec.Cmd
	w       *os.File
	msgs    chan map[string]json.RawMessage
	next    int
	session string
	stderr  *Buffer
}

// StartChromium starts the browser at bin with a fresh profile and a
// viewport of width×height, and opens one tab. It is stopped when the
// test ends.
func StartChromium(t testing.TB, bin string, width, height int) *Chromium {
	t.Helper()
	toChrome, ourW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ourR, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &Chromium{w: ourW, msgs: make(chan map[string]json.RawMessage, 64), stderr: &Buffer{}}
	c.cmd = exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--mute-audio", "--user-data-dir="+t.TempDir(),
		fmt.Sprintf("--window-size=%d,%d", width, height),
		"--remote-debugging-pipe", "about:blank")
	c.cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fd 3 and fd 4
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	// Its own process group, so that its helper processes end with it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	toChrome.Close()
	fromChrome.Close()
	exited := make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(exited)
	}()
	go c.read(ourR)
	t.Cleanup(func() {
		_, _ = c.send("Browser.close", nil, "")
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// Helpers outliving the browser process belong to its group.
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		ourW.Close()
		ourR.Close()
		if t.Failed() {
			t.Logf("chromium output:\n%s", c.stderr.String())
		}
	})

	var target struct{ TargetID string }
	c.Call(t, "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct{ SessionID string }
	c.Call(t, "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	c.session = attached.SessionID
	c.Call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	c.Call(t, "Page.enable", nil, nil)
	return c
}

func (c *Chromium) read(r *os.File) {
	defer close(c.msgs)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		b, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b[:len(b)-1], &m) == nil {
			c.msgs <- m
		}
	}
}

func (c *Chromium) send(method string, params any, session string) (int, error) {
	c.next++
	msg := map[string]any{"id": c.next, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return 0, err
	}
	_, err = c.w.Write(append(b, 0))
	return c.next, err
}

// Call sends one DevTools command (to the tab once one is open) and
// decodes its result into out, failing the test on an error or after 30s.
func (c *Chromium) Call(t testing.TB, method string, params any, out any) {
	t.Helper()
	id, err := c.send(method, params, c.session)
	if err != nil {
		t.Fatalf("chromium %s: %v", method, err)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				t.Fatalf("chromium exited during %s", method)
			}
			var got int
			if json.Unmarshal(m["id"], &got) != nil || got != id {
				continue // an event, or the answer to an earlier call
			}
			if e, bad := m["error"]; bad {
				t.Fatalf("chromium %s: %s", method, e)
			}
			if out != nil {
				if err := json.Unmarshal(m["result"], out); err != nil {
					t.Fatalf("chromium %s: result %s: %v", method, m["result"], err)
				}
			}
			return
		case <-deadline:
			t.Fatalf("chromium %s: no answer within 30s", method)
		}
	}
}

// Navigate loads url in the tab.
func (c *Chromium) Navigate(t testing.TB, url string) {
	t.Helper()
	var res struct{ ErrorText string }
	c.Call(t, "Page.navigate", map[string]any{"url": url}, &res)
	if res.ErrorText != "" {
		t.Fatalf("chromium navigate %s: %s", url, res.ErrorText)
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its
// value (which must survive JSON) into out.
func (c *Chromium) Eval(t testing.TB, expr string, out any) {
	t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage
		}
		ExceptionDetails json.RawMessage
	}
	c.Call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res)
	if len(res.ExceptionDetails) > 0 {
		t.Fatalf("chromium eval %q: %s", expr, res.ExceptionDetails)
	}
	if out != nil {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			t.Fatalf("chromium eval %q = %s: %v", expr, res.Result.Value, err)
		}
	}
}

// Screenshot returns a PNG of the viewport.
func (c *Chromium) Screenshot(t testing.TB) []byte {
	t.Helper()
	var res struct{ Data string }
	c.Call(t, "Page.captureScreenshot", map[string]any{"format": "png"}, &res)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		t.Fatalf("chromium screenshot: %v", err)
	}
	return png
}
