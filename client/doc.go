// Package client is the Go client of kmb's HTTP/JSON API.
//
//	c, err := client.New([]string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}, client.Options{})
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.Append(ctx, "acme", []client.Entry{{Key: "user-1", Value: json.RawMessage(`{"name":"Ada"}`)}})
//	v, err := c.Get(ctx, "acme", "user-1")
//	for e, err := range c.Read(ctx, "acme", 1) { ... }
//
// AuditExport and AuditChains read the audit trail (GET /v1/audit and
// /v1/audit/chain); ClusterConfig and Reconfigure read and change the
// cluster's replicas (/v1/cluster/config).
//
// A Client is safe for concurrent use and should be shared: it keeps the
// connections and what it learned about the cluster.
//
// Leader discovery. Only the leader takes writes. The client sends every
// request to its current target, the first address until it learns better:
// a follower's 307 answer names the leader, and the client follows it (the
// scheme of the addresses given is kept, so an https client never sends a
// request in the clear) and goes on sending there. An address that cannot be
// reached, or answers 503, is left for the next one in the list. Reads go to
// the same target, so a client reads its own writes once it has found the
// leader.
//
// Retries without duplicates. Every append carries the idempotency headers
// Kmb-Client-Id and Kmb-Request-Id. A failure that leaves the outcome
// unknown (a timeout, a lost leadership, a connection cut after the request
// was sent) and every 503 are retried with the same pair, with a jittered
// exponential backoff, until Options.RequestTimeout: the server executes
// the request at most once and answers a retry of an applied one with the
// first result. A 4xx answer is never retried. An append that gives up after
// an attempt of unknown outcome returns an error that matches
// ErrOutcomeUnknown: the entries may or may not have been appended.
//
// Errors. Every failure is an *Error: the HTTP status and the server's JSON
// code (client.CodeNotFound, ...), or the transport or context error that
// ended the call. errors.Is matches ErrNotFound, ErrOutcomeUnknown and the
// context's errors.
//
// Security. Options.TLSConfig (or CAFile, CertFile and KeyFile) makes the
// client speak https and verify the server; Options.Token is sent as
// "Authorization: Bearer <token>".
//
// The package depends on the standard library only (and on the module's
// internal/apirules, the name rules it shares with the server).
package client
