// Package certs serves TLS from PEM files that an operator rotates: it
// loads a certificate, its key and a CA bundle, and reloads them when the
// files change (checked at most once a second, on new handshakes) or
// when Reload is called (kmbd calls it on SIGHUP), without a restart. A
// reload that fails keeps the previous certificates in force.
package certs
