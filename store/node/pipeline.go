package node

import (
	"errors"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/vsr"
)

// pipeline holds the Readys a primary took with vsr.Ready.SyncLater and
// has not finished: their appends are written, and their fsync runs on a
// goroutine of its own (kmblog.PendingSync) while the loop goes on taking
// writes and acknowledgements. One fsync is in flight at a time and covers
// every Ready taken before it started; the Readys finish (messages sent,
// committed ops applied, Advance) in the order they were taken, once
// their appends are durable. A Ready without SyncLater, and anything else
// that changes the log, first finishes them all (drainPipeline).
type pipeline struct {
	readys   []vsr.Ready
	inflight *kmblog.PendingSync
	covered  int // readys[:covered] are durable once inflight finishes
	done     chan *kmblog.PendingSync
}

func newPipeline() pipeline { return pipeline{done: make(chan *kmblog.PendingSync, 1)} }

// takeLater handles a Ready taken with SyncLater: its appends are written
// now and made durable off the loop; it finishes once they and every
// earlier Ready's are.
func (n *Node) takeLater(rd vsr.Ready) {
	p := &n.pipe
	if len(rd.Append) == 0 && len(p.readys) == 0 {
		n.finishReady(rd) // nothing to wait for
		return
	}
	if len(rd.Append) > 0 {
		if err := n.appendOps(rd.Append); err != nil {
			if !errors.Is(err, kmblog.ErrDiskFull) {
				n.fail(err)
				return
			}
			n.drainPipeline()
			if n.fatalErr() == nil {
				n.appendFailed(rd, err)
			}
			return
		}
	}
	p.readys = append(p.readys, rd)
	n.startSync()
}

// startSync starts an fsync of what the pending Readys appended, unless
// one is in flight (it starts when that one ends) or none is needed.
func (n *Node) startSync() {
	p := &n.pipe
	if p.inflight != nil || p.covered == len(p.readys) || n.fatalErr() != nil {
		return
	}
	s, err := n.log.StartSync()
	if err != nil {
		n.fail(n.fsyncError(err))
		return
	}
	p.inflight, p.covered = s, len(p.readys)
	go func() {
		s.Do()
		p.done <- s
	}()
}

// synced ends the fsync in flight, s, and finishes the Readys it covered,
// then those after them that wait for nothing of their own.
func (n *Node) synced(s *kmblog.PendingSync) {
	p := &n.pipe
	p.inflight = nil
	if err := n.log.FinishSync(s); err != nil {
		n.fail(n.fsyncError(err))
		return
	}
	k := p.covered
	for k < len(p.readys) && len(p.readys[k].Append) == 0 {
		k++
	}
	for i := 0; i < k && n.fatalErr() == nil; i++ {
		n.finishReady(p.readys[i])
	}
	rest := copy(p.readys, p.readys[k:])
	clear(p.readys[rest:])
	p.readys, p.covered = p.readys[:rest], 0
}

// drainPipeline finishes every pending Ready, waiting for the fsync in
// flight and then for one covering the rest.
func (n *Node) drainPipeline() {
	p := &n.pipe
	for n.fatalErr() == nil && (p.inflight != nil || len(p.readys) > 0) {
		n.startSync() // covers the rest, once the one in flight ended
		if p.inflight == nil {
			return // it failed
		}
		n.synced(<-p.done)
	}
}

// abandonPipeline, after a fatal error, waits for the fsync in flight so
// that the log can be closed; the pending Readys are dropped (their
// writers are answered with the error).
func (n *Node) abandonPipeline() {
	p := &n.pipe
	if p.inflight != nil {
		n.log.FinishSync(<-p.done) // the error, if any, is moot now
		p.inflight = nil
	}
	clear(p.readys)
	p.readys, p.covered = p.readys[:0], 0
}
