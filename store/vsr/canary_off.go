//go:build !kmb_canary

package vsr

// canary plants a known bug when the kmb_canary build tag is set, so the
// simulator's tests can prove they catch it. Off in every real build.
const canary = false
