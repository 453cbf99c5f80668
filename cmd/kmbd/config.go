package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/kmb-db/kmb/store/api"
	"github.com/kmb-db/kmb/store/backup"
	"github.com/kmb-db/kmb/store/node"
	"github.com/kmb-db/kmb/telemetry"
)

// Config is the whole kmbd configuration: the TOML file's shape.
type Config struct {
	NodeID    uint64           `toml:"node_id"`
	DataDir   string           `toml:"data_dir"`
	Cluster   ClusterConfig    `toml:"cluster"`
	API       api.Config       `toml:"api"`
	Auth      AuthConfig       `toml:"auth"`
	TLS       TLSConfig        `toml:"tls"`
	Storage   StorageConfig    `toml:"storage"`
	Telemetry telemetry.Config `toml:"telemetry"`
	Backup    backup.Config    `toml:"backup"`
}

// ClusterConfig is the [cluster] table.
type ClusterConfig struct {
	// Replicas lists the cluster as id=host:port pairs separated by commas.
	// Empty means this node alone. Default empty.
	Replicas string `toml:"replicas"`
	// Listen is where this node accepts replication connections. Default:
	// its own address in Replicas (set it to bind e.g. 0.0.0.0:7101 while
	// peers dial a routable name).
	Listen string `toml:"listen"`
	// Join starts this node, with an empty data dir, as a new member of a
	// running cluster: Replicas is then the new configuration, which an
	// operator commits with kmbd cluster reconfigure. The node waits for
	// it, fetches the log, and only then takes part. Ignored once the data
	// dir holds state. Default false.
	Join bool `toml:"join"`
	// TLSCertFile, TLSKeyFile and TLSCAFile run replication over mutual
	// TLS: this node's certificate (valid for its address in Replicas, as
	// server and client) and the cluster CA that every peer's must chain
	// to. All three or none; reloaded when they change or on SIGHUP.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	TLSCAFile   string `toml:"tls_ca_file"`
	// SecretFile holds a secret shared by the replicas (at least 32
	// bytes) that authenticates every connection and frame when there is
	// no cluster TLS.
	SecretFile string `toml:"secret_file"`
	// AllowInsecure lets replication run beyond loopback with neither TLS
	// nor a secret, which kmbd otherwise refuses to start with.
	AllowInsecure bool `toml:"allow_insecure"`
}

// StorageConfig is the [storage] table.
type StorageConfig struct {
	SegmentSizeBytes        int64 `toml:"segment_size_bytes"`
	MaxBatchOps             int   `toml:"max_batch_ops"`
	QueueDepth              int   `toml:"queue_depth"`
	CheckpointIntervalBytes int64 `toml:"checkpoint_interval_bytes"`
	// RetentionBytes and RetentionTime turn on local retention (see
	// node.Config); 0 is off. AllowUnbackedTruncation lets it run
	// without backup.repository.
	RetentionBytes          int64           `toml:"retention_bytes"`
	RetentionTime           backup.Duration `toml:"retention_time"`
	AllowUnbackedTruncation bool            `toml:"allow_unbacked_truncation"`
}

func defaultConfig() Config {
	n := node.DefaultConfig()
	return Config{
		NodeID:    n.NodeID,
		DataDir:   n.DataDir,
		API:       api.DefaultConfig(),
		Telemetry: telemetry.DefaultConfig(),
		Backup:    backup.DefaultConfig(),
		Storage: StorageConfig{
			SegmentSizeBytes: n.SegmentSizeBytes,
			MaxBatchOps:      n.MaxBatchOps,
			QueueDepth:       n.QueueDepth,

			CheckpointIntervalBytes: n.CheckpointIntervalBytes,
		},
	}
}

func (c Config) node() node.Config {
	n := node.DefaultConfig()
	n.NodeID, n.DataDir = c.NodeID, c.DataDir
	n.Replicas, _ = parseReplicas(c.Cluster.Replicas)
	n.ReplicationListen = c.Cluster.Listen
	n.Join = c.Cluster.Join
	n.APIAddr = c.API.Advertise
	if n.APIAddr == "" {
		n.APIAddr = c.API.Listen
	}
	n.SegmentSizeBytes = c.Storage.SegmentSizeBytes
	n.MaxBatchOps, n.QueueDepth = c.Storage.MaxBatchOps, c.Storage.QueueDepth
	n.CheckpointIntervalBytes = c.Storage.CheckpointIntervalBytes
	n.RetentionBytes, n.RetentionTime = c.Storage.RetentionBytes, time.Duration(c.Storage.RetentionTime)
	n.AllowUnbackedTruncation = c.Storage.AllowUnbackedTruncation
	if c.Backup.Repository != "" {
		// Nothing is deleted until the backup task reports what the
		// repository holds (newApp replaces this).
		n.RetentionFloor = func() (uint64, bool) { return 0, false }
	}
	return n
}

