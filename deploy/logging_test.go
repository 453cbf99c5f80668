package deploy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

// kmbd's log shape: exactly these keys, these levels and targets.
var (
	logKeys    = []string{"fields", "level", "message", "target", "timestamp"}
	logLevels  = map[string]bool{"TRACE": true, "DEBUG": true, "INFO": true, "WARN": true, "ERROR": true}
	logTargets = map[string]bool{"kmb": true, "kmb_storage": true, "kmb_consensus": true, "kmb_transport": true, "kmb_api": true, "kmb_http": true, "kmb_telemetry": true, "kmb_backup": true}
)

// strptimeToGo translates a strptime format (Fluent Bit's Time_Format) to a
// Go time layout. %L is Fluent Bit's fractional seconds, any number of
// digits; %z takes Z or a numeric offset.
func strptimeToGo(format string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(format) {
			return "", fmt.Errorf("%q ends with %%", format)
		}
		i++
		switch format[i] {
		case 'Y':
			b.WriteString("2006")
		case 'm':
			b.WriteString("01")
		case 'd':
			b.WriteString("02")
		case 'H':
			b.WriteString("15")
		case 'M':
			b.WriteString("04")
		case 'S':
			b.WriteString("05")
		case 'b':
			b.WriteString("Jan")
		case 'L':
			// Go's fraction includes its separator: "05.%L" → "05.999999999".
			s := b.String()
			if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, ",") {
				return "", fmt.Errorf("%q: %%L must follow a '.' or ','", format)
			}
			b.WriteString("999999999")
		case 'z':
			b.WriteString("Z07:00")
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("%q: %%%c is not translated", format, format[i])
		}
	}
	return b.String(), nil
}

func TestStrptimeToGo(t *testing.T) {
	for _, c := range []struct{ format, in string }{
		{"%Y-%m-%dT%H:%M:%S.%L%z", "2026-11-22T00:27:00.650Z"},
		{"%Y-%m-%dT%H:%M:%S.%L%z", "2026-11-22T01:27:00.650+01:00"},
		{"%d/%b/%Y:%H:%M:%S %z", "22/Nov/2026:00:27:00 Z"},
	} {
		layout, err := strptimeToGo(c.format)
		if err != nil {
			t.Fatal(err)
		}
		got, err := time.Parse(layout, c.in)
		if err != nil {
			t.Fatalf("%s → %q: %v", c.format, layout, err)
		}
		if want := time.Date(2026, 11, 22, 0, 27, 0, 0, time.UTC); got.Truncate(time.Second).UTC() != want {
			t.Errorf("%s on %s = %v", c.format, c.in, got)
		}
	}
}

// conf reads Fluent Bit's classic format: [SECTION] headers and "Key Value"
// lines, one map per section.
type confSection struct {
	name string
	kv   map[string]string
}

func parseFluentConf(t *testing.T, path string) []confSection {
	t.Helper()
	var out []confSection
	for _, ln := range lines(readFile(t, path)) {
		s := strings.TrimSpace(ln)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			out = append(out, confSection{name: strings.Trim(s, "[]"), kv: map[string]string{}})
			continue
		}
		if len(out) == 0 {
			t.Fatalf("%s: %q outside a section", path, s)
		}
		f := strings.Fields(s)
		if len(f) < 2 {
			t.Fatalf("%s: %q has no value", path, s)
		}
		out[len(out)-1].kv[strings.ToLower(f[0])] = strings.Join(f[1:], " ")
	}
	return out
}

