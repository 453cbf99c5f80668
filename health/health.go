package health

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
)

// Check reports nil when its condition holds, or an error whose text is the
// reason shown to operators.
type Check func() error

// ErrShuttingDown is the reason both probes report once shutdown began.
var ErrShuttingDown = errors.New("shutting down")

// Checker holds the registered liveness and readiness checks. The zero value
// is not usable; call New.
type Checker struct {
	shuttingDown atomic.Bool

	mu        sync.RWMutex
	liveness  map[string]Check
	readiness map[string]Check
}

// New returns a Checker with no checks: live and ready.
func New() *Checker {
	return &Checker{liveness: map[string]Check{}, readiness: map[string]Check{}}
}

// AddLiveness registers (or replaces) a named liveness check.
func (c *Checker) AddLiveness(name string, check Check) { c.add(c.liveness, name, check) }

// AddReadiness registers (or replaces) a named readiness check.
func (c *Checker) AddReadiness(name string, check Check) { c.add(c.readiness, name, check) }

func (c *Checker) add(m map[string]Check, name string, check Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m[name] = check
}

// BeginShutdown makes both probes fail from now on. It is idempotent.
func (c *Checker) BeginShutdown() { c.shuttingDown.Store(true) }

// Live returns nil when the process is live, or the reason it is not.
func (c *Checker) Live() error { return c.run(c.liveness) }

// Ready returns nil when the replica can serve, or the reason it cannot.
func (c *Checker) Ready() error {
	if err := c.Live(); err != nil {
		return err
	}
	return c.run(c.readiness)
}

func (c *Checker) run(m map[string]Check) error {
	if c.shuttingDown.Load() {
		return ErrShuttingDown
	}
	c.mu.RLock()
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	checks := make([]Check, 0, len(m))
	sort.Strings(names) // a stable order gives a stable reason
	for _, name := range names {
		checks = append(checks, m[name])
	}
	c.mu.RUnlock()
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// Mount registers GET /health/live and GET /health/ready on mux.
func (c *Checker) Mount(mux *http.ServeMux) {
	mux.Handle("GET /health/live", probeHandler(c.Live))
	mux.Handle("GET /health/ready", probeHandler(c.Ready))
}

type probeBody struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

func probeHandler(probe func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		body, code := probeBody{Status: "ok"}, http.StatusOK
		if err := probe(); err != nil {
			body, code = probeBody{Status: "unavailable", Reason: err.Error()}, http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
}
