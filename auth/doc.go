// Package auth holds the principals of kmbd's client API: the tokens
// file, the lookup of a bearer secret, and what each principal may do.
//
// A tokens file is TOML, one [[token]] table per principal:
//
//	[[token]]
//	name    = "acme-writer"       # the principal, recorded with every entry it writes
//	sha256  = "<64 hex digits>"   # SHA-256 of the secret; the secret is never stored
//	tenants = ["acme"]            # or ["*"] for every tenant
//	rights  = ["read", "write"]   # read, write, audit, admin
//
// A Store holds the current set behind an atomic pointer: a request
// hashes its secret once and reads a map, with no lock and no
// allocation, and Reload swaps in a new set only when the whole file is
// valid.
package auth
