package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/telemetry/spans"
)

// docFiles are the user-facing documents whose claims are checked here.
func docFiles(t *testing.T) map[string]string {
	t.Helper()
	paths, _ := filepath.Glob("../../docs/*.md")
	paths = append(paths, "../../README.md")
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = string(b)
	}
	return out
}

// Every kmb_* metric the docs name is really exposed, by the leader of a
// three-node cluster with a backup repository, or pushed by the one-shot
// backup commands (kmb_restore_*).
func TestDocumentedMetricsExist(t *testing.T) {
	a := testCluster(t, withBackup(t))[0]
	traffic(t, a)
	waitBackedUp(t, a)
	_, fams := scrape(t, a, "")
	for name, f := range pushedFamilies(t) {
		fams[name] = f
	}
	// Recording rules (level:kmb_metric:operations) are checked by the deploy
	// package's promtool tests, not here: a name touching a colon is skipped.
	name := regexp.MustCompile(`(?:^|[^:\w])(kmb_[a-z0-9_]+)\b[^:]`)
	for path, text := range docFiles(t) {
		for _, sub := range name.FindAllStringSubmatch(text, -1) {
			m := sub[1]
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if trimmed, ok := strings.CutSuffix(m, suffix); ok && fams[trimmed] != nil {
					base = trimmed
				}
			}
			if strings.HasSuffix(m, "_") {
				continue // a prefix, as in kmb_backup_*
			}
			if fams[base] == nil && !notAMetric(m) {
				t.Errorf("%s names %s, which /metrics does not expose", path, m)
			}
		}
	}
}

// Log targets (kmb_storage), the canary build tags, the Fluent Bit parser
// (kmb_json) and the audit export's header field (kmb_audit_export) look
// like metric names; they are not metrics.
func notAMetric(s string) bool {
	switch s {
	case "kmb_backup", "kmb_storage", "kmb_consensus", "kmb_api", "kmb_http", "kmb_telemetry", "kmb_transport", "kmb_vsr", "kmb_canary", "kmb_canary_epoch", "kmb_json", "kmb_audit_export":
		return true
	}
	return false
}

// tomlKeys lists every key of the TOML file's shape, dotted by table.
func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, tomlKeys(f.Type, prefix+tag+".")...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

// The README's configuration reference lists exactly the keys the code
// accepts, with their flags and defaults.
func TestConfigReference(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Configuration reference")
	if !ok {
		t.Fatal("README has no configuration reference")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| (?:`(--[a-z.-]+)`)? *\\| (`[^|`]*`|[^|]*) \\|")
	documented := map[string][2]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = [2]string{m[2], strings.TrimSpace(m[3])}
	}
	literal := func(def string) (string, bool) { // only `quoted` defaults are values
		v, ok := strings.CutPrefix(def, "`")
		if !ok {
			return "", false
		}
		return strings.TrimSuffix(v, "`"), true
	}

	code := tomlKeys(reflect.TypeOf(Config{}), "")
	sort.Strings(code)
	for _, k := range code {
		if _, ok := documented[k]; !ok {
			t.Errorf("TOML key %s is not in the README's configuration reference", k)
		}
	}
	for k := range documented {
		if !contains(code, k) {
			t.Errorf("README documents %s, which the code does not accept", k)
		}
	}

	// Flags: the documented flag sets the documented key, and its default
	// is the built-in one.
	def := defaultConfig()
	for key, doc := range documented {
		flagName := doc[0]
		value, ok := literal(doc[1])
		if flagName == "" || !ok {
			continue
		}
		cfg, err := loadConfig([]string{flagName + "=" + value}, env(nil), os.Stderr)
		if err != nil {
			t.Errorf("%s %s (the documented default): %v", flagName, value, err)
			continue
		}
		if !reflect.DeepEqual(cfg, def) {
			t.Errorf("README default of %s (%s=%s) is not the built-in default", key, flagName, value)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Every kmb.* span the docs name is one kmbd emits (telemetry/spans lists
// them; the tracing tests in store/node, store/api and the Jaeger test
// observe each), and every span kmbd emits is documented.
func TestDocumentedSpansExist(t *testing.T) {
	known, attrs := map[string]bool{}, map[string]bool{}
	for _, n := range spans.Names {
		known[n] = true
	}
	for _, k := range spans.AttributeKeys {
		attrs[string(k)] = true
	}
	name := regexp.MustCompile("`(kmb\\.[a-z_.]+)`")
	readme := ""
	for path, text := range docFiles(t) {
		if strings.HasSuffix(path, "README.md") {
			readme = text
		}
		for _, m := range name.FindAllStringSubmatch(text, -1) {
			if !known[m[1]] && !attrs[m[1]] {
				t.Errorf("%s names span %s, which kmbd does not emit", path, m[1])
			}
		}
	}
	for n := range known {
		if !strings.Contains(readme, "`"+n+"`") {
			t.Errorf("span %s is not documented in the README", n)
		}
	}
}
