//go:build !race

package vsr

const raceEnabled = false
