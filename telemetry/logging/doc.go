// Package logging is kmbd's log/slog backend.
//
// A [Handler] writes one line per record in kmbd's documented shape. The
// default JSON form is
//
//	{"timestamp":"2024-01-15T10:30:00.000Z","level":"INFO","target":"kmb_consensus","message":"Became leader","fields":{"node_id":1,"view":5,"commit_index":12345}}
//
// with the keys always present and always in this order, so that log
// shippers and humans with grep can rely on them. The text form carries the
// same information on one human-readable line:
//
//	2024-01-15T10:30:00.000Z INFO  kmb_consensus Became leader node_id=1 view=5 commit_index=12345
//
// # Targets and levels
//
// Every record has a target, the module that logged it. The target travels
// with the logger rather than the record: [ForModule] (or, equivalently,
// logger.With(slog.String([TargetKey], module))) derives a logger for a
// module. Levels are chosen per module by the KMB_LOG environment variable,
// parsed by [ParseLevels] with RUST_LOG-like syntax:
//
//	KMB_LOG=warn,kmb=info,kmb_vsr=debug
//
// Because the target is fixed when a logger is derived, each derived handler
// resolves its module's level once, and [Handler.Enabled] is a single
// comparison: no map, no lock. That is the handler's whole share of a
// disabled call. The rest is slog.Logger's own call overhead (building the
// argument slice, entering Logger.log), which is why code on the hottest
// paths should guard with
//
//	if logger.Enabled(ctx, slog.LevelDebug) {
//		logger.Debug(...)
//	}
//
// which costs a few nanoseconds when the level is off.
//
// # Fields
//
// "fields" holds the logger's attributes (from With) and then the
// record's, with groups (WithGroup, slog.Group) as nested objects and
// "fields":{} when there are none. When the context passed to the log call
// carries a valid OpenTelemetry span context, "trace_id" and "span_id"
// follow, at the top level of fields. Values are encoded as JSON numbers,
// bools and strings; a time.Time as RFC 3339 with nanoseconds in UTC; a
// time.Duration by its String method ("1.5ms"); an error by its Error
// method; NaN and infinities as the strings "NaN", "+Inf" and "-Inf";
// anything else by encoding/json, falling back to fmt's %+v. The text
// format writes the same fields as key=value with dotted keys for groups,
// quoting only where needed, and formats other values with
// encoding.TextMarshaler or %+v, which reads better than JSON.
//
// The package holds no global state: it never touches slog.Default, and
// everything a handler needs hangs off the value returned by [NewHandler].
package logging
