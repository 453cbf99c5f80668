// Package profiling serves Go's runtime profiles under /debug/pprof/ on a mux
// the caller owns, so `go tool pprof http://host:9090/debug/pprof/profile`
// works against kmbd.
//
// It deliberately does not import net/http/pprof: that package registers its
// handlers on http.DefaultServeMux as a side effect of being imported, and
// kmbd never serves the default mux. The handlers here speak the same URL
// scheme and formats (gzipped protobuf profiles, `?debug=N` text forms,
// `?seconds=N` for CPU profiles and execution traces).
package profiling
