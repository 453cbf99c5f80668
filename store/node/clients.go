package node

import (
	"errors"
	"fmt"
)

// ErrStaleRequest: a client retried a request older than its latest.
var ErrStaleRequest = errors.New("request id is older than this client's latest applied request")

// clientTable remembers, per client, the last request applied and its
// result, so a retried request executes at most once. It is state-machine
// state: built only from applied ops, so every replica holds the same one.
type clientTable struct {
	last map[uint64]clientEntry
}

type clientEntry struct {
	request uint64
	result  AppendResult
}

func newClientTable() *clientTable { return &clientTable{last: map[uint64]clientEntry{}} }

// check tells whether (client, request) was applied already (done, with
// its result) or is older than the latest (error).
func (t *clientTable) check(client, request uint64) (AppendResult, bool, error) {
	e, ok := t.last[client]
	switch {
	case !ok || request > e.request:
		return AppendResult{}, false, nil
	case request == e.request:
		return e.result, true, nil
	}
	return AppendResult{}, false, fmt.Errorf("%w (client %d: %d < %d)", ErrStaleRequest, client, request, e.request)
}

// record notes an applied request; it reports false for a duplicate, which
// must not be executed again.
func (t *clientTable) record(client, request uint64, res AppendResult) bool {
	if e, ok := t.last[client]; ok && request <= e.request {
		return false
	}
	t.last[client] = clientEntry{request: request, result: res}
	return true
}

func (t *clientTable) result(client uint64) AppendResult { return t.last[client].result }
