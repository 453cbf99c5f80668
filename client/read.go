package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kmb-db/kmb/internal/apirules"
)

// Value is the latest value of a key.
type Value struct {
	Key   string
	Value json.RawMessage
	// Position is the position of the entry that wrote it.
	Position uint64
}

// LogEntry is one entry of a tenant's log.
type LogEntry struct {
	Position uint64
	Key      string
	Value    json.RawMessage
	// Timestamp is the commit time of the batch the entry was written in.
	Timestamp time.Time
}

// Get reads the latest value of key in tenant, from the node the client
// sends to (the leader once it is known; any replica serves reads from what
// it has applied). A key never written is an error matching ErrNotFound.
func (c *Client) Get(ctx context.Context, tenant, key string) (Value, error) {
	if err := checkTenant("get", tenant); err != nil {
		return Value{}, err
	}
	if !apirules.ValidKey(key) {
		return Value{}, &Error{Op: "get", Code: CodeInvalidKey, Message: fmt.Sprintf("key %q: must be non-empty UTF-8 without control characters", key)}
	}
	r := &call{op: "get", method: http.MethodGet, path: "/v1/tenants/" + tenant + "/keys/" + url.PathEscape(key)}
	body, n, err := c.do(ctx, r)
	if err != nil {
		return Value{}, err
	}
	defer body.release()
	var a struct {
		Key      string          `json:"key"`
		Value    json.RawMessage `json:"value"`
		Position uint64          `json:"position"`
	}
	if err := json.Unmarshal(body.b, &a); err != nil {
		return Value{}, undecodable(r, n, err)
	}
	return Value{Key: a.Key, Value: a.Value, Position: a.Position}, nil
}

// Read iterates over tenant's log in order, from position from (0 or 1:
// from the start) to the last entry applied when the iteration reaches it,
// fetching Options.ReadPageSize entries at a time:
//
//	for e, err := range c.Read(ctx, "acme", 1) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(e.Position, e.Key, string(e.Value))
//	}
//
// A tenant without entries reads as empty. A failure is yielded once, with
// a zero LogEntry, and ends the iteration. Positions are global across
// tenants, so a tenant's are increasing but not contiguous.
func (c *Client) Read(ctx context.Context, tenant string, from uint64) iter.Seq2[LogEntry, error] {
	return func(yield func(LogEntry, error) bool) {
		if err := checkTenant("read", tenant); err != nil {
			yield(LogEntry{}, err)
			return
		}
		from = max(from, 1)
		for {
			page, next, err := c.readPage(ctx, tenant, from)
			if errors.Is(err, ErrNotFound) {
				return // no entry in this tenant yet
			}
			if err != nil {
				yield(LogEntry{}, err)
				return
			}
			if len(page) == 0 {
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
			}
			if next <= from {
				yield(LogEntry{}, &Error{Op: "read", Status: http.StatusOK,
					Message: fmt.Sprintf("the server's next position %d does not advance past %d", next, from)})
				return
			}
			from = next
		}
	}
}

// readPage reads one page of tenant's log from position from, and the
// position to go on from.
func (c *Client) readPage(ctx context.Context, tenant string, from uint64) ([]LogEntry, uint64, error) {
	path := "/v1/tenants/" + tenant + "/entries?from=" + strconv.FormatUint(from, 10)
	if n := c.opts.ReadPageSize; n > 0 {
		path += "&limit=" + strconv.Itoa(n)
	}
	r := &call{op: "read", method: http.MethodGet, path: path}
	body, n, err := c.do(ctx, r)
	if err != nil {
		return nil, from, err
	}
	defer body.release()
	var a struct {
		Entries []struct {
			Position  uint64          `json:"position"`
			Key       string          `json:"key"`
			Value     json.RawMessage `json:"value"`
			Timestamp string          `json:"timestamp"`
		} `json:"entries"`
		Next uint64 `json:"next"`
	}
	if err := json.Unmarshal(body.b, &a); err != nil {
		return nil, from, undecodable(r, n, err)
	}
	entries := make([]LogEntry, len(a.Entries))
	for i, e := range a.Entries {
		ts, err := time.Parse(time.RFC3339Nano, e.Timestamp)
		if err != nil {
			return nil, from, undecodable(r, n, fmt.Errorf("entry at position %d: timestamp: %w", e.Position, err))
		}
		entries[i] = LogEntry{Position: e.Position, Key: e.Key, Value: e.Value, Timestamp: ts}
	}
	return entries, a.Next, nil
}
