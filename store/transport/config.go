package transport

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// Defaults of the zero fields of a Config.
const (
	DefaultQueueDepth   = 4096
	DefaultDialTimeout  = time.Second
	DefaultMinBackoff   = 50 * time.Millisecond
	DefaultMaxBackoff   = 2 * time.Second
	DefaultPingInterval = 500 * time.Millisecond
)

// Config configures a Transport. The TOML keys named below are the ones
// Validate's errors use; kmbd derives Listen and Peers from
// cluster.replicas.
type Config struct {
	// NodeID is this replica's id, at least 1. TOML: node_id.
	NodeID uint64
	// Listen is this replica's replication address, e.g.
	// "127.0.0.1:7101": its own entry of cluster.replicas. Port 0 picks a
	// free port (tests).
	Listen string
	// Peers maps every other replica's node id to its replication
	// address. TOML: the other entries of cluster.replicas.
	Peers map[uint64]string
	// APIAddr is this replica's client API address, advertised to peers
	// in the handshake so that they can redirect clients. At most 255
	// bytes; may be empty. TOML: api.listen.
	APIAddr string
	// QueueDepth is the capacity of each peer's outbound queue; Send drops
	// what does not fit. TOML: cluster.queue_depth. Default 4096, accepted
	// 1..1048576.
	QueueDepth int
	// DialTimeout bounds a connection attempt, handshake included. TOML:
	// cluster.dial_timeout. Default 1s.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts, which doubles after each failure and is jittered. TOML:
	// cluster.min_backoff, cluster.max_backoff. Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often each outbound connection measures the
	// round-trip time. A connection that carries nothing for 6 intervals
	// is presumed dead and redialled. TOML: cluster.ping_interval.
	// Default 500ms, accepted 1ms..1m.
	PingInterval time.Duration
	// Security authenticates the replicas to each other: mutual TLS, a
	// shared secret, or nothing (the zero value). TOML: cluster.tls_*,
	// cluster.secret_file.
	Security Security
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.QueueDepth == 0 {
		c.QueueDepth = DefaultQueueDepth
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	return c
}

// Validate reports every invalid field of c, naming each by its TOML key.
// Call it on c.WithDefaults().
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeID == 0 {
		bad("node_id = 0: accepted 1 and above")
	}
	if err := validAddr(c.Listen, true); err != nil {
		bad("cluster.replicas: this node's address %q: %v", c.Listen, err)
	}
	ids := make([]uint64, 0, len(c.Peers))
	for id := range c.Peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	seen := map[string]uint64{}
	for _, id := range ids {
		addr := c.Peers[id]
		switch {
		case id == 0:
			bad("cluster.replicas: node id 0: accepted 1 and above")
		case id == c.NodeID:
			bad("cluster.replicas: peer %d is this node (node_id = %d)", id, c.NodeID)
		}
		if err := validAddr(addr, false); err != nil {
			bad("cluster.replicas: node %d address %q: %v", id, addr, err)
		} else if addr == c.Listen {
			bad("cluster.replicas: node %d has this node's address %q", id, addr)
		} else if other, dup := seen[addr]; dup {
			bad("cluster.replicas: nodes %d and %d share the address %q", other, id, addr)
		}
		seen[addr] = id
	}
	if len(c.APIAddr) > maxAPIAddrLen {
		bad("api.listen = %q: longer than %d bytes", c.APIAddr, maxAPIAddrLen)
	}
	if c.QueueDepth < 1 || c.QueueDepth > 1<<20 {
		bad("cluster.queue_depth = %d: accepted 1..1048576", c.QueueDepth)
	}
	if c.DialTimeout <= 0 {
		bad("cluster.dial_timeout = %v: must be positive", c.DialTimeout)
	}
	if c.MinBackoff <= 0 {
		bad("cluster.min_backoff = %v: must be positive", c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		bad("cluster.max_backoff = %v: must be at least cluster.min_backoff (%v)", c.MaxBackoff, c.MinBackoff)
	}
	if c.PingInterval < time.Millisecond || c.PingInterval > time.Minute {
		bad("cluster.ping_interval = %v: accepted 1ms..1m", c.PingInterval)
	}
	if c.Security.TLS != nil && c.Security.Secret != nil {
		bad("cluster.secret_file: set either cluster.tls_* or cluster.secret_file, not both")
	}
	if c.Security.Secret != nil && len(c.Security.Secret) < MinSecretSize {
		bad("cluster.secret_file: holds %d bytes; accepted at least %d", len(c.Security.Secret), MinSecretSize)
	}
	return errors.Join(errs...)
}

// validAddr checks that addr is host:port with a numeric port, which must
// not be 0 unless listening.
func validAddr(addr string, listen bool) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("must be host:port")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !listen) {
		return fmt.Errorf("port %q: accepted 1..65535", port)
	}
	return nil
}
