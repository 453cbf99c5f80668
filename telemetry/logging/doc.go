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
// comparison. A disabled debug call therefore costs a few nanoseconds, which
// is what lets hot paths in the replication and storage code keep their
// debug logging.
//
// The package holds no global state: it never touches slog.Default, and
// everything a handler needs hangs off the value returned by [NewHandler].
package logging
