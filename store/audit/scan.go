package audit

import (
	"encoding/json"
	"errors"
	"strconv"
)

// A small JSON object scanner for records: Verify reads millions of them,
// and encoding/json's reflection made it twenty times slower than Export.
// It splits one object into its members without decoding the values
// (which stay raw, as the chain hash needs them) and checks the syntax it
// walks; anything it does not expect makes the caller fall back to
// encoding/json.

var errSyntax = errors.New("audit: bad JSON")

// members calls fn with each member of the JSON object b (which must be
// the whole of b, surrounding spaces aside): its key, and its value as
// the raw bytes of b.
func members(b []byte, fn func(key, value []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errSyntax
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		if skipSpace(b, i+1) != len(b) {
			return errSyntax
		}
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errSyntax
		}
		end, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return errSyntax
		}
		i = skipSpace(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(key, b[i:vend]); err != nil {
			return err
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return errSyntax
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			if skipSpace(b, i+1) != len(b) {
				return errSyntax
			}
			return nil
		default:
			return errSyntax
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i].
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, nil
		case c == '\\':
			j++
		case c < 0x20:
			return 0, errSyntax
		}
	}
	return 0, errSyntax
}

// skipValue returns the index just past the JSON value starting at b[i].
// Numbers and literals are checked by whoever decodes them; strings,
// objects and arrays are balanced here, and a nested value is validated
// with encoding/json, since a stored value goes into the chain hash as it
// stands.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					if !json.Valid(b[i : j+1]) {
						return 0, errSyntax
					}
					return j + 1, nil
				}
			}
		}
		return 0, errSyntax
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
		j++
	}
	if j == i || !json.Valid(b[i:j]) {
		return 0, errSyntax
	}
	return j, nil
}

// jsonText decodes a JSON string value.
func jsonText(raw []byte) (string, error) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", errSyntax
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			err := json.Unmarshal(raw, &s)
			return s, err
		}
	}
	return string(inner), nil
}

func jsonUint(raw []byte) (uint64, error) { return strconv.ParseUint(string(raw), 10, 64) }

// fastRecord decodes a record object into j without reflection; ok is
// false when the object is not in the shape Export writes, for the caller
// to decode it the slow way.
func fastRecord(b []byte, j *jsonRecord) (ok bool) {
	*j = jsonRecord{}
	err := members(b, func(key, value []byte) error {
		var err error
		switch string(key) {
		case "type":
			j.Type, err = jsonText(value)
		case "position":
			j.Position, err = jsonUint(value)
		case "op":
			j.Op, err = jsonUint(value)
		case "view":
			j.View, err = jsonUint(value)
		case "kind":
			j.Kind, err = jsonText(value)
		case "tenant":
			j.Tenant, err = jsonText(value)
		case "key":
			var k string
			k, err = jsonText(value)
			j.Key = &k
		case "value":
			j.Value = value
		case "timestamp":
			j.Timestamp, err = jsonText(value)
		case "principal":
			j.Principal, err = jsonText(value)
		case "client_id":
			j.ClientID, err = jsonUint(value)
		case "request_id":
			j.RequestID, err = jsonUint(value)
		case "chain":
			j.Chain, err = jsonText(value)
		case "prev_chain":
			j.PrevChain, err = jsonText(value)
		default:
			err = errSyntax
		}
		return err
	})
	return err == nil
}
