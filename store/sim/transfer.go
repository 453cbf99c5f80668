package sim

import (
	"maps"
	"slices"

	"github.com/kmb-db/kmb/store/vsr"
)

// State transfer: a replica asks its driver for a checkpoint of another
// (vsr.Ready.StateTransfer). The world carries the request and the
// checkpoint like a message: delayed, and lost at the drop rate while
// faults run; the replica asks again.

type transfer struct {
	at       int
	to, from uint64
	minOp    uint64
}

func (w *world) requestTransfer(h *host, st *vsr.StateTransfer) {
	if w.faulty && w.chance(w.opts.DropRate) {
		w.faults[FaultDrop]++
		return
	}
	w.transfers = append(w.transfers, transfer{at: w.step + 1 + w.rng.IntN(w.opts.MaxDelaySteps), to: h.id, from: st.From, minOp: st.MinOp})
}

// deliverTransfers installs the checkpoints due now.
func (w *world) deliverTransfers() {
	keep := w.transfers[:0]
	var due []transfer
	for _, t := range w.transfers {
		if t.at <= w.step {
			due = append(due, t)
		} else {
			keep = append(keep, t)
		}
	}
	w.transfers = keep
	for _, t := range due {
		dst, src := w.hosts[t.to], w.hosts[t.from]
		if dst == nil || src == nil || !dst.up || !src.up || src.ckpt == nil || src.ckpt.op < t.minOp {
			continue
		}
		c := src.ckpt
		if want, ok := w.chains[c.op]; !ok || src.log[c.op-1].Chain != want {
			w.fail("replica %d's checkpoint at op %d does not end with the committed op", src.id, c.op)
			return
		}
		cfg := c.cfgIDs
		if cfg == nil {
			cfg = w.configs[0]
		}
		snap := vsr.Snapshot{Base: vsr.BaseOf(src.log[c.op-1]), Epoch: c.cfgEpoch, Config: slices.Clone(cfg)}
		if err := dst.r.InstallState(snap); err != nil {
			w.tracef("replica %d refuses the checkpoint of %d at op %d: %v", dst.id, src.id, c.op, err)
			continue
		}
		// The disk: the checkpoint, and a log that starts after it.
		dst.log = slices.Clone(src.log[:c.op])
		dst.gone, dst.corrupt = c.op, nil
		dst.ckpt = &checkpoint{op: c.op, kv: maps.Clone(c.kv), table: maps.Clone(c.table), cfgEpoch: c.cfgEpoch, cfgIDs: slices.Clone(c.cfgIDs)}
		dst.restore(dst.ckpt)
		w.res.Transfers++
		w.tracef("replica %d installs the checkpoint of %d at op %d", dst.id, src.id, c.op)
		dst.handleReady()
		if w.err != nil {
			return
		}
	}
}
