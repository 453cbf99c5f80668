// Package dashboard serves a vopr.Runner's live state as a web page: the
// page and its script and style are embedded in the binary (nothing is
// fetched from elsewhere), /api/state answers the State as JSON, and
// /events streams it as Server-Sent Events, at most one frame every
// Options.MinInterval and only when it changed.
//
// Handler builds the routes on their own mux; Serve runs them on a
// listener with timeouts until its context is done.
package dashboard
