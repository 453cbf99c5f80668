package transport

import (
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		NodeID:  1,
		Listen:  "127.0.0.1:7101",
		Peers:   map[uint64]string{2: "127.0.0.1:7102", 3: "10.0.0.3:7101"},
		APIAddr: "127.0.0.1:7001",
	}.WithDefaults()
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	want := Config{QueueDepth: 4096, DialTimeout: time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, PingInterval: 500 * time.Millisecond}
	if c.QueueDepth != want.QueueDepth || c.DialTimeout != want.DialTimeout || c.MinBackoff != want.MinBackoff ||
		c.MaxBackoff != want.MaxBackoff || c.PingInterval != want.PingInterval {
		t.Fatalf("defaults %+v, want %+v", c, want)
	}
	// Set fields are kept.
	c = Config{QueueDepth: 7, PingInterval: time.Second}.WithDefaults()
	if c.QueueDepth != 7 || c.PingInterval != time.Second {
		t.Fatalf("WithDefaults overwrote set fields: %+v", c)
	}
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // a substring of the error, naming the key
	}{
		{"node id 0", func(c *Config) { c.NodeID = 0 }, "node_id = 0"},
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" }, `cluster.replicas: this node's address "127.0.0.1": must be host:port`},
		{"listen with bad port", func(c *Config) { c.Listen = "127.0.0.1:http" }, `port "http"`},
		{"peer id 0", func(c *Config) { c.Peers[0] = "127.0.0.1:7109" }, "cluster.replicas: node id 0"},
		{"peer is self", func(c *Config) { c.Peers[1] = "127.0.0.1:7109" }, "cluster.replicas: peer 1 is this node"},
		{"peer without port", func(c *Config) { c.Peers[2] = "host" }, `cluster.replicas: node 2 address "host"`},
		{"peer port 0", func(c *Config) { c.Peers[2] = "127.0.0.1:0" }, `port "0": accepted 1..65535`},
		{"peer at this node's address", func(c *Config) { c.Peers[2] = c.Listen }, "node 2 has this node's address"},
		{"peers share an address", func(c *Config) { c.Peers[3] = c.Peers[2] }, "nodes 2 and 3 share the address"},
		{"api address too long", func(c *Config) { c.APIAddr = strings.Repeat("a", 256) }, "api.listen"},
		{"negative queue depth", func(c *Config) { c.QueueDepth = -1 }, "cluster.queue_depth = -1"},
		{"queue depth too large", func(c *Config) { c.QueueDepth = 1<<20 + 1 }, "cluster.queue_depth = 1048577"},
		{"negative dial timeout", func(c *Config) { c.DialTimeout = -time.Second }, "cluster.dial_timeout = -1s"},
		{"negative min backoff", func(c *Config) { c.MinBackoff = -1 }, "cluster.min_backoff"},
		{"max below min backoff", func(c *Config) { c.MaxBackoff = c.MinBackoff - 1 }, "cluster.max_backoff"},
		{"ping interval too short", func(c *Config) { c.PingInterval = time.Microsecond }, "cluster.ping_interval = 1µs"},
		{"ping interval too long", func(c *Config) { c.PingInterval = time.Hour }, "cluster.ping_interval = 1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if _, err := New(c, nil, nil); err == nil {
				t.Fatal("New accepted the configuration")
			}
		})
	}
}

// Every problem is reported at once, so an operator fixes them in one go.
func TestConfigValidateReportsAll(t *testing.T) {
	c := validConfig()
	c.NodeID, c.QueueDepth = 0, -1
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "node_id") || !strings.Contains(err.Error(), "cluster.queue_depth") {
		t.Fatalf("Validate = %v, want both errors", err)
	}
}
