package logging

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Options configure a [Handler].
type Options struct {
	// Format is "json" (the default when empty) or "text".
	Format string
	// Levels gives each target its minimum level. The zero value logs
	// everything at INFO and above.
	Levels Levels
	// DefaultTarget is the target of records whose logger has none;
	// "kmb" when empty.
	DefaultTarget string
	// Now supplies the timestamp of records that carry none (a zero
	// Record.Time); time.Now when nil. Records from a slog.Logger always
	// carry their own time, which is used as is.
	Now func() time.Time
}

// Handler is a slog.Handler that writes kmbd's log lines. Handlers
// derived from one [NewHandler] call (through WithAttrs, WithGroup or
// [ForModule]) share its writer, and each record is written with a single
// Write call under a shared mutex, so lines never interleave.
type Handler struct {
	// min is the only field Enabled reads. It is resolved from
	// Options.Levels whenever the target changes, so the hot path never
	// consults Levels.
	min slog.Level
	out *output

	target    string
	targetEnc []byte // target already quoted for the output format

	// pre holds the fields added by WithAttrs, already encoded, so a
	// derived logger does not re-encode them on every record.
	pre []byte
	// groups are the WithGroup names, outermost first.
	groups []string
	// nOpen is how many of groups pre has opened (JSON only). Groups are
	// opened lazily, so a group that never receives a field is not
	// written at all.
	nOpen int
	// prefix is the groups joined as a dotted key prefix, "a.b." (text
	// only).
	prefix []byte
}

// output is the state shared by all handlers derived from one NewHandler.
type output struct {
	mu   sync.Mutex // serialises w.Write
	w    io.Writer
	text bool

	levels        Levels
	defaultTarget string
	now           func() time.Time

	pool sync.Pool // of *buffer
}

// buffer is the per-record scratch space that Handle borrows from the pool.
type buffer struct {
	line   []byte
	prefix []byte // text only: dotted key prefix for nested groups
}

// maxPooledLine bounds the lines kept for reuse, so one huge record does
// not pin its buffer for the life of the process.
const maxPooledLine = 64 << 10

// NewHandler returns a Handler writing to w. It fails for a nil w or an
// unknown Options.Format.
func NewHandler(w io.Writer, opts Options) (*Handler, error) {
	if w == nil {
		return nil, errors.New("logging: nil writer")
	}
	out := &output{
		w:             w,
		levels:        opts.Levels,
		defaultTarget: cmp.Or(opts.DefaultTarget, "kmb"),
		now:           opts.Now,
	}
	switch opts.Format {
	case "", "json":
	case "text":
		out.text = true
	default:
		return nil, fmt.Errorf("logging: unknown log format %q (accepted: json, text)", opts.Format)
	}
	if out.now == nil {
		out.now = time.Now
	}
	out.pool.New = func() any { return &buffer{line: make([]byte, 0, 1024)} }

	h := &Handler{out: out}
	h.setTarget("")
	return h, nil
}

// setTarget makes t, or the default target when t is empty, the target
// of h and re-resolves h's level for it.
func (h *Handler) setTarget(t string) {
	t = cmp.Or(t, h.out.defaultTarget)
	h.target = t
	h.min = h.out.levels.For(t)
	if h.out.text {
		h.targetEnc = appendTextString(nil, t)
	} else {
		h.targetEnc = appendJSONString(nil, t)
	}
}

// Enabled reports whether level reaches the minimum level of h's target.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.min
}

// WithAttrs returns a handler whose records also carry as. An attribute
// keyed [TargetKey] is not a field: it sets the target (and with it the
// level) of the returned handler, whatever groups are open.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	// Always encode into a fresh slice: h.pre may be shared with other
	// handlers and goroutines.
	pre := make([]byte, 0, len(h.pre)+32*len(as))
	pre = append(pre, h.pre...)
	mark := len(pre)
	if !h.out.text {
		pre = openJSONGroups(pre, h.groups[h.nOpen:])
	}
	start := len(pre)
	prefix := slices.Clone(h.prefix) // private: appendTextAttr appends to it
	for _, a := range as {
		if a.Key == TargetKey {
			h2.setTarget(a.Value.Resolve().String())
			continue
		}
		if h.out.text {
			pre = appendTextAttr(pre, prefix, a)
		} else {
			pre = appendJSONAttr(pre, a)
		}
	}
	if len(pre) == start {
		// Nothing was written (only the target, or only empty attrs):
		// keep h's encoding, groups still unopened.
		pre = pre[:mark]
	} else {
		h2.nOpen = len(h.groups)
	}
	if len(pre) > len(h.pre) {
		h2.pre = pre
	}
	return &h2
}

// WithGroup returns a handler that nests all later fields, from WithAttrs
// and from records, under name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(slices.Clip(h.groups), name)
	if h.out.text {
		h2.prefix = append(append(slices.Clip(h.prefix), name...), '.')
	}
	return &h2
}

// Handle writes r as one line. As with any slog.Handler, the caller is
// expected to have checked Enabled.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	t := r.Time
	if t.IsZero() {
		t = h.out.now()
	}
	buf := h.out.pool.Get().(*buffer)
	if h.out.text {
		buf.line = h.appendText(buf.line[:0], buf, ctx, t, r)
	} else {
		buf.line = h.appendJSON(buf.line[:0], ctx, t, r)
	}
	err := h.out.write(buf.line)
	if cap(buf.line) <= maxPooledLine {
		h.out.pool.Put(buf)
	}
	return err
}

func (o *output) write(line []byte) error {
	o.mu.Lock()
	// Deferred so that a panicking writer cannot leave every other
	// logger in the process blocked on the mutex.
	defer o.mu.Unlock()
	_, err := o.w.Write(line)
	return err
}