// Validate checks every component's configuration.
func (c Config) Validate() error {
	if err := c.node().Validate(); err != nil {
		return err
	}
	if err := telemetry.ValidListen("api.listen", c.API.Listen); err != nil {
		return err
	}
	if c.API.Advertise != "" {
		if err := telemetry.ValidListen("api.advertise", c.API.Advertise); err != nil {
			return err
		}
	}
	if c.Cluster.Listen != "" {
		if err := telemetry.ValidListen("cluster.listen", c.Cluster.Listen); err != nil {
			return err
		}
	}
	if err := c.API.Validate(); err != nil {
		return err
	}
	if err := c.Telemetry.Validate(); err != nil {
		return err
	}
	if err := c.Backup.Validate(); err != nil {
		return err
	}
	replicas, err := parseReplicas(c.Cluster.Replicas)
	if err != nil {
		return err
	}
	if len(replicas) > 0 {
		if _, ok := replicas[c.NodeID]; !ok {
			return fmt.Errorf("cluster.replicas = %q: does not name this node (node_id = %d)", c.Cluster.Replicas, c.NodeID)
		}
	}
	return c.validateSecurity(replicas)
}

// parseReplicas parses "1=127.0.0.1:7101,2=127.0.0.1:7102".
func parseReplicas(s string) (map[uint64]string, error) {
	out := map[uint64]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || err != nil || n < 1 || n > node.MaxNodeID {
			return nil, fmt.Errorf("cluster.replicas = %q: entry %q: accepted id=host:port with id 1..%d", s, part, node.MaxNodeID)
		}
		if err := telemetry.ValidListen("cluster.replicas", addr); err != nil {
			return nil, fmt.Errorf("cluster.replicas = %q: entry %q: address must be host:port", s, part)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("cluster.replicas = %q: id %d appears twice", s, n)
		}
		out[n] = addr
	}
	return out, nil
}

