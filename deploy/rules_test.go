package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

const (
	alertsFile     = "prometheus/alerts.yml"
	recordingsFile = "prometheus/recordings.yml"
	configFile     = "prometheus/prometheus.yml"
	dashboardFile  = "grafana/kmb-dashboard.json"
	operationsDoc  = "../docs/operations.md"
	runbookBase    = "https://github.com/kmb-db/kmb/blob/main/docs/operations.md#"
)

// The alerts the pack promises: the monitoring page's five, plus four, plus
// the backup contract's eleven.
var wantAlerts = []string{
	"ClusterNoQuorum", "HighErrorRate", "ProjectionLagHigh", "FrequentViewChanges", "HighWriteLatency",
	"KmbTargetDown", "KmbNodeNotReady", "KmbDiskAlmostFull", "KmbFsyncLatencyHigh",
	"BackupRPOOver10m", "BackupRPOOver30m", "BackupPausedOver2h", "BackupPausedOver12h",
	"BackupFailed", "LogTruncatedBeforeBackup", "SnapshotStale", "SnapshotFailed",
	"SnapshotOverlap", "BackupLagging", "BackupCorrupt",
	"KmbDiskFull", "KmbLogCorrupt", "KmbStorageErrors",
}

// rule is one rule of a rule file, read from the text of our own files
// (the module has no YAML parser; promtool checks the real syntax).
type rule struct {
	kind        string // "alert" or "record"
	name        string
	expr        string
	forDur      string
	labels      map[string]string
	annotations map[string]string
}

var (
	ruleStart   = regexp.MustCompile(`^(\s*)- (alert|record): (\S+)\s*$`)
	groupStart  = regexp.MustCompile(`^\s*- name: `)
	keyValue    = regexp.MustCompile(`^(\s*)([a-z_]+):\s*(.*)$`)
	recordedRef = regexp.MustCompile(`\b(?:job|instance|job_method_status|instance_peer|instance_type):[a-z0-9_]+:[a-z0-9_]+\b`)
)

// parseRules reads the rules of one of our rule files.
func parseRules(t *testing.T, path string) []rule {
	t.Helper()
	var rules []rule
	var cur *rule
	section := ""     // labels, annotations
	blockIndent := -1 // indentation of a "expr: |" key while reading its block
	for _, ln := range lines(readFile(t, path)) {
		trimmed := strings.TrimSpace(ln)
		indent := len(ln) - len(strings.TrimLeft(ln, " "))
		if blockIndent >= 0 {
			if trimmed == "" || indent > blockIndent {
				cur.expr += strings.TrimRight(ln, " ") + "\n"
				continue
			}
			blockIndent = -1
		}
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if m := ruleStart.FindStringSubmatch(ln); m != nil {
			rules = append(rules, rule{kind: m[2], name: m[3], labels: map[string]string{}, annotations: map[string]string{}})
			cur = &rules[len(rules)-1]
			section = ""
			continue
		}
		if groupStart.MatchString(ln) {
			cur = nil
			continue
		}
		if cur == nil {
			continue
		}
		m := keyValue.FindStringSubmatch(ln)
		if m == nil {
			t.Fatalf("%s: cannot read line %q", path, ln)
		}
		key, val := m[2], m[3]
		switch {
		case key == "expr" && val == "|":
			blockIndent = indent
		case key == "expr":
			cur.expr = val
		case key == "for":
			cur.forDur = val
		case key == "labels" || key == "annotations":
			section = key
		case section == "labels":
			cur.labels[key] = unquoteYAML(t, val)
		case section == "annotations":
			cur.annotations[key] = unquoteYAML(t, val)
		default:
			t.Fatalf("%s: rule %s: unexpected key %q", path, cur.name, key)
		}
	}
	for i := range rules {
		rules[i].expr = strings.TrimSpace(dedent(rules[i].expr))
	}
	return rules
}

func unquoteYAML(t *testing.T, s string) string {
	t.Helper()
	if strings.HasPrefix(s, `"`) {
		u, err := strconv.Unquote(s)
		if err != nil {
			t.Fatalf("unquote %s: %v", s, err)
		}
		return u
	}
	return s
}

func dedent(s string) string {
	min := -1
	for _, ln := range lines(s) {
		if strings.TrimSpace(ln) == "" {
			continue
		}
		if n := len(ln) - len(strings.TrimLeft(ln, " ")); min < 0 || n < min {
			min = n
		}
	}
	var out []string
	for _, ln := range lines(s) {
		if len(ln) >= min && min > 0 {
			ln = ln[min:]
		}
		out = append(out, ln)
	}
	return strings.Join(out, "\n")
}

func ruleNames(rules []rule) map[string]bool {
	m := map[string]bool{}
	for _, r := range rules {
		m[r.name] = true
	}
	return m
}

