// Package api is kmbd's client HTTP/JSON API:
//
//	POST /v1/tenants/{tenant}/entries            append a batch atomically
//	GET  /v1/tenants/{tenant}/keys/{key}         read the projection
//	GET  /v1/tenants/{tenant}/entries?from&limit read the tenant's log
//
// With WithTokens or WithClientCertificates every request authenticates
// (a bearer token, or a verified client certificate's CN) and its
// principal must hold the route's right on the tenant: 401 unauthenticated
// or 403 forbidden otherwise, counted in kmb_auth_failures_total. Writes
// record the principal; log reads return it.
//
// Every request is validated in full before anything reaches the node, so a
// rejected request appends nothing. Errors are JSON {"error":..,"code":..}
// with 400 (malformed), 404 (unknown), 405, 413 (over a limit) or 503 (not
// ready). Limits are in Config and documented in the README.
package api
