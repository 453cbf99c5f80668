package client

import (
	"context"
	"encoding/json"
	"net/http"
)

// Replica is one member of a cluster configuration: its node id and
// replication address.
type Replica struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
}

// ClusterConfig returns the cluster's configuration as the node serves it
// (GET /v1/cluster/config): the JSON document with the epoch, the replicas
// and whether a change is in progress (README, "Reconfiguration").
func (c *Client) ClusterConfig(ctx context.Context) (json.RawMessage, error) {
	return c.rawJSON(ctx, &call{op: "cluster config", method: http.MethodGet, path: "/v1/cluster/config"})
}

// Reconfigure asks the leader to change the cluster's replicas to replicas
// (POST /v1/cluster/config) and returns its answer, the JSON document of
// the new configuration, once the change committed. A redirect is followed
// to the leader, and a refusal before anything was proposed (no leader
// known, a replica recovering) is retried; a failure after the leader may
// have taken the request is not (it carries no idempotency ids) and matches
// ErrOutcomeUnknown: ClusterConfig then tells what happened.
func (c *Client) Reconfigure(ctx context.Context, replicas []Replica) (json.RawMessage, error) {
	body, err := json.Marshal(struct {
		Replicas []Replica `json:"replicas"`
	}{replicas})
	if err != nil {
		return nil, err
	}
	return c.rawJSON(ctx, &call{op: "reconfigure", method: http.MethodPost, path: "/v1/cluster/config", body: body, once: true})
}

// rawJSON sends r and returns the 200 answer's body as it is.
func (c *Client) rawJSON(ctx context.Context, r *call) (json.RawMessage, error) {
	body, n, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	defer body.release()
	if !json.Valid(body.b) {
		return nil, undecodable(r, n, errNotJSON)
	}
	return json.RawMessage(append([]byte(nil), body.b...)), nil
}
