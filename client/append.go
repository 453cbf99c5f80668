package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/kmb-db/kmb/internal/apirules"
)

// Entry is one key/value record of an append.
type Entry struct {
	// Key is non-empty UTF-8 without control characters.
	Key string
	// Value is any JSON value; it is stored compacted.
	Value json.RawMessage
}

// AppendResult is what an append was given.
type AppendResult struct {
	// FirstPosition and LastPosition are the positions of the batch's
	// first and last entries in the cluster's log (global across tenants,
	// contiguous within a batch).
	FirstPosition, LastPosition uint64
	// CommitNumber is the op number the batch committed as.
	CommitNumber uint64
	// Attempts is how many requests the append sent: 1 unless it was
	// redirected or retried.
	Attempts int
}

// Batch is a batch of entries checked and encoded once, ready to be
// appended any number of times (to several tenants, or by a load generator)
// without encoding it again.
type Batch struct {
	body    []byte
	entries int
}

// NewBatch checks and encodes entries: at least one, each with a valid key
// and a value that is one JSON value. A batch the server would refuse for
// its content is refused here, and nothing is sent.
func NewBatch(entries []Entry) (*Batch, error) {
	if len(entries) == 0 {
		return nil, &Error{Op: "append", Code: CodeMalformed, Message: "a batch holds at least one entry"}
	}
	size := len(`{"entries":[]}`)
	for _, e := range entries {
		size += len(`{"key":"","value":},`) + len(e.Key) + len(e.Value)
	}
	b := make([]byte, 0, size)
	b = append(b, `{"entries":[`...)
	for i, e := range entries {
		if !apirules.ValidKey(e.Key) {
			return nil, &Error{Op: "append", Code: CodeInvalidKey, Message: fmt.Sprintf("entries[%d].key %q: must be non-empty UTF-8 without control characters", i, e.Key)}
		}
		if !json.Valid(e.Value) {
			return nil, &Error{Op: "append", Code: CodeMalformed, Message: fmt.Sprintf("entries[%d].value: not one JSON value (null is written null)", i)}
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, e.Key)
		b = append(b, `,"value":`...)
		b = append(b, e.Value...)
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	return &Batch{body: b, entries: len(entries)}, nil
}

// Len is the number of entries in the batch.
func (b *Batch) Len() int { return b.entries }

// Size is the length in bytes of the request body the batch is sent as.
func (b *Batch) Size() int { return len(b.body) }

// Append appends entries to tenant's log atomically and returns once they
// are durable on a quorum of replicas and applied. See AppendBatch.
func (c *Client) Append(ctx context.Context, tenant string, entries []Entry) (AppendResult, error) {
	b, err := NewBatch(entries)
	if err != nil {
		return AppendResult{}, err
	}
	return c.AppendBatch(ctx, tenant, b)
}

// AppendBatch appends b to tenant's log atomically and returns once it is
// durable on a quorum of replicas and applied. A redirect to the leader is
// followed, and a failure that may be transient is retried with the same
// idempotency ids, so the batch is appended at most once; an error that
// matches ErrOutcomeUnknown leaves it unknown whether it was.
func (c *Client) AppendBatch(ctx context.Context, tenant string, b *Batch) (AppendResult, error) {
	if err := checkTenant("append", tenant); err != nil {
		return AppendResult{}, err
	}
	if b == nil {
		return AppendResult{}, &Error{Op: "append", Code: CodeMalformed, Message: "no batch (NewBatch makes one)"}
	}
	sess := c.sessions.get()
	r := &call{
		op: "append", method: http.MethodPost, path: "/v1/tenants/" + tenant + "/entries", body: b.body,
		sess: sess, requestID: []string{formatUint(sess.next)},
	}
	body, n, err := c.do(ctx, r)
	var res AppendResult
	if err == nil {
		res, err = decodeAppendResult(body.b)
		body.release()
		if err != nil {
			err = undecodable(r, n, err)
		}
	}
	// The next call of this session gets a new request id whatever
	// happened: a request that may still be executed keeps its own.
	sess.next++
	c.sessions.put(sess)
	if err != nil {
		return AppendResult{Attempts: n}, err
	}
	res.Attempts = n
	return res, nil
}

// checkTenant refuses a tenant id the server would refuse:
// [a-z0-9][a-z0-9_-]{0,63}. A valid one needs no escaping in a path.
func checkTenant(op, id string) error {
	if !apirules.ValidTenant(id) {
		return &Error{Op: op, Code: CodeInvalidTenant, Message: fmt.Sprintf("tenant %q: accepted [a-z0-9][a-z0-9_-]{0,63}", id)}
	}
	return nil
}

// appendJSONString appends s, a valid key (no control characters), as a
// JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', c)
			start = i + 1
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
