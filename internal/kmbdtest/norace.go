//go:build !race

package kmbdtest

// raceEnabled: see race.go.
const raceEnabled = false
