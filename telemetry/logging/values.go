package logging

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// This file holds the encoding pieces shared by the JSON and text formats.

// appendTimestamp appends t in UTC as RFC 3339 with exactly three
// fractional digits, e.g. 2024-01-15T10:30:00.000Z. Sub-millisecond
// digits are truncated, not rounded, so a line never claims a later
// millisecond than the event's. Fixed width keeps lines sortable as text.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		// Not representable in four digits; let package time decide.
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, min, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, ms, 3)
	return append(b, 'Z')
}

// appendDigits appends the n low decimal digits of v (0 <= v), zero-padded.
func appendDigits(b []byte, v, n int) []byte {
	var d [4]byte
	for i := n - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:n]...)
}

// appendTime appends a time-valued field: RFC 3339 with nanoseconds, UTC.
func appendTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, time.RFC3339Nano)
}

// appendFloat appends a finite f the way encoding/json does: plain
// decimal for ordinary magnitudes, exponent form beyond them.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Shorten e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// nonFinite names the float values JSON has no number for.
func nonFinite(f float64) (string, bool) {
	switch {
	case math.IsNaN(f):
		return "NaN", true
	case math.IsInf(f, 1):
		return "+Inf", true
	case math.IsInf(f, -1):
		return "-Inf", true
	}
	return "", false
}

// isEmptyAttr reports whether a is the zero Attr, which slog handlers
// must ignore.
func isEmptyAttr(a slog.Attr) bool {
	return a.Key == "" && a.Value.Kind() == slog.KindAny && a.Value.Any() == nil
}

// errorString returns err.Error(), surviving the methods that panic
// (typically on a nil pointer receiver): fmt prints those as "<nil>" or
// a %!v(PANIC=...) note instead of taking the process down.
func errorString(err error) (s string) {
	defer func() {
		if recover() != nil {
			s = fmt.Sprintf("%+v", err)
		}
	}()
	return err.Error()
}

// marshalJSON is json.Marshal that reports a panicking MarshalJSON method
// as an error, so the caller falls back to fmt.
func marshalJSON(v any) (js []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			js, err = nil, fmt.Errorf("panic in json.Marshal: %v", p)
		}
	}()
	return json.Marshal(v)
}

// spanContext returns the span context carried by ctx. slog.Logger never
// passes a nil ctx, but Handle may be called directly.
func spanContext(ctx context.Context) trace.SpanContext {
	if ctx == nil {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(ctx)
}