// loadConfig builds the configuration from defaults, the TOML file named by
// --config, the environment and the flags, in that order of precedence.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("kmbd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		path            = fs.String("config", "", "path of a TOML configuration file")
		nodeID          = fs.Uint64("node-id", cfg.NodeID, "this replica's id, 1.."+strconv.Itoa(node.MaxNodeID))
		dataDir         = fs.String("data-dir", cfg.DataDir, "where the log and state live")
		replicas        = fs.String("replicas", "", "the cluster as id=host:port,...; empty for this node alone")
		join            = fs.Bool("join", false, "start as a new member of a running cluster (empty data dir; --replicas is the new configuration)")
		apiListen       = fs.String("api-listen", cfg.API.Listen, "client API address")
		telListen       = fs.String("telemetry-listen", cfg.Telemetry.Listen, "address of /metrics, /health/*, /status, /debug/pprof/*")
		logLevel        = fs.String("log-level", cfg.Telemetry.LogLevel, "trace, debug, info, warn or error")
		logFormat       = fs.String("log-format", cfg.Telemetry.LogFormat, "json or text")
		pprofEnabled    = fs.Bool("pprof-enabled", cfg.Telemetry.PprofEnabled, "serve /debug/pprof/*")
		tracingEnabled  = fs.Bool("tracing-enabled", cfg.Telemetry.TracingEnabled, "export spans over OTLP")
		tracingEndpoint = fs.String("tracing-endpoint", cfg.Telemetry.TracingEndpoint, "OTLP collector URL")
		tracingRatio    = fs.Float64("tracing-sample-ratio", cfg.Telemetry.TracingSampleRatio, "fraction of new traces sampled, 0..1")
		segmentSize     = fs.Int64("segment-size-bytes", cfg.Storage.SegmentSizeBytes, "roll log segments at this size")
		tenantCap       = fs.Int("tenant-label-cap", cfg.Telemetry.TenantLabelCap, "distinct tenant_id label values before folding into _overflow")
		tracingProtocol = fs.String("tracing-protocol", cfg.Telemetry.TracingProtocol, "OTLP transport: http/protobuf or grpc")
		replListen      = fs.String("replication-listen", "", "replication listen address; default: this node's address in --replicas")
		apiAdvertise    = fs.String("api-advertise", "", "API address followers redirect writes to; default: the API listen address")
		backupRepo      = fs.String("backup-repo", "", "backup repository URL (file:///dir or s3://bucket/prefix?endpoint=...); empty: no backup")
		tokensFile      = fs.String("auth-tokens-file", "", "TOML file of the API's principals; reloaded on SIGHUP")
		tlsCert         = fs.String("tls-cert", "", "PEM certificate chain of the API's HTTPS")
		tlsKey          = fs.String("tls-key", "", "PEM key of the API's HTTPS")
		tlsClientCA     = fs.String("tls-client-ca", "", "PEM CAs that API clients' certificates must chain to")
		webConfig       = fs.String("web.config.file", "", "exporter-toolkit web configuration of the telemetry endpoint (TLS, basic auth)")
		clusterSecret   = fs.String("cluster-secret-file", "", "file of the secret the replicas share, when there is no cluster TLS")
		clusterCert     = fs.String("cluster-tls-cert", "", "PEM certificate of this replica for mutual TLS replication")
		clusterKey      = fs.String("cluster-tls-key", "", "PEM key of this replica for mutual TLS replication")
		clusterCA       = fs.String("cluster-tls-ca", "", "PEM CA every replica's certificate must chain to")
		showVersion     = fs.Bool("version", false, "print the version and exit")
	)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q: kmbd takes only flags", fs.Arg(0))
	}
	if *showVersion {
		return cfg, errVersion
	}
	if *path != "" {
		if err := decodeFile(*path, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := cfg.Telemetry.ApplyEnv(getenv); err != nil {
		return cfg, err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "node-id":
			cfg.NodeID = *nodeID
		case "data-dir":
			cfg.DataDir = *dataDir
		case "replicas":
			cfg.Cluster.Replicas = *replicas
		case "join":
			cfg.Cluster.Join = *join
		case "api-listen":
			cfg.API.Listen = *apiListen
		case "api-advertise":
			cfg.API.Advertise = *apiAdvertise
		case "replication-listen":
			cfg.Cluster.Listen = *replListen
		case "telemetry-listen":
			cfg.Telemetry.Listen = *telListen
		case "log-level":
			cfg.Telemetry.LogLevel = *logLevel
		case "log-format":
			cfg.Telemetry.LogFormat = *logFormat
		case "pprof-enabled":
			cfg.Telemetry.PprofEnabled = *pprofEnabled
		case "tracing-enabled":
			cfg.Telemetry.TracingEnabled = *tracingEnabled
		case "tracing-endpoint":
			cfg.Telemetry.TracingEndpoint = *tracingEndpoint
		case "tracing-protocol":
			cfg.Telemetry.TracingProtocol = *tracingProtocol
		case "tracing-sample-ratio":
			cfg.Telemetry.TracingSampleRatio = *tracingRatio
		case "segment-size-bytes":
			cfg.Storage.SegmentSizeBytes = *segmentSize
		case "tenant-label-cap":
			cfg.Telemetry.TenantLabelCap = *tenantCap
		case "backup-repo":
			cfg.Backup.Repository = *backupRepo
		case "auth-tokens-file":
			cfg.Auth.TokensFile = *tokensFile
		case "tls-cert":
			cfg.TLS.CertFile = *tlsCert
		case "tls-key":
			cfg.TLS.KeyFile = *tlsKey
		case "tls-client-ca":
			cfg.TLS.ClientCAFile = *tlsClientCA
		case "web.config.file":
			cfg.Telemetry.WebConfigFile = *webConfig
		case "cluster-secret-file":
			cfg.Cluster.SecretFile = *clusterSecret
		case "cluster-tls-cert":
			cfg.Cluster.TLSCertFile = *clusterCert
		case "cluster-tls-key":
			cfg.Cluster.TLSKeyFile = *clusterKey
		case "cluster-tls-ca":
			cfg.Cluster.TLSCAFile = *clusterCA
		}
	})
	return cfg, cfg.Validate()
}

var errVersion = errors.New("version requested")

// decodeFile reads the TOML file at path into cfg, refusing unknown keys.
func decodeFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config %q: %w", path, err)
	}
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) && len(strict.Errors) > 0 {
			key := strings.Join(strict.Errors[0].Key(), ".")
			return fmt.Errorf("--config %q: unknown key %s: see the configuration reference in the README", path, key)
		}
		var decErr *toml.DecodeError
		if errors.As(err, &decErr) {
			row, col := decErr.Position()
			return fmt.Errorf("--config %q: line %d column %d: %s", path, row, col, oneLine(decErr.Error()))
		}
		return fmt.Errorf("--config %q: %s", path, oneLine(err.Error()))
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
