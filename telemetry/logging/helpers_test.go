package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var timestampRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)

var levelNames = map[string]bool{"TRACE": true, "DEBUG": true, "INFO": true, "WARN": true, "ERROR": true}

// checkJSONLine asserts that line is one JSON object with exactly the keys
// timestamp, level, target, message and fields, in that order and of the
// documented types, and returns it decoded.
func checkJSONLine(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if bytes.ContainsAny(line, "\n\r") {
		t.Fatalf("line contains a line break: %q", line)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("line does not start an object (%v, %v): %s", tok, err, line)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("bad key in %s: %v", line, err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("bad value in %s: %v", line, err)
		}
	}
	if got, want := strings.Join(keys, ","), "timestamp,level,target,message,fields"; got != want {
		t.Fatalf("keys = %s, want %s: %s", got, want, line)
	}

	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("line is not valid JSON: %v: %s", err, line)
	}
	if ts, _ := m["timestamp"].(string); !timestampRE.MatchString(ts) {
		t.Errorf("timestamp %q is not RFC 3339 UTC with milliseconds", m["timestamp"])
	}
	if lvl, _ := m["level"].(string); !levelNames[lvl] {
		t.Errorf("level %q is not one of TRACE DEBUG INFO WARN ERROR", m["level"])
	}
	if tg, _ := m["target"].(string); tg == "" {
		t.Errorf("target %v is not a non-empty string", m["target"])
	}
	if _, ok := m["message"].(string); !ok {
		t.Errorf("message %v is not a string", m["message"])
	}
	if _, ok := m["fields"].(map[string]any); !ok {
		t.Errorf("fields %v is not an object", m["fields"])
	}
	return m
}

// checkJSONLines applies checkJSONLine to every line of out.
func checkJSONLines(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	if len(out) > 0 && out[len(out)-1] != '\n' {
		t.Fatalf("output does not end in a newline: %q", out)
	}
	var ms []map[string]any
	for line := range bytes.Lines(out) {
		ms = append(ms, checkJSONLine(t, bytes.TrimSuffix(line, []byte("\n"))))
	}
	return ms
}

// parseTextLine splits a text-format line into its positional parts and
// its fields, nesting dotted keys. It understands only what the handler
// writes: a single-token message (bare or quoted) and key=value pairs
// whose keys and values are bare or Go-quoted.
func parseTextLine(line string) (ts, level, target, msg string, fields map[string]any, err error) {
	line = strings.TrimSuffix(line, "\n")
	var toks []string
	for s := line; ; {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		var tok string
		if tok, s, err = nextTextToken(s); err != nil {
			return
		}
		toks = append(toks, tok)
	}
	if len(toks) < 4 {
		return "", "", "", "", nil, fmt.Errorf("too few tokens in %q", line)
	}
	ts, level, target, msg = toks[0], toks[1], toks[2], toks[3]
	if msg, err = unquoteMaybe(msg); err != nil {
		return
	}
	fields = map[string]any{}
	for _, kv := range toks[4:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", "", "", "", nil, fmt.Errorf("token %q is not key=value", kv)
		}
		if k, err = unquoteMaybe(k); err != nil {
			return
		}
		if v, err = unquoteMaybe(v); err != nil {
			return
		}
		m := fields
		parts := strings.Split(k, ".")
		for _, g := range parts[:len(parts)-1] {
			sub, _ := m[g].(map[string]any)
			if sub == nil {
				sub = map[string]any{}
				m[g] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = v
	}
	return
}

// nextTextToken returns the token at the start of s: a run of non-spaces
// in which Go-quoted strings may contain spaces.
func nextTextToken(s string) (tok, rest string, err error) {
	i := 0
	for i < len(s) && s[i] != ' ' {
		if s[i] != '"' {
			i++
			continue
		}
		q, err := strconv.QuotedPrefix(s[i:])
		if err != nil {
			return "", "", fmt.Errorf("bad quoted string at %q: %v", s[i:], err)
		}
		i += len(q)
	}
	return s[:i], s[i:], nil
}

func unquoteMaybe(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		return strconv.Unquote(s)
	}
	return s, nil
}

// fixedTime is the time of the contract's example line.
var fixedTime = time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC)

// newTestHandler returns a handler writing to a buffer, with a fixed
// clock for records without a time.
func newTestHandler(t testing.TB, opts Options) (*Handler, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedTime }
	}
	h, err := NewHandler(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h, &buf
}

func mustLevels(t testing.TB, spec string) Levels {
	t.Helper()
	l, err := ParseLevels(spec, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
