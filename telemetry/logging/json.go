package logging

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON appends r as one JSON line:
// {"timestamp":…,"level":…,"target":…,"message":…,"fields":{…}}.
func (h *Handler) appendJSON(b []byte, ctx context.Context, t time.Time, r slog.Record) []byte {
	b = append(b, `{"timestamp":"`...)
	b = appendTimestamp(b, t)
	b = append(b, `","level":"`...)
	b = append(b, LevelName(r.Level)...)
	b = append(b, `","target":`...)
	b = append(b, h.targetEnc...)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, r.Message)
	b = append(b, `,"fields":{`...)

	b = append(b, h.pre...)
	open := h.nOpen
	if r.NumAttrs() > 0 {
		mark := len(b)
		b = openJSONGroups(b, h.groups[h.nOpen:])
		start := len(b)
		r.Attrs(func(a slog.Attr) bool {
			b = appendJSONAttr(b, a)
			return true
		})
		if len(b) == start {
			b = b[:mark] // only empty attrs: leave the groups out
		} else {
			open = len(h.groups)
		}
	}
	for range open {
		b = append(b, '}')
	}

	// Trace ids go last, outside any group, so they sit at the top level
	// of fields however deep the logger's groups are.
	if sc := spanContext(ctx); sc.IsValid() {
		tid, sid := sc.TraceID(), sc.SpanID()
		b = appendJSONSep(b)
		b = append(b, `"trace_id":"`...)
		b = hex.AppendEncode(b, tid[:])
		b = append(b, `","span_id":"`...)
		b = hex.AppendEncode(b, sid[:])
		b = append(b, '"')
	}
	return append(b, "}}\n"...)
}

// appendJSONSep appends the comma that separates object members, unless
// b ends an object's opening brace. Every member and group in fields is
// written through this, which is what lets pre-encoded fields, record
// fields and trace ids be concatenated without tracking counts.
func appendJSONSep(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] != '{' {
		b = append(b, ',')
	}
	return b
}

func appendJSONKey(b []byte, key string) []byte {
	b = appendJSONSep(b)
	b = appendJSONString(b, key)
	return append(b, ':')
}

func openJSONGroups(b []byte, groups []string) []byte {
	for _, g := range groups {
		b = appendJSONKey(b, g)
		b = append(b, '{')
	}
	return b
}

// appendJSONAttr appends a as a member of the object being written,
// following the slog handler rules: values are resolved, empty attrs and
// empty groups are dropped, and a group with an empty key is inlined.
func appendJSONAttr(b []byte, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if isEmptyAttr(a) {
		return b
	}
	if a.Value.Kind() != slog.KindGroup {
		b = appendJSONKey(b, a.Key)
		return appendJSONValue(b, a.Value)
	}
	as := a.Value.Group()
	if a.Key == "" {
		for _, ga := range as {
			b = appendJSONAttr(b, ga)
		}
		return b
	}
	mark := len(b)
	b = appendJSONKey(b, a.Key)
	b = append(b, '{')
	start := len(b)
	for _, ga := range as {
		b = appendJSONAttr(b, ga)
	}
	if len(b) == start {
		return b[:mark] // a group with nothing in it is not written
	}
	return append(b, '}')
}

func appendJSONValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendJSONString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if s, ok := nonFinite(f); ok {
			return appendJSONString(b, s) // JSON has no NaN or Inf
		}
		return appendFloat(b, f)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = append(b, '"')
		b = append(b, v.Duration().String()...)
		return append(b, '"')
	case slog.KindTime:
		b = append(b, '"')
		b = appendTime(b, v.Time())
		return append(b, '"')
	default:
		return appendJSONAny(b, v.Any())
	}
}

func appendJSONAny(b []byte, x any) []byte {
	switch x := x.(type) {
	case nil:
		return append(b, "null"...)
	case error:
		return appendJSONString(b, errorString(x))
	}
	if js, err := marshalJSON(x); err == nil {
		return append(b, js...)
	}
	return appendJSONString(b, fmt.Sprintf("%+v", x))
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Quotes, backslashes and
// control characters are escaped, invalid UTF-8 becomes \ufffd, and
// U+2028/U+2029 are escaped as encoding/json does, so any line can be
// embedded in JavaScript. HTML characters are left alone: these lines are
// not destined for HTML.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, `\u00`...)
				b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
