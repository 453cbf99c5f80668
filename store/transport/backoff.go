package transport

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with jitter between connection attempts.
type backoff struct {
	min, max, cur time.Duration
}

// next doubles the wait, within [min, max], and returns a time drawn
// uniformly from its upper half: replicas that lost a peer together do
// not redial in lockstep, yet never retry at once.
func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, b.min), b.max)
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

// reset starts the next outage from min again.
func (b *backoff) reset() { b.cur = 0 }