// promtool check rules accepts both rule files.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := kmbdtest.RequireTool(t, "KMB_PROMTOOL", "promtool")
	out, err := run(t, promtool, "check", "rules", alertsFile, recordingsFile)
	t.Logf("promtool check rules:\n%s", out)
	if err != nil {
		t.Fatalf("promtool check rules: %v", err)
	}
	alerts, records := parseRules(t, alertsFile), parseRules(t, recordingsFile)
	for _, want := range []string{
		fmt.Sprintf("SUCCESS: %d rules found", len(alerts)),
		fmt.Sprintf("SUCCESS: %d rules found", len(records)),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("promtool output lacks %q: our reading of the files disagrees with promtool's", want)
		}
	}
}

// promtool check config accepts prometheus.yml and the rule files it names.
func TestPromtoolCheckConfig(t *testing.T) {
	promtool := kmbdtest.RequireTool(t, "KMB_PROMTOOL", "promtool")
	out, err := run(t, promtool, "check", "config", configFile)
	t.Logf("promtool check config:\n%s", out)
	if err != nil {
		t.Fatalf("promtool check config: %v", err)
	}
	if !strings.Contains(out, "SUCCESS: 2 rule files found") {
		t.Errorf("prometheus.yml should load alerts.yml and recordings.yml")
	}
	cfg := readFile(t, configFile)
	for _, target := range []string{"127.0.0.1:9091", "127.0.0.1:9092", "127.0.0.1:9093"} {
		if !strings.Contains(cfg, "- "+target) {
			t.Errorf("prometheus.yml does not scrape %s (scripts/cluster.sh's telemetry)", target)
		}
	}
	if !regexp.MustCompile(`(?m)^\s+- job_name: kmb$`).MatchString(cfg) {
		t.Errorf("prometheus.yml: the rules select job=\"kmb\"; the scrape job must be named kmb")
	}
}

// The promtool unit tests pass.
func TestPromtoolTestRules(t *testing.T) {
	promtool := kmbdtest.RequireTool(t, "KMB_PROMTOOL", "promtool")
	files, err := filepath.Glob("prometheus/tests/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool test files: %v", err)
	}
	out, err := run(t, promtool, append([]string{"test", "rules"}, files...)...)
	t.Logf("promtool test rules:\n%s", out)
	if err != nil {
		t.Fatalf("promtool test rules: %v", err)
	}
	if n := strings.Count(out, "SUCCESS"); n != len(files) {
		t.Fatalf("%d of %d test files succeeded", n, len(files))
	}
}

// Every alert has a promtool test where it fires, with exact labels and
// annotations, and one where it stays quiet.
func TestEveryAlertUnitTested(t *testing.T) {
	files, _ := filepath.Glob("prometheus/tests/*.yml")
	firing, quiet := map[string]int{}, map[string]int{}
	alertname := regexp.MustCompile(`^\s+alertname: (\S+)`)
	all := ""
	for _, f := range files {
		text := readFile(t, f)
		all += text
		ls := lines(text)
		for i, ln := range ls {
			m := alertname.FindStringSubmatch(ln)
			if m == nil {
				continue
			}
			for j := i + 1; j < len(ls); j++ {
				s := strings.TrimSpace(ls[j])
				if s == "exp_alerts: []" {
					quiet[m[1]]++
					break
				}
				if s == "exp_alerts:" {
					// A firing case must pin labels and annotations.
					k := j + 1
					for k < len(ls) && strings.TrimSpace(ls[k]) == "" {
						k++
					}
					if k < len(ls) && strings.HasPrefix(strings.TrimSpace(ls[k]), "- exp_labels") {
						block := strings.Join(ls[k:min(k+30, len(ls))], "\n")
						if !strings.Contains(block, "exp_annotations") || !strings.Contains(block, "runbook_url") {
							t.Errorf("%s: a firing case of %s does not pin its annotations", f, m[1])
						}
						firing[m[1]]++
					}
					break
				}
			}
		}
	}
	for _, a := range wantAlerts {
		if firing[a] == 0 {
			t.Errorf("alert %s has no promtool test where it fires", a)
		}
		if quiet[a] == 0 {
			t.Errorf("alert %s has no promtool test where it stays quiet", a)
		}
		t.Logf("%-20s firing cases %d, quiet cases %d", a, firing[a], quiet[a])
	}
	// The two leader views the quorum alert must get right.
	for _, scenario := range []string{
		"name: healthy cluster, leader node 1",
		"name: node 3 lost contact, the majority keeps leader 1",
		"name: quorum lost, the isolated old leader keeps its stale id",
	} {
		if !strings.Contains(all, scenario) {
			t.Errorf("promtool tests lack the scenario %q", scenario)
		}
	}
}

// Alerts carry severity, summary, description and a runbook link whose
// anchor exists in docs/operations.md; recording rules follow
// level:metric:operations; every recorded series an alert reads exists.
func TestRuleConventions(t *testing.T) {
	alerts, records := parseRules(t, alertsFile), parseRules(t, recordingsFile)
	anchors := markdownAnchors(readFile(t, operationsDoc))

	got := map[string]bool{}
	for _, r := range alerts {
		if r.kind != "alert" {
			t.Errorf("alerts.yml: %s is a %s rule", r.name, r.kind)
			continue
		}
		got[r.name] = true
		if s := r.labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", r.name, s)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if r.annotations[k] == "" {
				t.Errorf("%s: no %s annotation", r.name, k)
			}
		}
		desc := r.annotations["description"]
		if !strings.Contains(desc, "{{ $labels.instance }}") && !strings.Contains(desc, "{{ $labels.job }}") {
			t.Errorf("%s: description names neither the instance nor the job", r.name)
		}
		if !strings.Contains(desc, "{{ $value") {
			t.Errorf("%s: description does not show the value", r.name)
		}
		for _, a := range []string{r.annotations["summary"], desc} {
			for _, use := range regexp.MustCompile(`\{\{ \$value[^}]*\}\}`).FindAllString(a, -1) {
				if !strings.Contains(use, "| humanize") {
					t.Errorf("%s: %s is not humanized", r.name, use)
				}
			}
		}
		url := r.annotations["runbook_url"]
		if !strings.HasPrefix(url, runbookBase) {
			t.Errorf("%s: runbook_url %q does not point at docs/operations.md", r.name, url)
		} else if anchor := strings.TrimPrefix(url, runbookBase); !anchors[anchor] {
			t.Errorf("%s: runbook anchor #%s is not a heading of docs/operations.md", r.name, anchor)
		} else if anchor != strings.ToLower(r.name) {
			t.Errorf("%s: runbook anchor #%s, want #%s", r.name, anchor, strings.ToLower(r.name))
		}
		if r.expr == "" {
			t.Errorf("%s: no expression", r.name)
		}
	}
	for _, a := range wantAlerts {
		if !got[a] {
			t.Errorf("alerts.yml lacks %s", a)
		}
	}

	recorded := map[string]bool{}
	name := regexp.MustCompile(`^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$`)
	for _, r := range records {
		if r.kind != "record" {
			t.Errorf("recordings.yml: %s is a %s rule", r.name, r.kind)
		}
		if !name.MatchString(r.name) {
			t.Errorf("recording rule %s does not follow level:metric:operations", r.name)
		}
		if recorded[r.name] {
			t.Errorf("recording rule %s defined twice", r.name)
		}
		recorded[r.name] = true
	}
	for _, r := range alerts {
		for _, ref := range recordedRef.FindAllString(r.expr, -1) {
			if !recorded[ref] {
				t.Errorf("alert %s reads %s, which recordings.yml does not record", r.name, ref)
			}
		}
	}
	t.Logf("%d alerting rules (%d alerts), %d recording rules", len(alerts), len(got), len(records))
}

