package telemetry

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/kmb-db/kmb/profiling"
	"github.com/kmb-db/kmb/telemetry/logging"
)

// Config configures telemetry; it is the [telemetry] table of kmbd's TOML
// file. DefaultConfig documents every default.
type Config struct {
	// Listen is the address of /metrics, /health/*, /status and
	// /debug/pprof/*. Default ":9090".
	Listen string `toml:"listen"`
	// ServiceName is the OpenTelemetry service.name. Default "kmbd";
	// OTEL_SERVICE_NAME overrides it.
	ServiceName string `toml:"service_name"`

	// LogLevel is the level of every module KMB_LOG does not name: trace,
	// debug, info, warn or error. Default "info".
	LogLevel string `toml:"log_level"`
	// LogFormat is "json" (default) or "text". KMB_LOG_FORMAT overrides it.
	LogFormat string `toml:"log_format"`
	// LogModules holds per-module levels in KMB_LOG syntax
	// ("kmb=info,kmb_vsr=debug"). KMB_LOG overrides it. Default empty.
	LogModules string `toml:"log_modules"`

	// TracingEnabled turns on span export. Default false.
	TracingEnabled bool `toml:"tracing_enabled"`
	// TracingEndpoint is the OTLP collector URL. Default
	// "http://localhost:4318" (OTLP/HTTP); use port 4317 with grpc.
	TracingEndpoint string `toml:"tracing_endpoint"`
	// TracingProtocol is "http/protobuf" (default) or "grpc".
	TracingProtocol string `toml:"tracing_protocol"`
	// TracingSampleRatio is the fraction of new traces sampled, 0..1; a
	// sampled parent is always followed. Default 1.
	TracingSampleRatio float64 `toml:"tracing_sample_ratio"`

	// PprofEnabled mounts /debug/pprof/*. Default true.
	PprofEnabled bool `toml:"pprof_enabled"`
	// BlockProfileRate is runtime.SetBlockProfileRate's argument. Default 0 (off).
	BlockProfileRate int `toml:"block_profile_rate"`
	// MutexProfileFraction is runtime.SetMutexProfileFraction's argument.
	// Default 0 (off).
	MutexProfileFraction int `toml:"mutex_profile_fraction"`

	// WebConfigFile is a Prometheus exporter-toolkit web configuration
	// (tls_server_config, basic_auth_users with bcrypt hashes). With it,
	// /metrics, /status and /debug/pprof/* are served as it says (HTTPS,
	// credentials required), while /health/live and /health/ready stay
	// open for probes. The file is reread on every request and
	// connection. Default empty: plain HTTP, no authentication.
	WebConfigFile string `toml:"web_config_file"`

	// TenantLabelCap bounds the distinct tenant_id label values of per-tenant
	// metrics; tenants past the cap are counted in one series whose tenant_id
	// is "_overflow". Accepted 1..100000. Default 1000.
	TenantLabelCap int `toml:"tenant_label_cap"`
}

// Tracing protocols.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config {
	return Config{
		Listen:             ":9090",
		ServiceName:        "kmbd",
		LogLevel:           "info",
		LogFormat:          "json",
		TracingEndpoint:    "http://localhost:4318",
		TracingProtocol:    ProtocolHTTP,
		TracingSampleRatio: 1,
		PprofEnabled:       true,
		TenantLabelCap:     1000,
	}
}

// MaxTenantLabelCap is the largest accepted TenantLabelCap.
const MaxTenantLabelCap = 100000

