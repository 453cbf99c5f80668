//go:build !kmb_canary_epoch

package vsr

// canaryEpoch plants a known bug when the kmb_canary_epoch build tag is
// set, so the simulator's checkers can be shown to catch it.
const canaryEpoch = false
