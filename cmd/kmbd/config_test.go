package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kmb.toml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	cfg, err := loadConfig(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID != 1 || cfg.DataDir != "./kmb-data" || cfg.API.Listen != "127.0.0.1:7000" ||
		cfg.Telemetry.Listen != ":9090" || cfg.Telemetry.LogFormat != "json" || !cfg.Telemetry.PprofEnabled ||
		cfg.Telemetry.TracingEnabled || cfg.Cluster.Replicas != "" {
		t.Fatalf("defaults = %+v", cfg)
	}
}

// Flags win over the environment, which wins over the file, which wins over
// the defaults.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
node_id = 3
data_dir = "/var/lib/kmb"
[api]
listen = "127.0.0.1:7100"
max_batch_entries = 50
[telemetry]
listen = "127.0.0.1:9100"
log_format = "text"
log_level = "debug"
tracing_sample_ratio = 0.5
[storage]
segment_size_bytes = 2097152
`)
	cfg, err := loadConfig(
		[]string{"--config", file, "--data-dir", "/tmp/flag", "--tracing-sample-ratio", "0.25"},
		env(map[string]string{"KMB_LOG_FORMAT": "json", "KMB_LOG": "kmb=info,kmb_vsr=debug", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.75"}),
		&bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"node_id from file", cfg.NodeID, uint64(3)},
		{"data_dir from flag", cfg.DataDir, "/tmp/flag"},
		{"api.listen from file", cfg.API.Listen, "127.0.0.1:7100"},
		{"api.max_batch_entries from file", cfg.API.MaxBatchEntries, 50},
		{"api.max_body_bytes default", cfg.API.MaxBodyBytes, int64(4 << 20)},
		{"telemetry.listen from file", cfg.Telemetry.Listen, "127.0.0.1:9100"},
		{"log_format from env", cfg.Telemetry.LogFormat, "json"},
		{"log_level from file", cfg.Telemetry.LogLevel, "debug"},
		{"log_modules from env", cfg.Telemetry.LogModules, "kmb=info,kmb_vsr=debug"},
		{"sample ratio from flag", cfg.Telemetry.TracingSampleRatio, 0.25},
		{"segment size from file", cfg.Storage.SegmentSizeBytes, int64(2 << 20)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// Every invalid input is refused with one line naming the key, the value and
// what is accepted.
func TestInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{name: "node id zero", args: []string{"--node-id", "0"}, want: "node_id = 0: accepted 1..255"},
		{name: "bad api listen", args: []string{"--api-listen", "nohost"}, want: `api.listen = "nohost": accepted host:port`},
		{name: "bad telemetry port", args: []string{"--telemetry-listen", ":99999"}, want: `telemetry.listen = ":99999"`},
		{name: "bad log format", args: []string{"--log-format", "xml"}, want: `telemetry.log_format = "xml": accepted json, text`},
		{name: "bad log level", args: []string{"--log-level", "loud"}, want: `telemetry.log_level = "loud"`},
		{name: "bad ratio", args: []string{"--tracing-sample-ratio", "1.5"}, want: "telemetry.tracing_sample_ratio = 1.5: accepted 0..1"},
		{name: "tenant cap", args: []string{"--tenant-label-cap", "0"}, want: "telemetry.tenant_label_cap = 0: accepted 1..100000"},
		{name: "segment size", args: []string{"--segment-size-bytes", "10"}, want: "segment_size_bytes"},
		{name: "replicas without this node", args: []string{"--replicas", "2=127.0.0.1:7102"}, want: "does not name this node"},
		{name: "replicas malformed", args: []string{"--replicas", "x=y"}, want: `entry "x=y": accepted id=host:port`},
		{name: "bad KMB_LOG", env: map[string]string{"KMB_LOG": "kmb=loud"}, want: `KMB_LOG="kmb=loud"`},
		{name: "bad KMB_LOG_FORMAT", env: map[string]string{"KMB_LOG_FORMAT": "xml"}, want: `KMB_LOG_FORMAT="xml": accepted json, text`},
		{name: "bad OTEL sampler", env: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, want: `OTEL_TRACES_SAMPLER="sometimes"`},
		{name: "unknown file key", file: "node_id = 1\nfoo = 2\n", want: "unknown key foo"},
		{name: "unknown nested key", file: "[telemetry]\nlisten_addr = \":1\"\n", want: "unknown key telemetry.listen_addr"},
		{name: "wrong type", file: "node_id = \"one\"\n", want: "line 1"},
		{name: "bad file value", file: "[api]\nmax_body_bytes = 10\n", want: "api.max_body_bytes = 10: accepted 1024..67108864"},
		{name: "missing file", args: []string{"--config", "/nonexistent/kmb.toml"}, want: `--config "/nonexistent/kmb.toml"`},
		{name: "positional argument", args: []string{"serve"}, want: `unexpected argument "serve"`},
		{name: "backup repo scheme", args: []string{"--backup-repo", "ftp://host/x"}, want: `backup.repository = "ftp://host/x": accepted file:///absolute/dir or s3://`},
		{name: "backup repo relative", args: []string{"--backup-repo", "file://rel/dir"}, want: "backup.repository"},
		{name: "backup interval", file: "[backup]\nflush_interval = \"0s\"\n", want: "backup.flush_interval = 0s: accepted 10ms..1h0m0s"},
		{name: "backup duration syntax", file: "[backup]\nsnapshot_interval = \"daily\"\n", want: "line 2"},
		{name: "backup keep last", file: "[backup]\nsnapshot_keep_last = -1\n", want: "backup.snapshot_keep_last = -1: accepted 0..10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			_, err := loadConfig(args, env(tt.env), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("accepted; want an error mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line mentioning %q", err, tt.want)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"--node-id", "0"}, env(nil), &stdout, &stderr); code != 2 {
		t.Fatalf("invalid config exit code %d", code)
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "kmbd: invalid configuration: node_id = 0") {
		t.Fatalf("stderr = %q", stderr.String())
	}
	// A repository that cannot be opened is a configuration error too,
	// found before anything binds.
	stderr.Reset()
	if code := run(t.Context(), []string{"--backup-repo", "file:///nonexistent/kmb-backup"}, env(nil), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "does not exist") {
		t.Fatalf("missing repository directory: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"--backup-repo", "s3://bucket/p"}, env(nil), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("s3 repository without credentials: exit %d, %q", code, stderr.String())
	}
	stdout.Reset()
	if code := run(t.Context(), []string{"--version"}, env(nil), &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "kmbd ") {
		t.Fatalf("--version: %d %q", code, stdout.String())
	}
}
