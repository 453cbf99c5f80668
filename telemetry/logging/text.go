package logging

import (
	"context"
	"encoding"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// appendText appends r as one human-readable line:
// timestamp, level padded to five columns, target, message, then the
// fields as logfmt key=value pairs with groups as dotted keys.
func (h *Handler) appendText(b []byte, buf *buffer, ctx context.Context, t time.Time, r slog.Record) []byte {
	b = appendTimestamp(b, t)
	b = append(b, ' ')
	name := LevelName(r.Level)
	b = append(b, name...)
	b = append(b, "      "[len(name):]...) // pad to 5, plus the separator
	b = append(b, h.targetEnc...)
	b = append(b, ' ')
	b = appendTextMessage(b, r.Message)
	b = append(b, h.pre...)
	if r.NumAttrs() > 0 {
		// The prefix is copied into pooled scratch because nested groups
		// append to it, and h.prefix is shared.
		buf.prefix = append(buf.prefix[:0], h.prefix...)
		prefix := buf.prefix
		r.Attrs(func(a slog.Attr) bool {
			b = appendTextAttr(b, prefix, a)
			return true
		})
	}
	if sc := spanContext(ctx); sc.IsValid() {
		tid, sid := sc.TraceID(), sc.SpanID()
		b = append(b, " trace_id="...)
		b = hex.AppendEncode(b, tid[:])
		b = append(b, " span_id="...)
		b = hex.AppendEncode(b, sid[:])
	}
	return append(b, '\n')
}

// appendTextAttr appends a as " key=value", under the dotted key prefix,
// with the same resolve/empty/inline rules as appendJSONAttr. prefix must
// be owned by the caller: nested groups append to it.
func appendTextAttr(b, prefix []byte, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if isEmptyAttr(a) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix = append(append(prefix, a.Key...), '.')
		}
		for _, ga := range a.Value.Group() {
			b = appendTextAttr(b, prefix, ga)
		}
		return b
	}
	b = append(b, ' ')
	start := len(b)
	b = append(b, prefix...)
	b = append(b, a.Key...)
	if needsQuoting(b[start:]) {
		key := string(b[start:])
		b = strconv.AppendQuote(b[:start], key)
	}
	b = append(b, '=')
	return appendTextValue(b, a.Value)
}

func appendTextValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendTextString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if s, ok := nonFinite(f); ok {
			return append(b, s...)
		}
		return appendFloat(b, f)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		return append(b, v.Duration().String()...)
	case slog.KindTime:
		return appendTime(b, v.Time())
	default:
		return appendTextAny(b, v.Any())
	}
}

// appendTextAny formats other values for people rather than parsers:
// TextMarshaler, then fmt's %+v, as slog.TextHandler does.
func appendTextAny(b []byte, x any) []byte {
	switch x := x.(type) {
	case nil:
		return append(b, "<nil>"...)
	case error:
		return appendTextString(b, errorString(x))
	case []byte:
		return appendTextString(b, string(x))
	case encoding.TextMarshaler:
		if data, err := marshalText(x); err == nil {
			return appendTextString(b, string(data))
		}
	}
	return appendTextString(b, fmt.Sprintf("%+v", x))
}

// marshalText is MarshalText that reports a panic as an error.
func marshalText(m encoding.TextMarshaler) (data []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			data, err = nil, fmt.Errorf("panic in MarshalText: %v", p)
		}
	}()
	return m.MarshalText()
}

// appendTextString appends s, Go-quoted if it would otherwise be
// ambiguous in a key=value list or break the line.
func appendTextString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// appendTextMessage appends the message bare, spaces and all, unless it
// is empty or holds something that would break the line or the terminal;
// then it is Go-quoted.
func appendTextMessage(b []byte, s string) []byte {
	quote := s == ""
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) { // IsPrint admits ' '
			quote = true
			break
		}
	}
	if quote {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// needsQuoting reports whether s must be quoted as a logfmt key or value:
// when empty, or holding spaces, '=', '"', control characters, invalid
// UTF-8 or other unprintable runes. This matches slog.TextHandler.
func needsQuoting[S string | []byte](s S) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		// At most UTFMax bytes are converted, which never allocates.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}
