package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Client. The zero value is a plain-HTTP client with
// the defaults below.
type Options struct {
	// Token, when not empty, is sent with every request as
	// "Authorization: Bearer <Token>".
	Token string

	// TLSConfig makes the client speak https and configures it: the CA
	// pool that verifies the servers, client certificates. Addresses
	// without a scheme become https://. Nil: plain http unless CAFile or
	// CertFile is set.
	TLSConfig *tls.Config
	// CAFile is a PEM file of the CA certificates that verify the servers,
	// in place of the system's roots (added to TLSConfig's copy when both
	// are set). Setting it turns TLS on.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key,
	// presented to servers that ask for one. Set both or neither; setting
	// them turns TLS on.
	CertFile, KeyFile string

	// RequestTimeout bounds one call, its redirects, retries and backoffs
	// included, unless the context ends sooner. Default 30s; negative: no
	// bound but the context's.
	RequestTimeout time.Duration
	// AttemptTimeout bounds one request, so that a server that stopped
	// answering is left for another before RequestTimeout ends the call.
	// Default 0: only RequestTimeout. Keep it above the servers'
	// api.write_timeout_ms (10s by default), or slow commits are retried
	// needlessly.
	AttemptTimeout time.Duration
	// DialTimeout bounds a TCP connection attempt. Default 5s.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a retry, which
	// doubles from MinBackoff with every attempt up to MaxBackoff, each
	// wait drawn from its upper half. Defaults 5ms and 200ms.
	MinBackoff, MaxBackoff time.Duration
	// MaxRedirects is how many redirects in a row a call follows at once;
	// past it (a redirect loop, while replicas disagree about who leads)
	// every further redirect waits a backoff first. Default 5.
	MaxRedirects int
	// ReadPageSize is the limit of each page Read asks for: 1 up to the
	// servers' api.max_read_limit (1000 by default). Default 0: the
	// server's default page (100).
	ReadPageSize int
	// MaxIdleConnsPerHost is how many idle connections are kept per node;
	// set it to the number of concurrent calls. Default 100.
	MaxIdleConnsPerHost int

	// Transport, when set, carries the requests instead of the client's own
	// http.Transport; TLSConfig, CAFile, CertFile, KeyFile, DialTimeout and
	// MaxIdleConnsPerHost must then be left unset.
	Transport http.RoundTripper
}

// The defaults of Options.
const (
	DefaultRequestTimeout      = 30 * time.Second
	DefaultDialTimeout         = 5 * time.Second
	DefaultMinBackoff          = 5 * time.Millisecond
	DefaultMaxBackoff          = 200 * time.Millisecond
	DefaultMaxRedirects        = 5
	DefaultMaxIdleConnsPerHost = 100
)

// Client talks to the nodes of one kmb cluster. It is safe for concurrent
// use.
type Client struct {
	opts   Options // defaults filled in
	addrs  []string
	scheme string            // "http" or "https", of every address
	rt     http.RoundTripper // Options.Transport, or own
	own    *http.Transport   // nil with Options.Transport
	auth   []string          // the Authorization header's value, or nil

	// target is the base URL requests go to: the first address, then the
	// leader once a redirect named it.
	target atomic.Pointer[string]

	sessions sessionPool
}

