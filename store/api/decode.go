package api

import (
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"sync"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// The append body is decoded twice over only when it has to be. The fast
// path reads the body into a pooled buffer and parses the shape clients
// send,
//
//	{"entries":[{"key":"k","value":V},...]}
//
// with keys of printable ASCII (no escapes) and any JSON value V, compacting
// the values as it goes. It accepts a subset of what encoding/json accepts,
// and for that subset it produces exactly what the encoding/json path does.
// Anything else, valid or not (other field spellings or orders of the outer
// object, duplicate fields, escaped or non-ASCII keys, limits exceeded,
// malformed JSON), makes it give up, and the same bytes go through
// encoding/json, which decides and words the errors.

// maxFastDepth bounds the nesting of a value the fast path compacts; deeper
// values (encoding/json allows 10000 levels) take the slow path.
const maxFastDepth = 512

// maxPooledBody bounds the buffers returned to the pool, so that a rare
// huge request does not pin its memory.
const maxPooledBody = 1 << 20

// appendScratch holds the reusable buffers of one decode.
type appendScratch struct {
	body   []byte
	values []byte // compacted values, back to back
	keys   []byte // keys, back to back
	ends   []entryEnd
}

// entryEnd is where an entry's key and value end in keys and values.
type entryEnd struct{ key, value int }

var scratchPool = sync.Pool{New: func() any { return new(appendScratch) }}

func getScratch() *appendScratch { return scratchPool.Get().(*appendScratch) }

func (s *appendScratch) release() {
	if cap(s.body) > maxPooledBody || cap(s.values) > maxPooledBody || cap(s.keys) > maxPooledBody {
		return
	}
	s.body, s.values, s.keys, s.ends = s.body[:0], s.values[:0], s.keys[:0], s.ends[:0]
	scratchPool.Put(s)
}

// readBody appends all of r to buf. size, when positive, is the expected
// length. Like reading through http.MaxBytesReader, it returns at most
// limit bytes and an *http.MaxBytesError when r holds more; it returns any
// other error but io.EOF with what was read before it.
func readBody(r io.Reader, buf []byte, size, limit int64) ([]byte, error) {
	if size > 0 && int64(cap(buf)) < size+1 {
		buf = make([]byte, 0, size+1) // +1: the read that sees EOF needs room
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf[:limit], &http.MaxBytesError{Limit: limit}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			return buf, err
		}
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// decodeFast parses b as described above. It reports false when b is
// anything else; the entries it returns own their memory (one allocation
// for the entries, one for the keys, one for the values).
func (s *appendScratch) decodeFast(b []byte, cfg Config) ([]kmblog.Entry, bool) {
	p := parser{b: b}
	s.values, s.keys, s.ends = s.values[:0], s.keys[:0], s.ends[:0]
	if !p.token('{') {
		return nil, false
	}
	if p.space(); !p.literal(`"entries"`) || !p.token(':') || !p.token('[') {
		return nil, false
	}
	for {
		if !p.token('{') {
			return nil, false
		}
		haveKey, haveValue := false, false
		for field := 0; field < 2; field++ {
			if field == 1 && !p.token(',') {
				return nil, false
			}
			p.space()
			switch {
			case !haveKey && p.literal(`"key"`):
				haveKey = true
				if !p.token(':') {
					return nil, false
				}
				p.space()
				k, ok := p.plainString()
				if !ok || len(k) == 0 || len(k) > cfg.MaxKeyBytes {
					return nil, false
				}
				s.keys = append(s.keys, k...)
			case !haveValue && p.literal(`"value"`):
				haveValue = true
				if !p.token(':') {
					return nil, false
				}
				p.space()
				start := len(s.values)
				var ok bool
				if s.values, ok = p.value(s.values, 0); !ok || len(s.values)-start > cfg.MaxValueBytes {
					return nil, false
				}
			default:
				return nil, false
			}
		}
		if !p.token('}') {
			return nil, false
		}
		s.ends = append(s.ends, entryEnd{key: len(s.keys), value: len(s.values)})
		if len(s.ends) > cfg.MaxBatchEntries {
			return nil, false
		}
		if p.token(',') {
			continue
		}
		if p.token(']') {
			break
		}
		return nil, false
	}
	if !p.token('}') {
		return nil, false
	}
	if p.space(); p.i != len(b) {
		return nil, false
	}

	entries := make([]kmblog.Entry, len(s.ends))
	keys := string(s.keys)
	values := append([]byte(nil), s.values...)
	k, v := 0, 0
	for i, e := range s.ends {
		// Capped, so that appending to one value cannot overwrite the next.
		entries[i] = kmblog.Entry{Key: keys[k:e.key], Value: values[v:e.value:e.value]}
		k, v = e.key, e.value
	}
	return entries, true
}

// parser is a cursor over a JSON document.
type parser struct {
	b []byte
	i int
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// token skips white space, then consumes c.
func (p *parser) token(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// literal consumes s if the input continues with it.
func (p *parser) literal(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// plainString consumes a string of printable ASCII without escapes and
// returns its contents, which are also its decoded value.
func (p *parser) plainString() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[p.i+1 : j]
			p.i = j + 1
			return s, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// value consumes one JSON value and appends it, compacted, to dst.
func (p *parser) value(dst []byte, depth int) ([]byte, bool) {
	if p.i >= len(p.b) {
		return dst, false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.str(dst)
	case c == '{', c == '[':
		if depth >= maxFastDepth {
			return dst, false
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		p.i++
		dst = append(dst, c)
		if p.token(end) {
			return append(dst, end), true
		}
		for {
			p.space()
			var ok bool
			if c == '{' {
				if dst, ok = p.str(dst); !ok || !p.token(':') {
					return dst, false
				}
				dst = append(dst, ':')
				p.space()
			}
			if dst, ok = p.value(dst, depth+1); !ok {
				return dst, false
			}
			switch {
			case p.token(','):
				dst = append(dst, ',')
			case p.token(end):
				return append(dst, end), true
			default:
				return dst, false
			}
		}
	case c == 't':
		return p.word(dst, "true")
	case c == 'f':
		return p.word(dst, "false")
	case c == 'n':
		return p.word(dst, "null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number(dst)
	}
	return dst, false
}

func (p *parser) word(dst []byte, w string) ([]byte, bool) {
	if !p.literal(w) {
		return dst, false
	}
	return append(dst, w...), true
}

// str consumes a string and appends it as written: escapes are checked,
// not decoded, and bytes from 0x80 up are copied as they are, as
// encoding/json compacts them.
func (p *parser) str(dst []byte) ([]byte, bool) {
	b := p.b
	if p.i >= len(b) || b[p.i] != '"' {
		return dst, false
	}
	start, j := p.i, p.i+1
	for {
		// Skip eight plain bytes at a time, then one at a time up to the
		// next byte that is not plain.
		for j+8 <= len(b) && !hasSpecial(binary.LittleEndian.Uint64(b[j:])) {
			j += 8
		}
		for j < len(b) && b[j] >= 0x20 && b[j] != '"' && b[j] != '\\' {
			j++
		}
		switch {
		case j >= len(b) || b[j] < 0x20:
			return dst, false
		case b[j] == '"':
			p.i = j + 1
			return append(dst, b[start:p.i]...), true
		case j+1 >= len(b):
			return dst, false
		}
		switch b[j+1] { // after a backslash
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			j += 2
		case 'u':
			if j+5 >= len(b) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) || !isHex(b[j+5]) {
				return dst, false
			}
			j += 6
		default:
			return dst, false
		}
	}
}

// hasSpecial reports whether any of the eight bytes in x is a control
// character, a quote or a backslash: the bytes a JSON string scanner has
// to stop at. Each term is the classic "has a byte less than n" or "has a
// zero byte" test, exact as a whole though not per byte.
func hasSpecial(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	control := (x - 0x20*ones) &^ x
	q := x ^ ('"' * ones)
	quote := (q - ones) &^ q
	bs := x ^ ('\\' * ones)
	backslash := (bs - ones) &^ bs
	return (control|quote|backslash)&highs != 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number consumes -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (p *parser) number(dst []byte) ([]byte, bool) {
	b, i := p.b, p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return dst, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return dst, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return dst, false
		}
		i = j
	}
	dst = append(dst, b[p.i:i]...)
	p.i = i
	return dst, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
