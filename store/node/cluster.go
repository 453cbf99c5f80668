package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kmb-db/kmb/store/internal/durable"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/superblock"
	"github.com/kmb-db/kmb/store/vsr"
)

// Membership changes (see store/vsr/epoch.go for the protocol). The
// replica keeps the member ids of its epoch in the superblock; the node
// keeps their replication addresses in ClusterFile, which it writes when it
// applies a config op (before the replica can enter the epoch it starts)
// and reads at start: the file, not cluster.replicas, says who the peers
// are once the cluster was reconfigured.

// ClusterFile is the name, in the data dir, of the configuration the node
// last applied.
const ClusterFile = "cluster.json"

// clusterFile is ClusterFile's content.
type clusterFile struct {
	Epoch    uint64       `json:"epoch"`
	Members  []memberJSON `json:"replicas"`
	Previous []memberJSON `json:"previous_replicas,omitempty"`
}

type memberJSON struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
}

func toJSON(ms []vsr.Member) []memberJSON {
	out := make([]memberJSON, len(ms))
	for i, m := range ms {
		out[i] = memberJSON{ID: m.ID, Addr: m.Addr}
	}
	return out
}

func fromJSON(ms []memberJSON) []vsr.Member {
	out := make([]vsr.Member, len(ms))
	for i, m := range ms {
		out[i] = vsr.Member{ID: m.ID, Addr: m.Addr}
	}
	return out
}

// readClusterFile reads dir's ClusterFile; ok is false when there is none.
func readClusterFile(dir string) (clusterFile, bool, error) {
	var f clusterFile
	b, err := os.ReadFile(filepath.Join(dir, ClusterFile))
	if errors.Is(err, os.ErrNotExist) {
		return f, false, nil
	}
	if err != nil {
		return f, false, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, false, fmt.Errorf("%s: %w", filepath.Join(dir, ClusterFile), err)
	}
	return f, true, nil
}

// Errors of Reconfigure.
var (
	// ErrBadConfig wraps why a configuration is refused; nothing changed.
	ErrBadConfig = errors.New("configuration refused")
	// ErrReconfiguring: another configuration change is in progress.
	ErrReconfiguring = errors.New("a configuration change is in progress; try again once it committed")
	// ErrRemoved: the cluster's configuration no longer includes this
	// node: it serves nothing.
	ErrRemoved = errors.New("this node was removed from the cluster: it serves nothing")
)

// ReconfigureResult is a committed configuration change.
type ReconfigureResult struct {
	Epoch    uint64 // the epoch it started
	Op       uint64 // its config op
	Replicas []vsr.Member
}

// Reconfigure commits a new configuration (members, with their
// replication addresses) and returns once its config op committed: its
// epoch starts then. New members must run with --join and the new replica list;
// a removed member stops serving once it learns it. One change at a time:
// ErrReconfiguring while one is in progress. A configuration that names no
// replica, a node id twice, an address twice, node id 0 or above
// MaxNodeID, or leaves out this node while it leads, is refused with
// ErrBadConfig and changes nothing.
func (n *Node) Reconfigure(ctx context.Context, members []vsr.Member, principal string) (ReconfigureResult, error) {
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b vsr.Member) int { return cmp.Compare(a.ID, b.ID) })
	if err := checkMembers(members, n.cfg.NodeID); err != nil {
		return ReconfigureResult{}, err
	}
	if n.net == nil {
		return ReconfigureResult{}, fmt.Errorf("%w: this node runs alone (cluster.replicas names fewer than two replicas); a single node cannot be reconfigured", ErrBadConfig)
	}
	if err := n.writable(); err != nil {
		return ReconfigureResult{}, err
	}
	req := &request{kind: kmblog.KindConfig, members: members, principal: principal, result: make(chan response, 1)}
	n.mu.RLock()
	if n.closed {
		n.mu.RUnlock()
		return ReconfigureResult{}, ErrShuttingDown
	}
	select {
	case n.reqs <- req:
	case <-ctx.Done():
		n.mu.RUnlock()
		return ReconfigureResult{}, ctx.Err()
	}
	n.mu.RUnlock()
	select {
	case resp := <-req.result:
		if resp.err != nil {
			return ReconfigureResult{}, resp.err
		}
		res := ReconfigureResult{Op: resp.res.CommitNumber, Replicas: members}
		if op, err := n.log.Read(res.Op); err == nil {
			if c, err := vsr.ParseConfig(&op); err == nil {
				res.Epoch = c.Epoch
			}
		}
		return res, nil
	case <-ctx.Done():
		return ReconfigureResult{}, fmt.Errorf("%w: %v", ErrOutcomeUnknown, ctx.Err())
	}
}

