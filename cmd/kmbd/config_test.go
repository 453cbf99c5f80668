package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// The retention keys reach the node; with a repository, retention needs
// no allow_unbacked_truncation and holds everything until the backup
// task reports its progress.
func TestRetentionConfig(t *testing.T) {
	file := writeFile(t, "[storage]\nretention_bytes = 1073741824\nretention_time = \"168h\"\nallow_unbacked_truncation = true\n")
	cfg, err := loadConfig([]string{"--config", file}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.node()
	if n.RetentionBytes != 1<<30 || n.RetentionTime != 168*time.Hour || !n.AllowUnbackedTruncation || n.RetentionFloor != nil {
		t.Fatalf("node config %+v", n)
	}
	file = writeFile(t, "[storage]\nretention_bytes = 1073741824\n")
	cfg, err = loadConfig([]string{"--config", file, "--backup-repo", "file://" + t.TempDir()}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.node().RetentionFloor; f == nil {
		t.Fatal("no retention floor with a repository")
	} else if _, ok := f(); ok {
		t.Fatal("the floor is known before the backup task runs")
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
		{name: "retention without a repository", file: "[storage]\nretention_bytes = 1073741824\n", want: "storage.allow_unbacked_truncation = true"},
		{name: "retention time without a repository", file: "[storage]\nretention_time = \"168h\"\n", want: "storage.retention_time = 168h0m0s without backup.repository"},
		{name: "retention bytes below a segment", file: "[storage]\nretention_bytes = 1024\nallow_unbacked_truncation = true\n", want: "storage.retention_bytes = 1024: accepted 0 (off) or storage.segment_size_bytes"},
		{name: "retention time too short", file: "[storage]\nretention_time = \"1s\"\nallow_unbacked_truncation = true\n", want: "storage.retention_time = 1s"},
		{name: "backup keep last", file: "[backup]\nsnapshot_keep_last = -1\n", want: "backup.snapshot_keep_last = -1: accepted 0..10000"},
		// Safe defaults: nothing beyond loopback unprotected unless asked.
		{name: "api beyond loopback", args: []string{"--api-listen", "0.0.0.0:7000"}, want: `api.listen = "0.0.0.0:7000" serves beyond loopback with neither authentication nor TLS: set auth.tokens_file`},
		{name: "api on every interface", args: []string{"--api-listen", ":7000"}, want: "api.allow_insecure = true"},
		{name: "api on a routable name", args: []string{"--api-listen", "kmb-0.kmb:7000"}, want: "api.listen"},
		{name: "replication beyond loopback", args: []string{"--replicas", "1=10.0.0.1:7101,2=10.0.0.2:7102"}, want: `replication address "10.0.0.1:7101" is beyond loopback with neither cluster TLS nor a cluster secret`},
		{name: "replication listen beyond loopback", args: []string{"--replicas", "1=127.0.0.1:7101,2=127.0.0.1:7102", "--replication-listen", "0.0.0.0:7101"}, want: `replication address "0.0.0.0:7101"`},
		{name: "replication peer beyond loopback", args: []string{"--replicas", "1=127.0.0.1:7101,2=10.0.0.2:7102"}, want: "cluster.allow_insecure = true"},
		{name: "cert without key", args: []string{"--tls-cert", "c.pem"}, want: `tls.cert_file = "c.pem", tls.key_file = "": set both or neither`},
		{name: "client CA without cert", args: []string{"--tls-client-ca", "ca.pem"}, want: "tls.client_ca_file"},
		{name: "cluster TLS partial", args: []string{"--cluster-tls-cert", "c.pem"}, want: "cluster.tls_ca_file = \"\": set all three or none"},
		{name: "cluster TLS and secret", args: []string{"--cluster-tls-cert", "c", "--cluster-tls-key", "k", "--cluster-tls-ca", "ca", "--cluster-secret-file", "s"}, want: "not both"},
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

// What may listen beyond loopback: a protected API, or one allowed to be
// insecure; replication with TLS, a secret, or allowed to be insecure.
func TestExposureAccepted(t *testing.T) {
	remote := []string{"--replicas", "1=10.0.0.1:7101,2=10.0.0.2:7102"}
	for name, args := range map[string][]string{
		"api with tokens":          {"--api-listen", "0.0.0.0:7000", "--auth-tokens-file", "t.toml"},
		"api with TLS":             {"--api-listen", "0.0.0.0:7000", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
		"api insecure on purpose":  {"--config", writeFile(t, "[api]\nlisten = \"0.0.0.0:7000\"\nallow_insecure = true\n")},
		"api on localhost":         {"--api-listen", "localhost:7000"},
		"api on ::1":               {"--api-listen", "[::1]:7000"},
		"replication with secret":  append([]string{"--cluster-secret-file", "s"}, remote...),
		"replication with TLS":     append([]string{"--cluster-tls-cert", "c", "--cluster-tls-key", "k", "--cluster-tls-ca", "ca"}, remote...),
		"replication insecure":     append([]string{"--config", writeFile(t, "[cluster]\nallow_insecure = true\n")}, remote...),
		"replication on loopback":  {"--replicas", "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103"},
		"single node, no replicas": {},
	} {
		if _, err := loadConfig(args, env(nil), &bytes.Buffer{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
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
	// So are security files that do not load, named by their key.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth-tokens-file", "/nonexistent/tokens.toml"}, "auth.tokens_file"},
		{[]string{"--auth-tokens-file", writeFile(t, "[[token]]\nname = 1\n")}, "line 2"},
		{[]string{"--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"}, "tls.cert_file"},
		{[]string{"--cluster-secret-file", writeFile(t, "short\n")}, "cluster.secret_file"},
		{[]string{"--web.config.file", writeFile(t, "basic_auth_users:\n  a: notbcrypt\n")}, "telemetry.web_config_file"},
		{[]string{"--api-listen", "0.0.0.0:0"}, "api.listen"},
	} {
		stderr.Reset()
		if code := run(t.Context(), tt.args, env(nil), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want 2 and one line naming %s", tt.args, code, stderr.String(), tt.want)
		}
	}
	stdout.Reset()
	if code := run(t.Context(), []string{"--version"}, env(nil), &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "kmbd ") {
		t.Fatalf("--version: %d %q", code, stdout.String())
	}
}
