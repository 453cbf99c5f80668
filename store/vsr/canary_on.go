//go:build kmb_canary

package vsr

// canary is on: the primary commits with one acknowledgement fewer than a
// quorum (with three replicas, on its own write alone). The simulator must
// catch the committed ops this loses.
const canary = true
