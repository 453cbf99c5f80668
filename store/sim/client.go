package sim

import (
	"errors"
	"fmt"
	"slices"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/vsr"
)

// client issues one request at a time and retries it, with the same request
// id, until it is answered.
type client struct {
	id      uint64
	w       *world
	target  uint64
	nextReq uint64
	pending *request
	retryAt int
}

type request struct {
	id    uint64
	put   bool
	key   string
	value string
	call  int
}

func (c *client) act() {
	w := c.w
	if c.pending == nil {
		if !w.faulty || !w.chance(0.2) {
			return
		}
		c.nextReq++
		c.pending = &request{
			id:   c.nextReq,
			put:  w.rng.IntN(2) == 0,
			key:  fmt.Sprintf("k%d", w.rng.IntN(w.opts.Keys)),
			call: w.step,
		}
		c.pending.value = fmt.Sprintf("c%d-r%d", c.id, c.pending.id)
		c.retryAt = w.step
	}
	if w.step < c.retryAt {
		return
	}
	h := w.hosts[c.target]
	if h == nil || !h.up {
		c.next()
		return
	}
	// Answered already (a retry of an applied request)?
	if t, ok := h.table[c.id]; ok && t.request == c.pending.id {
		c.complete(c.pending.id, t.result)
		return
	}
	tenant := "get"
	if c.pending.put {
		tenant = "put"
	}
	w.events++
	_, err := h.r.Propose(vsr.Proposal{
		Tenant:    tenant,
		Entries:   []kmblog.Entry{{Key: c.pending.key, Value: []byte(c.pending.value)}},
		ClientID:  c.id,
		RequestID: c.pending.id,
		Timestamp: int64(w.step),
	})
	switch {
	case errors.Is(err, vsr.ErrNotPrimary):
		if p := h.r.State().Primary; p != h.id && h.r.State().Status == vsr.StatusNormal {
			c.target = p
		} else {
			c.next()
		}
		c.retryAt = w.step + w.opts.StepsPerTick
	case err != nil:
		c.retryAt = w.step + w.opts.StepsPerTick
	default:
		h.waiting[[2]uint64{c.id, c.pending.id}] = true
		c.retryAt = w.step + 40*w.opts.StepsPerTick // time out, then retry
		h.handleReady()
	}
}

// next tries the following replica of the current configuration.
func (c *client) next() {
	cfg := c.w.config
	i := slices.Index(cfg, c.target)
	c.target = cfg[(i+1)%len(cfg)] // i = -1: no longer a member, start over
	c.retryAt = c.w.step + c.w.opts.StepsPerTick
}

func (c *client) complete(req uint64, result string) {
	if c.pending == nil || c.pending.id != req {
		return
	}
	p := c.pending
	c.w.history = append(c.w.history, operation{
		client: c.id, put: p.put, key: p.key, value: p.value, result: result,
		call: p.call, ret: c.w.step,
	})
	c.w.res.Requests++
	c.pending = nil
}
