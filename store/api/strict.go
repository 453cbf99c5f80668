package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// encoding/json lets two things through silently that would change what
// is stored: a member given twice (it keeps the last one, and matches
// member names case-insensitively, so "key" and "KEY" are the same
// member), and strings that are not valid UTF-8 (it replaces every bad
// byte, and every lone surrogate escape, with U+FFFD, so that distinct
// keys would collide). strictCheck refuses both in the request and entry
// objects, after encoding/json accepted the shape. Values are not
// decoded: they are stored as the client sent them, compacted, so they
// are not changed and are left alone.

// strictCheck examines the append request at the start of body, which
// encoding/json decoded into an appendRequest without error. It returns a
// reason when a member is repeated, and otherwise which entries' keys are
// not valid UTF-8 (nil when all are).
func strictCheck(body []byte) (problem string, badKey []bool) {
	var outer json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&outer); err != nil {
		return "malformed JSON body: " + err.Error(), nil
	}
	names, values, ok := members(outer)
	if !ok {
		return "", nil // not an object: encoding/json's checks cover it
	}
	if dup := repeated(names, "entries"); dup != "" {
		return `malformed JSON body: member "` + dup + `" appears twice`, nil
	}
	for i, name := range names {
		if !strings.EqualFold(name, "entries") {
			continue
		}
		var entries []json.RawMessage
		if json.Unmarshal(values[i], &entries) != nil {
			return "", nil // null: refused later as an empty batch
		}
		for j, e := range entries {
			en, ev, ok := members(e)
			if !ok {
				continue
			}
			if dup := repeated(en, "key", "value"); dup != "" {
				return `malformed JSON body: entries[` + strconv.Itoa(j) + `] has member "` + dup + `" twice`, nil
			}
			for k, name := range en {
				if strings.EqualFold(name, "key") && !validUTF8String(ev[k]) {
					if badKey == nil {
						badKey = make([]bool, len(entries))
					}
					badKey[j] = true
				}
			}
		}
	}
	return "", badKey
}

// members lists the member names and raw values of the JSON object raw.
func members(raw []byte) (names []string, values []json.RawMessage, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, nil, false
	}
	for dec.More() {
		t, err := dec.Token()
		name, isName := t.(string)
		if err != nil || !isName {
			return nil, nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, false
		}
		names, values = append(names, name), append(values, v)
	}
	return names, values, true
}

// repeated returns the first of fields that two of names match as
// encoding/json matches a member to a field (strings.EqualFold), or "".
func repeated(names []string, fields ...string) string {
	for _, f := range fields {
		n := 0
		for _, name := range names {
			if strings.EqualFold(name, f) {
				n++
			}
		}
		if n > 1 {
			return f
		}
	}
	return ""
}

// validUTF8String reports whether the JSON string literal raw decodes
// without replacement: its bytes are valid UTF-8 and every \u escape of a
// surrogate is half of a pair. Anything but a string is left to the
// type checks (true).
func validUTF8String(raw []byte) bool {
	if len(raw) < 2 || raw[0] != '"' {
		return true
	}
	if !utf8.Valid(raw) {
		return false
	}
	s := raw[1 : len(raw)-1]
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		i++
		if i >= len(s) || s[i] != 'u' {
			continue // a one-letter escape; i now points at its letter
		}
		r, ok := hex4(s[i+1:])
		if !ok {
			return false
		}
		i += 4
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return false // a low surrogate without its high half
		case r >= 0xd800 && r <= 0xdbff:
			if i+2 >= len(s) || s[i+1] != '\\' || s[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(s[i+3:])
			if !ok || lo < 0xdc00 || lo > 0xdfff {
				return false
			}
			i += 6
		}
	}
	return true
}

// hex4 decodes the four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
