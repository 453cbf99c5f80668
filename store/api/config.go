package api

import "fmt"

// Config is the [api] table. DefaultConfig documents the defaults.
type Config struct {
	// Listen is the client API address. TOML: api.listen. Default "127.0.0.1:7000".
	Listen string `toml:"listen"`
	// Advertise is the address other replicas send clients to when they
	// redirect a write to this node. TOML: api.advertise. Default: the
	// listen address.
	Advertise string `toml:"advertise"`
	// MaxBodyBytes bounds a request body. Larger bodies get 413.
	// TOML: api.max_body_bytes. Default 4 MiB, accepted 1 KiB..64 MiB.
	MaxBodyBytes int64 `toml:"max_body_bytes"`
	// MaxBatchEntries bounds the entries of one append. TOML:
	// api.max_batch_entries. Default 1000, accepted 1..100000.
	MaxBatchEntries int `toml:"max_batch_entries"`
	// MaxKeyBytes bounds a key's length in bytes. TOML: api.max_key_bytes.
	// Default 1024, accepted 1..65536.
	MaxKeyBytes int `toml:"max_key_bytes"`
	// MaxValueBytes bounds one value's JSON encoding, compacted. TOML:
	// api.max_value_bytes. Default 1 MiB, accepted 1..64 MiB.
	MaxValueBytes int `toml:"max_value_bytes"`
	// WriteTimeoutMillis bounds how long an append waits for its commit
	// before answering 503 "timeout" (the write may still commit; retry
	// with the same Kmb-Client-Id/Kmb-Request-Id). TOML:
	// api.write_timeout_ms. Default 10000, accepted 100..600000.
	WriteTimeoutMillis int `toml:"write_timeout_ms"`
	// MaxReadLimit bounds ?limit= of a log read; the default limit is 100.
	// TOML: api.max_read_limit. Default 1000, accepted 1..100000.
	MaxReadLimit int `toml:"max_read_limit"`
	// MaxConnections caps the client connections served at once; more
	// wait in the kernel's accept queue. TOML: api.max_connections.
	// Default 4096, accepted 1..1000000.
	MaxConnections int `toml:"max_connections"`
	// AllowInsecure lets the API listen beyond loopback with neither
	// authentication nor TLS, which kmbd otherwise refuses to start with.
	// TOML: api.allow_insecure. Default false.
	AllowInsecure bool `toml:"allow_insecure"`
}

// DefaultReadLimit is the page size of a log read without ?limit=.
const DefaultReadLimit = 100

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config {
	return Config{
		Listen:             "127.0.0.1:7000",
		MaxBodyBytes:       4 << 20,
		MaxBatchEntries:    1000,
		MaxKeyBytes:        1024,
		MaxValueBytes:      1 << 20,
		MaxReadLimit:       1000,
		WriteTimeoutMillis: 10000,
		MaxConnections:     4096,
	}
}

// Validate returns an error naming the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.MaxBodyBytes < 1<<10 || c.MaxBodyBytes > 64<<20:
		return fmt.Errorf("api.max_body_bytes = %d: accepted 1024..67108864", c.MaxBodyBytes)
	case c.MaxBatchEntries < 1 || c.MaxBatchEntries > 100000:
		return fmt.Errorf("api.max_batch_entries = %d: accepted 1..100000", c.MaxBatchEntries)
	case c.MaxKeyBytes < 1 || c.MaxKeyBytes > 65536:
		return fmt.Errorf("api.max_key_bytes = %d: accepted 1..65536", c.MaxKeyBytes)
	case c.MaxValueBytes < 1 || c.MaxValueBytes > 64<<20:
		return fmt.Errorf("api.max_value_bytes = %d: accepted 1..67108864", c.MaxValueBytes)
	case c.WriteTimeoutMillis < 100 || c.WriteTimeoutMillis > 600000:
		return fmt.Errorf("api.write_timeout_ms = %d: accepted 100..600000", c.WriteTimeoutMillis)
	case c.MaxReadLimit < 1 || c.MaxReadLimit > 100000:
		return fmt.Errorf("api.max_read_limit = %d: accepted 1..100000", c.MaxReadLimit)
	case c.MaxConnections < 1 || c.MaxConnections > 1000000:
		return fmt.Errorf("api.max_connections = %d: accepted 1..1000000", c.MaxConnections)
	}
	return nil
}
