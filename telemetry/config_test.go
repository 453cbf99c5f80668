package telemetry

import (
	"math"
	"strings"
	"testing"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"listen", func(c *Config) { c.Listen = "9090" }, `telemetry.listen = "9090": accepted host:port`},
		{"listen port", func(c *Config) { c.Listen = ":70000" }, `telemetry.listen = ":70000"`},
		{"service name", func(c *Config) { c.ServiceName = " " }, "telemetry.service_name"},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, `telemetry.log_level = "verbose": accepted trace, debug, info, warn, error`},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, `telemetry.log_format = "xml": accepted json, text`},
		{"log modules", func(c *Config) { c.LogModules = "kmb=loud" }, `telemetry.log_modules = "kmb=loud"`},
		{"protocol", func(c *Config) { c.TracingProtocol = "thrift" }, `telemetry.tracing_protocol = "thrift": accepted http/protobuf, grpc`},
		{"endpoint scheme", func(c *Config) { c.TracingEndpoint = "jaeger:4318" }, "telemetry.tracing_endpoint"},
		{"ratio high", func(c *Config) { c.TracingSampleRatio = 1.01 }, "telemetry.tracing_sample_ratio = 1.01: accepted 0..1"},
		{"ratio NaN", func(c *Config) { c.TracingSampleRatio = math.NaN() }, "telemetry.tracing_sample_ratio"},
		{"block rate", func(c *Config) { c.BlockProfileRate = -1 }, "telemetry.block_profile_rate"},
		{"tenant cap low", func(c *Config) { c.TenantLabelCap = 0 }, "telemetry.tenant_label_cap = 0: accepted 1..100000"},
		{"tenant cap high", func(c *Config) { c.TenantLabelCap = 100001 }, "telemetry.tenant_label_cap = 100001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mut(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestApplyEnv(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(Config) bool
		err   string
	}{
		{"none", nil, func(c Config) bool { return c == DefaultConfig() }, ""},
		{"KMB_LOG", map[string]string{"KMB_LOG": "kmb=info,kmb_vsr=debug"}, func(c Config) bool { return c.LogModules == "kmb=info,kmb_vsr=debug" }, ""},
		{"KMB_LOG_FORMAT", map[string]string{"KMB_LOG_FORMAT": "text"}, func(c Config) bool { return c.LogFormat == "text" }, ""},
		{"service name", map[string]string{"OTEL_SERVICE_NAME": "kmb-eu"}, func(c Config) bool { return c.ServiceName == "kmb-eu" }, ""},
		{"traces endpoint wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318"}, func(c Config) bool { return c.TracingEndpoint == "http://b:4318" }, ""},
		{"protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, func(c Config) bool { return c.TracingProtocol == "grpc" }, ""},
		{"exporter on", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, func(c Config) bool { return c.TracingEnabled }, ""},
		{"sdk disabled wins", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, func(c Config) bool { return !c.TracingEnabled }, ""},
		{"ratio sampler", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}, func(c Config) bool { return c.TracingSampleRatio == 0.01 }, ""},
		{"always off", map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, func(c Config) bool { return c.TracingSampleRatio == 0 }, ""},
		{"bad KMB_LOG", map[string]string{"KMB_LOG": "kmb=noisy"}, nil, `KMB_LOG="kmb=noisy"`},
		{"bad format", map[string]string{"KMB_LOG_FORMAT": "yaml"}, nil, `KMB_LOG_FORMAT="yaml"`},
		{"bad exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, nil, `OTEL_TRACES_EXPORTER="zipkin": accepted otlp, none`},
		{"bad sampler", map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, nil, `OTEL_TRACES_SAMPLER="sometimes"`},
		{"bad sampler arg", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, nil, `OTEL_TRACES_SAMPLER_ARG="2": accepted 0..1`},
		{"bad protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, nil, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			err := c.ApplyEnv(func(k string) string { return tt.env[k] })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ApplyEnv() = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !tt.check(c) {
				t.Fatalf("ApplyEnv() = %v, config %+v", err, c)
			}
		})
	}
}

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://localhost:4318":              "http://localhost:4318/v1/traces",
		"http://localhost:4318/":             "http://localhost:4318/v1/traces",
		"https://otel.example:443/v1/traces": "https://otel.example:443/v1/traces",
		"http://gateway:8080/custom/otlp/tr": "http://gateway:8080/custom/otlp/tr",
	} {
		if got := tracesURL(in); got != want {
			t.Errorf("tracesURL(%q) = %q, want %q", in, got, want)
		}
	}
}
