// Package kmbdtest is the harness of kmb's end-to-end tests: it builds kmbd
// once per test binary, runs nodes and three-node clusters as real processes
// on 127.0.0.1, and offers the polling and HTTP helpers those tests share.
//
// Only tests import it. A test package that uses Binary (directly or through
// Launch) calls Main from its TestMain, so the build is removed afterwards.
package kmbdtest