// New returns a client of the cluster whose nodes' API addresses are addrs:
// host:port, or http://host:port or https://host:port. Requests go to the
// first address until the cluster names its leader.
func New(addrs []string, opts Options) (*Client, error) {
	if err := opts.fillDefaults(); err != nil {
		return nil, err
	}
	tlsConfig, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &Client{opts: opts, scheme: "http"}
	if tlsConfig != nil {
		c.scheme = "https"
	}
	if len(addrs) == 0 {
		return nil, errors.New("kmb client: no address given")
	}
	schemes := map[string]bool{}
	for _, a := range addrs {
		base, scheme, err := parseAddr(a, c.scheme)
		if err != nil {
			return nil, err
		}
		schemes[scheme] = true
		c.addrs = append(c.addrs, base)
	}
	switch {
	case len(schemes) > 1:
		return nil, fmt.Errorf("kmb client: addresses %q mix http and https; a cluster is served one way", addrs)
	case tlsConfig != nil && schemes["http"]:
		return nil, fmt.Errorf("kmb client: addresses %q are http, but TLS options are set", addrs)
	case schemes["https"]:
		c.scheme = "https"
	}
	if opts.Token != "" {
		c.auth = []string{"Bearer " + opts.Token}
	}

	rt := opts.Transport
	if rt == nil {
		c.own = &http.Transport{
			Proxy:               nil, // the nodes are addressed directly
			DialContext:         (&net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsConfig,
			TLSHandshakeTimeout: opts.DialTimeout,
			MaxIdleConns:        opts.MaxIdleConnsPerHost * (len(c.addrs) + 1),
			MaxIdleConnsPerHost: opts.MaxIdleConnsPerHost,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			// A request's head and a batch's body leave in one write:
			// with the default 4 KiB buffer a 100-entry batch took four.
			WriteBufferSize: writeBufferSize,
		}
		rt = c.own
	}
	// The transport is used as is, without an http.Client: a redirect is
	// followed by the call itself, which remembers the leader and keeps the
	// scheme, and there are no cookies.
	c.rt = rt
	first := c.addrs[0]
	c.target.Store(&first)
	c.sessions.newID = randomClientID
	return c, nil
}

// writeBufferSize is the size of each connection's write buffer, which
// holds a request's head and body until they are written.
const writeBufferSize = 64 << 10

// Close closes the idle connections. The client remains usable.
func (c *Client) Close() {
	if ci, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (o *Options) fillDefaults() error {
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = DefaultMaxRedirects
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	switch {
	case o.AttemptTimeout < 0:
		return fmt.Errorf("kmb client: Options.AttemptTimeout %v: must not be negative", o.AttemptTimeout)
	case o.DialTimeout < 0:
		return fmt.Errorf("kmb client: Options.DialTimeout %v: must not be negative", o.DialTimeout)
	case o.MinBackoff < 0:
		return fmt.Errorf("kmb client: Options.MinBackoff %v: must not be negative", o.MinBackoff)
	case o.MaxBackoff < o.MinBackoff:
		return fmt.Errorf("kmb client: Options.MaxBackoff %v is below MinBackoff %v", o.MaxBackoff, o.MinBackoff)
	case o.MaxRedirects < 0:
		return fmt.Errorf("kmb client: Options.MaxRedirects %d: must not be negative", o.MaxRedirects)
	case o.ReadPageSize < 0:
		return fmt.Errorf("kmb client: Options.ReadPageSize %d: accepted 0 (the server's default) or 1 up to the server's api.max_read_limit", o.ReadPageSize)
	case o.MaxIdleConnsPerHost < 0:
		return fmt.Errorf("kmb client: Options.MaxIdleConnsPerHost %d: must not be negative", o.MaxIdleConnsPerHost)
	}
	if err := checkToken(o.Token); err != nil {
		return err
	}
	if o.Transport != nil {
		for name, set := range map[string]bool{
			"TLSConfig": o.TLSConfig != nil, "CAFile": o.CAFile != "", "CertFile": o.CertFile != "", "KeyFile": o.KeyFile != "",
		} {
			if set {
				return fmt.Errorf("kmb client: Options.%s cannot be combined with Options.Transport: configure TLS on the transport", name)
			}
		}
	}
	return nil
}

// checkToken refuses a token that cannot be sent in a header as is: the
// visible ASCII characters only (RFC 6750's b64token is a subset).
func checkToken(token string) error {
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("kmb client: Options.Token: byte %d is %q; a bearer token is visible ASCII without spaces", i, c)
		}
	}
	return nil
}

// parseAddr turns host:port or scheme://host:port into a base URL, the
// scheme defaulting to def.
func parseAddr(a, def string) (base, scheme string, err error) {
	s := strings.TrimSpace(a)
	if !strings.Contains(s, "://") {
		s = def + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", "", fmt.Errorf("kmb client: address %q: accepted host:port, http://host:port or https://host:port", a)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return "", "", fmt.Errorf("kmb client: address %q: accepted host:port, http://host:port or https://host:port", a)
	}
	return u.Scheme + "://" + u.Host, u.Scheme, nil
}

// follow makes the host of a redirect's Location the target, with the
// client's own scheme. It reports false for a Location without a host.
func (c *Client) follow(location string) bool {
	u, err := url.Parse(location)
	if err != nil || u.Host == "" {
		return false
	}
	base := c.scheme + "://" + u.Host
	c.target.Store(&base)
	return true
}

// rotate moves the target from an address that failed to the next one,
// unless another call moved it already.
func (c *Client) rotate(failed *string) {
	next := c.addrs[0]
	for i, a := range c.addrs {
		if a == *failed {
			next = c.addrs[(i+1)%len(c.addrs)]
			break
		}
	}
	c.target.CompareAndSwap(failed, &next)
}

// session is one idempotency stream: a client id whose request ids
// increase, with one request in flight at a time (the server refuses a
// request id older than the latest it applied).
type session struct {
	clientID []string // the Kmb-Client-Id header's value
	next     uint64   // the request id of the next call
}

// sessionPool hands every concurrent append its own session.
type sessionPool struct {
	mu    sync.Mutex
	free  []*session
	newID func() uint64
}

func (p *sessionPool) get() *session {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return s
	}
	p.mu.Unlock()
	return &session{clientID: []string{formatUint(p.newID())}, next: 1}
}

func (p *sessionPool) put(s *session) {
	p.mu.Lock()
	p.free = append(p.free, s)
	p.mu.Unlock()
}

// randomClientID draws a client id in 1..2^62: ids of clients in other
// processes, or of an earlier run of this one, are then unlikely to meet.
func randomClientID() uint64 { return rand.Uint64()>>2 + 1 }

// backoff is the wait before the retry that follows attempt n (from 1).
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MaxBackoff
	if shift := n - 1; shift < 32 {
		d = min(c.opts.MinBackoff<<shift, c.opts.MaxBackoff)
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
