// Package testpki makes certificate authorities and certificates for
// tests with crypto/x509: a CA, leaf certificates for servers and clients
// naming loopback addresses, and their PEM files.
package testpki
