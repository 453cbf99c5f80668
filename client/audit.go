package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// AuditExport streams GET /v1/audit?query, the audit export of a range of
// committed ops (query holds start, end, and optionally tenant and format;
// see the README's "Audit trail"), into w, and returns the bytes written.
// A failure before the first byte is retried like any read; once bytes
// were written to w the call is not retried, and the error says how many
// were.
func (c *Client) AuditExport(ctx context.Context, query string, w io.Writer) (int64, error) {
	var written int64
	r := &call{op: "audit export", method: http.MethodGet, path: "/v1/audit?" + query,
		stream: func(body io.Reader) (int64, error) {
			n, err := io.Copy(w, body)
			written = n
			return n, err
		}}
	body, _, err := c.do(ctx, r)
	if err != nil {
		return written, err
	}
	body.release()
	return written, nil
}

// AuditChains asks the node for the chain hashes of committed ops (GET
// /v1/audit/chain, at most 1000 ops a call): the cluster's id and, per op,
// its chain hash in hex, "" for an op the node does not hold.
func (c *Client) AuditChains(ctx context.Context, ops []uint64) (cluster string, chains map[uint64]string, err error) {
	strs := make([]string, len(ops))
	for i, op := range ops {
		strs[i] = strconv.FormatUint(op, 10)
	}
	r := &call{op: "audit chain", method: http.MethodGet, path: "/v1/audit/chain?ops=" + strings.Join(strs, ",")}
	body, n, err := c.do(ctx, r)
	if err != nil {
		return "", nil, err
	}
	defer body.release()
	var a struct {
		Cluster string            `json:"cluster"`
		Chains  map[string]string `json:"chains"`
	}
	if err := json.Unmarshal(body.b, &a); err != nil {
		return "", nil, undecodable(r, n, err)
	}
	chains = make(map[uint64]string, len(a.Chains))
	for k, v := range a.Chains {
		op, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			return "", nil, undecodable(r, n, fmt.Errorf("chains key %q is not an op number", k))
		}
		chains[op] = v
	}
	return a.Cluster, chains, nil
}
