// Package apirules holds the rules of the client API's names that both the
// server (store/api) and the Go client (client) enforce: which tenant ids
// and keys are valid. One copy, so the client refuses exactly what the
// server would refuse.
//
// It is standard library only, as the client must stay.
package apirules