// checkMembers refuses what vsr.ProposeConfig would, and what the node
// adds: ids within 1..MaxNodeID, addresses host:port, a size the
// superblock holds.
func checkMembers(members []vsr.Member, self uint64) error {
	if len(members) == 0 {
		return fmt.Errorf("%w: no replica", ErrBadConfig)
	}
	if len(members) > superblock.MaxConfig {
		return fmt.Errorf("%w: %d replicas, at most %d", ErrBadConfig, len(members), superblock.MaxConfig)
	}
	ids, addrs := map[uint64]bool{}, map[string]uint64{}
	for _, m := range members {
		switch {
		case m.ID < 1 || m.ID > MaxNodeID:
			return fmt.Errorf("%w: node id %d: accepted 1..%d", ErrBadConfig, m.ID, MaxNodeID)
		case ids[m.ID]:
			return fmt.Errorf("%w: node id %d appears twice", ErrBadConfig, m.ID)
		case addrs[m.Addr] != 0:
			return fmt.Errorf("%w: address %s is given to node %d and node %d", ErrBadConfig, m.Addr, addrs[m.Addr], m.ID)
		}
		if _, port, err := net.SplitHostPort(m.Addr); err != nil || port == "" {
			return fmt.Errorf("%w: node %d: address %q: want host:port", ErrBadConfig, m.ID, m.Addr)
		}
		ids[m.ID], addrs[m.Addr] = true, m.ID
	}
	if !ids[self] {
		return fmt.Errorf("%w: it removes node %d, which is asked to lead the change: send it to another replica, which then leads it (stop this one first if it leads)", ErrBadConfig, self)
	}
	return nil
}

// ParseMembers parses a replica list as the flags give it:
// "1=host:port,2=host:port".
func ParseMembers(s string) ([]vsr.Member, error) {
	var out []vsr.Member
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		idStr, addr, ok := strings.Cut(part, "=")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if !ok || err != nil || addr == "" {
			return nil, fmt.Errorf("replica %q: want id=host:port", part)
		}
		out = append(out, vsr.Member{ID: id, Addr: addr})
	}
	return out, nil
}

// proposeConfig turns a Reconfigure request into a config op, in the loop.
func (n *Node) proposeConfig(req *request) {
	op, err := n.rep.ProposeConfig(req.members, req.principal)
	switch {
	case errors.Is(err, vsr.ErrNotPrimary):
		if err = n.writable(); err == nil {
			err = ErrNoLeader
		}
	case errors.Is(err, vsr.ErrReconfiguring):
		err = ErrReconfiguring
	case errors.Is(err, vsr.ErrBadConfig):
		err = fmt.Errorf("%w: %s", ErrBadConfig, strings.TrimPrefix(strings.TrimPrefix(err.Error(), vsr.ErrBadConfig.Error()), ": "))
	}
	if err != nil {
		req.result <- response{err: err}
		return
	}
	req.op = op
	n.waiting[op] = req
	n.logger.Info("configuration change proposed", slog.Uint64("op", op), slog.String("replicas", formatMembers(req.members)), slog.String("principal", req.principal))
}

// holdForEpoch keeps writes refused during a configuration change until the
// new epoch takes ops: the change takes one round trip, and writers should
// not see it.
func (n *Node) holdForEpoch(reqs []*request) { n.held = append(n.held, reqs...) }

// retryHeld proposes the held writes once no change is pending.
func (n *Node) retryHeld() {
	if len(n.held) == 0 || n.rep.State().Reconfiguring {
		return
	}
	n.batch = append(n.batch[:0], n.held...)
	clear(n.held)
	n.held = n.held[:0]
	n.propose()
}

// applyConfig records a committed config op's addresses in ClusterFile,
// before the replica enters its epoch.
func (n *Node) applyConfig(op *kmblog.Op) {
	c, err := vsr.ParseConfig(op)
	if err != nil {
		n.fail(fmt.Errorf("committed op %d: %w", op.Op, err))
		return
	}
	if c.Epoch <= n.clusterEpoch {
		return // replayed at a restart: the file holds it or a later one
	}
	n.adoptMembers(c.Epoch, c.Members)
}

// adoptMembers records the members of a later epoch, from its config op
// or from a checkpoint installed by state transfer, in ClusterFile first.
func (n *Node) adoptMembers(epoch uint64, members []vsr.Member) {
	f := clusterFile{Epoch: epoch, Members: toJSON(members), Previous: toJSON(n.members)}
	b, _ := json.MarshalIndent(f, "", "  ")
	if err := durable.WriteFile(n.cfg.DataDir, ClusterFile, append(b, '\n')); err != nil {
		n.m.storageErrors.record("write", err)
		n.fail(fmt.Errorf("write %s: %w", ClusterFile, err))
		return
	}
	n.prevMembers, n.members, n.clusterEpoch = n.members, members, epoch
	for _, m := range members {
		n.addrs[m.ID] = m.Addr
	}
}

