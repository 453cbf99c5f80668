package metric

import "sync/atomic"

// Gauge is an integer that can go up and down, written by any goroutine.
//
// Unlike Counter it is a single atomic word: Set must replace the whole
// value, which per-P shards could not do without a lock. Create Gauges with
// Registry.NewGauge; each is padded so that no other data shares its cache
// lines.
type Gauge struct {
	v atomic.Int64
}

// Set replaces the value.
func (g *Gauge) Set(v int64) { g.v.Store(v) }

// Add adds delta, which may be negative.
func (g *Gauge) Add(delta int64) { g.v.Add(delta) }

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }
