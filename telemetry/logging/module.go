package logging

import "log/slog"

// TargetKey is the reserved attribute key that names a logger's target.
// Given to With (WithAttrs), it sets the target of the derived logger and
// is not written as a field; in a record's own attributes it is an
// ordinary field, because levels are chosen before a record's attributes
// exist.
const TargetKey = "target"

// ForModule returns a logger whose records carry target module and whose
// level is the one KMB_LOG gives that module. It is shorthand for
// base.With(slog.String(TargetKey, module)); an empty module restores the
// handler's default target. base must use a [Handler] (possibly derived)
// for the target to take effect; with any other handler the target is an
// ordinary attribute.
func ForModule(base *slog.Logger, module string) *slog.Logger {
	return base.With(slog.String(TargetKey, module))
}
