//go:build kmb_canary_epoch

package vsr

// canaryEpoch is on: a replica enters a new epoch as soon as its config op
// is in its log, before it commits. A view change of the old epoch may
// then replace the config op while the new epoch commits ops of its own.
// The simulator must catch it.
const canaryEpoch = true