// Validate returns an error naming the first invalid field, its value and
// what is accepted.
func (c Config) Validate() error {
	if err := validListen("telemetry.listen", c.Listen); err != nil {
		return err
	}
	if strings.TrimSpace(c.ServiceName) == "" {
		return fmt.Errorf("telemetry.service_name = %q: must not be empty", c.ServiceName)
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("telemetry.log_level = %q: accepted trace, debug, info, warn, error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("telemetry.log_format = %q: accepted json, text", c.LogFormat)
	}
	if _, err := logging.ParseLevels(c.LogModules, 0); err != nil {
		return fmt.Errorf("telemetry.log_modules = %q: %v", c.LogModules, err)
	}
	if c.TracingProtocol != ProtocolHTTP && c.TracingProtocol != ProtocolGRPC {
		return fmt.Errorf("telemetry.tracing_protocol = %q: accepted %s, %s", c.TracingProtocol, ProtocolHTTP, ProtocolGRPC)
	}
	if u, err := url.Parse(c.TracingEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("telemetry.tracing_endpoint = %q: accepted an http:// or https:// URL such as http://localhost:4318", c.TracingEndpoint)
	}
	if math.IsNaN(c.TracingSampleRatio) || c.TracingSampleRatio < 0 || c.TracingSampleRatio > 1 {
		return fmt.Errorf("telemetry.tracing_sample_ratio = %v: accepted 0..1", c.TracingSampleRatio)
	}
	if err := c.profiling().Validate(); err != nil {
		return err
	}
	if c.TenantLabelCap < 1 || c.TenantLabelCap > MaxTenantLabelCap {
		return fmt.Errorf("telemetry.tenant_label_cap = %d: accepted 1..%d", c.TenantLabelCap, MaxTenantLabelCap)
	}
	return nil
}

func (c Config) profiling() profiling.Config {
	return profiling.Config{
		Enabled:              c.PprofEnabled,
		BlockProfileRate:     c.BlockProfileRate,
		MutexProfileFraction: c.MutexProfileFraction,
	}
}

// validListen checks a host:port listen address; the host may be empty (all
// interfaces) and the port must be 0..65535.
func validListen(key, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 0 || n > 65535) {
			err = fmt.Errorf("port out of range")
		}
	}
	if err != nil {
		return fmt.Errorf("%s = %q: accepted host:port, e.g. 127.0.0.1:9090 or :9090", key, addr)
	}
	return nil
}

// ValidListen is validListen for other components' listen addresses.
func ValidListen(key, addr string) error { return validListen(key, addr) }

// ApplyEnv overlays the environment variables kmbd honours onto c. getenv is
// os.Getenv in production and a map lookup in tests. It returns an error
// naming the variable when a value cannot be used.
//
//   - KMB_LOG: per-module log levels (replaces log_modules).
//   - KMB_LOG_FORMAT: json or text.
//   - OTEL_SDK_DISABLED=true: tracing off.
//   - OTEL_TRACES_EXPORTER: otlp turns tracing on, none turns it off.
//   - OTEL_SERVICE_NAME: service.name.
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT: the collector URL.
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL: grpc or http/protobuf.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG: always_on, always_off,
//     traceidratio and their parentbased_ forms set the sample ratio (kmbd
//     always follows a sampled parent).
//
// OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS are read by the
// OpenTelemetry SDK itself.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if v := getenv("KMB_LOG"); v != "" {
		if _, err := logging.ParseLevels(v, 0); err != nil {
			return fmt.Errorf("KMB_LOG=%q: %v", v, err)
		}
		c.LogModules = v
	}
	if v := getenv("KMB_LOG_FORMAT"); v != "" {
		if v != "json" && v != "text" {
			return fmt.Errorf("KMB_LOG_FORMAT=%q: accepted json, text", v)
		}
		c.LogFormat = v
	}
	if v := getenv("OTEL_SERVICE_NAME"); v != "" {
		c.ServiceName = v
	}
	if v := firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); v != "" {
		c.TracingEndpoint = v
	}
	if v := firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL")); v != "" {
		if v != ProtocolHTTP && v != ProtocolGRPC {
			return fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: accepted %s, %s", v, ProtocolHTTP, ProtocolGRPC)
		}
		c.TracingProtocol = v
	}
	switch v := getenv("OTEL_TRACES_EXPORTER"); v {
	case "":
	case "otlp":
		c.TracingEnabled = true
	case "none":
		c.TracingEnabled = false
	default:
		return fmt.Errorf("OTEL_TRACES_EXPORTER=%q: accepted otlp, none", v)
	}
	if v := getenv("OTEL_TRACES_SAMPLER"); v != "" {
		ratio, err := samplerRatio(v, getenv("OTEL_TRACES_SAMPLER_ARG"))
		if err != nil {
			return err
		}
		c.TracingSampleRatio = ratio
	}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		c.TracingEnabled = false
	}
	return nil
}

func samplerRatio(sampler, arg string) (float64, error) {
	switch strings.TrimPrefix(sampler, "parentbased_") {
	case "always_on":
		return 1, nil
	case "always_off":
		return 0, nil
	case "traceidratio":
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: accepted 0..1", arg)
		}
		return r, nil
	}
	return 0, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: accepted always_on, always_off, traceidratio and their parentbased_ forms", sampler)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
