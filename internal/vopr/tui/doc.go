// Package tui draws a vopr.Runner's live state in a terminal, on
// bubbletea and lipgloss: seeds done and their rate, simulated events and
// their rate with a sparkline, client operations checked for
// linearizability, the current run's replicas, faults injected by kind,
// and each failing seed with the command that replays it.
//
// The screen is redrawn from a snapshot a few times a second and after a
// resize, and never draws a line wider or more lines than the terminal
// has. q (or Ctrl-C) quits.
package tui