// loadMembership sets the node's configuration at start: the member ids
// the superblock holds (else cluster.replicas); their addresses from
// ClusterFile, else cluster.replicas.
func (n *Node) loadMembership(sbConfig []uint64) error {
	n.addrs = maps.Clone(n.cfg.Replicas)
	if n.addrs == nil {
		n.addrs = map[uint64]string{}
	}
	n.members = fromMap(n.cfg.Replicas)
	f, ok, err := readClusterFile(n.cfg.DataDir)
	if err != nil {
		return err
	}
	if ok {
		n.clusterEpoch = f.Epoch
		n.members, n.prevMembers = fromJSON(f.Members), fromJSON(f.Previous)
		for _, ms := range [][]vsr.Member{n.prevMembers, n.members} {
			for _, m := range ms {
				n.addrs[m.ID] = m.Addr
			}
		}
		if len(n.cfg.Replicas) > 0 && !sameIDs(memberIDsOf(n.members), n.cfg.replicaIDs()) {
			n.clogger.Info("the cluster's configuration in the data dir overrides cluster.replicas",
				slog.Uint64("epoch", f.Epoch), slog.String("replicas", formatMembers(n.members)),
				slog.String("configured", formatMembers(fromMap(n.cfg.Replicas))))
		}
	}
	n.ids = n.cfg.replicaIDs()
	switch {
	case len(sbConfig) > 0:
		n.ids = slices.Clone(sbConfig)
	case ok:
		n.ids = memberIDsOf(n.members)
	}
	n.clustered = len(n.cfg.Replicas) > 1 || ok || len(sbConfig) > 1
	return nil
}

// peerAddrs are the transport's peers: the members of this epoch and of
// the previous one (which may still have to learn of it), but this node.
func (n *Node) peerAddrs() map[uint64]string {
	out := map[uint64]string{}
	for _, id := range append(slices.Clone(n.ids), memberIDsOf(n.prevMembers)...) {
		if addr := n.addrs[id]; id != n.cfg.NodeID && addr != "" {
			out[id] = addr
		}
	}
	return out
}

// epochStarted follows the replica into a new epoch: the peers, the
// cluster size, the logs.
func (n *Node) epochStarted(e vsr.Event) {
	st := n.rep.State()
	n.ids = slices.Clone(st.Config)
	n.m.reconfigurations.Inc()
	if n.net != nil {
		if err := n.net.SetPeers(n.peerAddrs()); err != nil {
			n.clogger.Error("replication peers not updated for the new epoch", slog.String("error", err.Error()))
		}
	}
	old := map[uint64]bool{}
	for _, m := range n.prevMembers {
		old[m.ID] = true
	}
	var added, removed []string
	for _, m := range n.members {
		if !old[m.ID] {
			added = append(added, strconv.FormatUint(m.ID, 10))
		}
		delete(old, m.ID)
	}
	for id := range old {
		removed = append(removed, strconv.FormatUint(id, 10))
	}
	slices.Sort(removed)
	n.clogger.Info("epoch started: the cluster's configuration changed",
		slog.Uint64("node_id", n.cfg.NodeID),
		slog.Uint64("epoch", e.Epoch),
		slog.Uint64("view", e.View),
		slog.Uint64("config_op", e.Op),
		slog.String("replicas", formatMembers(n.members)),
		slog.String("added", strings.Join(added, ",")),
		slog.String("removed", strings.Join(removed, ",")),
		slog.Int("cluster_size", len(n.ids)))
}

// removed logs, once, that the configuration left this node out.
func (n *Node) removed(epoch uint64) {
	n.clogger.Error("this node was removed from the cluster: it takes part in nothing and serves nothing; stop it (its data dir may then be deleted)",
		slog.Uint64("node_id", n.cfg.NodeID),
		slog.Uint64("epoch", epoch),
		slog.String("replicas", formatMembers(n.members)))
	n.failWaiting(ErrRemoved)
	n.answer(n.held, ErrRemoved)
	n.held = n.held[:0]
}

// Membership is the configuration as this node knows it.
func (n *Node) Membership() (epoch uint64, members []vsr.Member, reconfiguring bool) {
	s := n.snap.Load()
	for _, r := range s.Replicas.List() {
		members = append(members, vsr.Member{ID: r.ID, Addr: r.Addr})
	}
	return s.Epoch, members, s.Reconfiguring
}

func memberIDsOf(ms []vsr.Member) []uint64 {
	ids := make([]uint64, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

func sameIDs(a, b []uint64) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func fromMap(m map[uint64]string) []vsr.Member {
	var out []vsr.Member
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, vsr.Member{ID: id, Addr: m[id]})
	}
	return out
}

// formatMembers renders members as the flags take them: "1=h:p,2=h:p".
func formatMembers(ms []vsr.Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = strconv.FormatUint(m.ID, 10) + "=" + m.Addr
	}
	return strings.Join(parts, ",")
}