// A real kmbd run: a node started with debug logging, written to and read
// from (including a client error), then stopped with SIGTERM. Its stderr is
// what the log shippers read.
func captureKmbdLog(t *testing.T) string {
	t.Helper()
	p := kmbdtest.Launch(t, t.TempDir(), []string{"KMB_LOG=kmb=debug", "KMB_LOG_FORMAT=json"}, "--node-id", "1")
	p.WaitReady(t, 30*time.Second)
	for i := 0; i < 5; i++ {
		resp, err := http.Post(p.API+"/v1/tenants/logs/entries", "application/json",
			strings.NewReader(fmt.Sprintf(`{"entries":[{"key":"k%d","value":%d}]}`, i, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	kmbdtest.HTTPDo(t, "GET", p.API+"/v1/tenants/logs/keys/k1", "")
	kmbdtest.HTTPDo(t, "GET", p.API+"/v1/tenants/Bad!/keys/k1", "")
	p.Terminate(15 * time.Second)
	return p.Output.String()
}

// checkLogLines asserts the log shape the shippers rely on and returns the
// parsed lines.
func checkLogLines(t *testing.T, source, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, ln := range lines(strings.TrimRight(text, "\n")) {
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Errorf("%s line %d is not JSON: %v\n%s", source, i+1, err, ln)
			continue
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != strings.Join(logKeys, ",") {
			t.Errorf("%s line %d has keys %v, want exactly %v", source, i+1, keys, logKeys)
		}
		if _, ok := m["fields"].(map[string]any); !ok {
			t.Errorf("%s line %d: fields is not an object: %s", source, i+1, ln)
		}
		if lv, _ := m["level"].(string); !logLevels[lv] {
			t.Errorf("%s line %d: level %q", source, i+1, m["level"])
		}
		if tg, _ := m["target"].(string); !logTargets[tg] {
			t.Errorf("%s line %d: target %q", source, i+1, m["target"])
		}
		if msg, _ := m["message"].(string); msg == "" {
			t.Errorf("%s line %d: empty message", source, i+1)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no log lines", source)
	}
	return out
}

// jmesPath follows a dotted path (the subset of JMESPath promtail.yml uses).
func jmesPath(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// The shipping configurations fit the lines of a real kmbd run.
func TestLogShippingConfigsMatchRealLogs(t *testing.T) {
	t.Parallel()
	text := captureKmbdLog(t)
	logs := checkLogLines(t, "kmbd stderr", text)
	start, _ := time.Parse(time.RFC3339Nano, logs[0]["timestamp"].(string))
	t.Logf("%d log lines from a real kmbd run, first at %s", len(logs), start.Format(time.RFC3339Nano))
	seen := map[string]bool{}
	for _, l := range logs {
		seen[l["message"].(string)] = true
	}
	for _, msg := range []string{"kmbd starting", "log recovered", "shutdown requested", "kmbd stopped"} {
		if !seen[msg] {
			t.Errorf("the run logged no %q line", msg)
		}
	}

	t.Run("fluent-bit", func(t *testing.T) {
		var parser map[string]string
		for _, s := range parseFluentConf(t, "logging/parsers.conf") {
			if s.name == "PARSER" && s.kv["name"] == "kmb_json" {
				parser = s.kv
			}
		}
		if parser == nil {
			t.Fatal("parsers.conf defines no kmb_json parser")
		}
		if parser["format"] != "json" || parser["time_key"] != "timestamp" {
			t.Errorf("kmb_json: Format %q Time_Key %q, want json and timestamp", parser["format"], parser["time_key"])
		}
		layout, err := strptimeToGo(parser["time_format"])
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range logs {
			ts, _ := l[parser["time_key"]].(string)
			got, err := time.Parse(layout, ts)
			if err != nil {
				t.Fatalf("line %d: Time_Format %q (Go %q) does not parse %q: %v", i+1, parser["time_format"], layout, ts, err)
			}
			want, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil || !got.Equal(want) || got.Nanosecond()%int(time.Millisecond) != 0 || got.Nanosecond() != want.Nanosecond() {
				t.Fatalf("line %d: %q parsed as %v, RFC 3339 says %v (%v)", i+1, ts, got, want, err)
			}
			if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(ts) {
				t.Errorf("line %d: timestamp %q is not RFC 3339 UTC with milliseconds", i+1, ts)
			}
		}
		t.Logf("Time_Format %q = Go %q: parsed all %d timestamps", parser["time_format"], layout, len(logs))

		var service, input map[string]string
		for _, s := range parseFluentConf(t, "logging/fluent-bit.conf") {
			switch {
			case s.name == "SERVICE":
				service = s.kv
			case s.name == "INPUT" && s.kv["name"] == "tail":
				input = s.kv
			}
		}
		if service == nil || service["parsers_file"] != "parsers.conf" {
			t.Errorf("fluent-bit.conf does not load parsers.conf: %v", service)
		}
		if input == nil || input["parser"] != "kmb_json" || input["path"] == "" {
			t.Errorf("fluent-bit.conf: no tail input using kmb_json: %v", input)
		}
	})

	t.Run("promtail", func(t *testing.T) {
		y := readFile(t, "logging/promtail.yml")
		exprs := map[string]string{}
		for _, ln := range lines(block(t, y, "expressions")) {
			if f := strings.SplitN(strings.TrimSpace(ln), ":", 2); len(f) == 2 {
				exprs[strings.TrimSpace(f[0])] = strings.TrimSpace(f[1])
			}
		}
		for _, name := range []string{"level", "target", "message", "node_id"} {
			if exprs[name] == "" {
				t.Errorf("the json stage does not extract %s", name)
			}
		}
		if exprs["node_id"] != "fields.node_id" {
			t.Errorf("node_id is extracted from %q, want fields.node_id", exprs["node_id"])
		}
		for name, path := range exprs {
			inAll, inSome := true, false
			for _, l := range logs {
				if _, ok := jmesPath(l, path); ok {
					inSome = true
				} else {
					inAll = false
				}
			}
			// Top-level keys are on every line; a key of "fields" only on
			// the lines that carry it.
			if !strings.Contains(path, ".") && !inAll {
				t.Errorf("json stage %s: %s is missing from some lines", name, path)
			}
			if !inSome {
				t.Errorf("json stage %s: %s is on no line", name, path)
			}
		}
		var labels []string
		for _, ln := range lines(block(t, y, "- labels")) {
			if s := strings.TrimSpace(ln); s != "" {
				labels = append(labels, strings.TrimSuffix(s, ":"))
			}
		}
		sort.Strings(labels)
		if strings.Join(labels, ",") != "level,target" {
			t.Errorf("labels %v, want only level and target (bounded)", labels)
		}
		ts := block(t, y, "- timestamp")
		src, format := field(t, ts, "source"), field(t, ts, "format")
		if _, ok := exprs[src]; !ok {
			t.Errorf("timestamp stage reads %q, which the json stage does not extract", src)
		}
		if format != "RFC3339Nano" {
			t.Fatalf("timestamp format %q, want RFC3339Nano", format)
		}
		for i, l := range logs {
			if _, err := time.Parse(time.RFC3339Nano, l[exprs[src]].(string)); err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
		}
		for _, ln := range lines(block(t, y, "- structured_metadata")) {
			if name := strings.TrimSuffix(strings.TrimSpace(ln), ":"); name != "" && exprs[name] == "" {
				t.Errorf("structured_metadata %s is not extracted", name)
			}
		}
		// The values of the two labels are bounded sets.
		for _, l := range logs {
			if !logLevels[l["level"].(string)] || !logTargets[l["target"].(string)] {
				t.Errorf("unbounded label value in %v", l)
			}
		}
		if !strings.Contains(y, filepath.Join("/var/log/kmb", "*.log")) {
			t.Errorf("promtail.yml does not tail /var/log/kmb/*.log like fluent-bit.conf")
		}
	})
}
