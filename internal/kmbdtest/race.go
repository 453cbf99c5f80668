//go:build race

package kmbdtest

// raceEnabled reports whether this test binary runs under the race
// detector; kmbd is then built with it too, so the end-to-end tests check
// the server's own code for races.
const raceEnabled = true