// markdownAnchors returns the GitHub anchors of a Markdown file's headings:
// lower case, punctuation dropped, spaces to hyphens.
func markdownAnchors(md string) map[string]bool {
	out := map[string]bool{}
	inCode := false
	for _, ln := range lines(md) {
		if strings.HasPrefix(ln, "```") {
			inCode = !inCode
			continue
		}
		if inCode || !strings.HasPrefix(ln, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(ln, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		out[b.String()] = true
	}
	return out
}

// Every PromQL expression of the pack parses: the rule files (promtool
// check rules above), every query of the dashboard, and every promql block
// of the operations guide. They are written as recording rules of a
// temporary rule file and checked with promtool.
func TestPromQLParses(t *testing.T) {
	promtool := kmbdtest.RequireTool(t, "KMB_PROMTOOL", "promtool")
	type expr struct{ where, q string }
	var exprs []expr
	for i, q := range dashboardExprs(t) {
		exprs = append(exprs, expr{fmt.Sprintf("dashboard query %d", i+1), q})
	}
	for i, q := range docPromQL(t, readFile(t, operationsDoc)) {
		exprs = append(exprs, expr{fmt.Sprintf("docs/operations.md expression %d", i+1), q})
	}
	check := func(list []expr) (string, error) {
		var b strings.Builder
		b.WriteString("groups:\n  - name: parse-check\n    rules:\n")
		for i, e := range list {
			q, _ := json.Marshal(e.q) // a JSON string is a YAML double-quoted scalar
			fmt.Fprintf(&b, "      - record: parse_check:expr:n%d\n        expr: %s\n", i, q)
		}
		path := filepath.Join(t.TempDir(), "exprs.yml")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return run(t, promtool, "check", "rules", path)
	}
	out, err := check(exprs)
	if err != nil {
		// Find the culprits one by one.
		for _, e := range exprs {
			if o, err := check([]expr{e}); err != nil {
				t.Errorf("%s does not parse:\n%s\n%s", e.where, e.q, o)
			}
		}
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("%d dashboard and docs expressions parse (promtool: %s)", len(exprs), strings.TrimSpace(lastLine(out)))
}

func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}

// grafanaVars substitutes Grafana's variables with values PromQL accepts.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "${__rate_interval}", "1m",
	"$__interval", "1m", "${__interval}", "1m",
	"$__range", "1h", "${__range}", "1h",
	"${job}", "kmb", "$job", "kmb",
	"${instance}", ".*", "$instance", ".*",
)

// dashboardExprs returns every PromQL expression of the dashboard with its
// variables substituted: panel targets, annotations, and the metric
// selectors of label_values() variable queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var dash any
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &dash); err != nil {
		t.Fatal(err)
	}
	var out []string
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]+\)$`)
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				walk(c, k)
			}
		case []any:
			for _, c := range v {
				walk(c, key)
			}
		case string:
			switch {
			case key == "expr":
				out = append(out, v)
			case key == "query" || key == "definition":
				if m := labelValues.FindStringSubmatch(v); m != nil {
					out = append(out, m[1])
				}
			}
		}
	}
	walk(dash, "")
	sort.Strings(out)
	for i, q := range out {
		out[i] = grafanaVars.Replace(q)
		if strings.Contains(out[i], "$") {
			t.Errorf("dashboard expression keeps an unknown variable: %s", q)
		}
	}
	return out
}

// docPromQL returns the expressions of the ```promql blocks of a Markdown
// file. Comments are dropped; a block separated by blank lines holds either
// one expression per line, or one expression over several lines (when a
// line starts with a parenthesis, indentation or a binary operator).
func docPromQL(t *testing.T, md string) []string {
	t.Helper()
	var out []string
	var block []string
	in := false
	flush := func(chunk []string) {
		if len(chunk) == 0 {
			return
		}
		multi := false
		for _, ln := range chunk {
			s := strings.TrimSpace(ln)
			if strings.HasPrefix(ln, " ") || strings.HasPrefix(s, "(") || strings.HasPrefix(s, ")") ||
				s == "and" || s == "or" || s == "unless" || strings.HasPrefix(s, "or on") || strings.HasPrefix(s, "/") {
				multi = true
			}
		}
		if multi {
			out = append(out, strings.Join(chunk, "\n"))
			return
		}
		out = append(out, chunk...)
	}
	for _, ln := range lines(md) {
		switch {
		case !in && strings.TrimSpace(ln) == "```promql":
			in, block = true, nil
		case in && strings.TrimSpace(ln) == "```":
			in = false
			var chunk []string
			for _, b := range block {
				if i := strings.Index(b, "#"); i >= 0 {
					b = b[:i]
				}
				if strings.TrimSpace(b) == "" {
					flush(chunk)
					chunk = nil
					continue
				}
				chunk = append(chunk, strings.TrimRight(b, " "))
			}
			flush(chunk)
		case in:
			block = append(block, ln)
		}
	}
	if len(out) == 0 {
		t.Fatal("no promql blocks in docs/operations.md")
	}
	return out
}

// The recorded series the dashboard reads exist.
func TestDashboardReadsRecordedSeries(t *testing.T) {
	recorded := ruleNames(parseRules(t, recordingsFile))
	used := map[string]bool{}
	for _, q := range dashboardExprs(t) {
		for _, ref := range recordedRef.FindAllString(q, -1) {
			used[ref] = true
			if !recorded[ref] {
				t.Errorf("the dashboard reads %s, which recordings.yml does not record", ref)
			}
		}
	}
	if len(used) < 10 {
		t.Errorf("the dashboard reads only %d recorded series; its heavy queries should use them", len(used))
	}
	t.Logf("the dashboard reads %d recorded series", len(used))
}

// The runbooks quote each alert's expression as alerts.yml has it.
func TestRunbooksQuoteAlertExpressions(t *testing.T) {
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	doc := norm(strings.Join(docPromQL(t, readFile(t, operationsDoc)), "\n\n"))
	quoted := map[string]bool{}
	for _, r := range parseRules(t, alertsFile) {
		if strings.Contains(doc, norm(r.expr)) {
			quoted[r.name] = true
		}
	}
	for _, a := range wantAlerts {
		if !quoted[a] {
			t.Errorf("docs/operations.md does not quote the expression of %s as alerts.yml has it", a)
		}
	}
}
