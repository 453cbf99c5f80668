package client

import (
	"bytes"
	"encoding/json"
	"errors"
)

// decodeAppendResult reads the answer to an append. The server writes it
// in one shape, which is read without reflection or allocation; anything
// else (members reordered or added by a later server) goes through
// encoding/json, and the two agree on every input the first accepts
// (FuzzDecodeAppendResult).
func decodeAppendResult(b []byte) (AppendResult, error) {
	if r, ok := fastAppendResult(b); ok {
		return r, nil
	}
	var v struct {
		First  *uint64 `json:"first_position"`
		Last   *uint64 `json:"last_position"`
		Commit *uint64 `json:"commit_number"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return AppendResult{}, err
	}
	if v.First == nil || v.Last == nil || v.Commit == nil {
		return AppendResult{}, errors.New("first_position, last_position or commit_number is missing")
	}
	return AppendResult{FirstPosition: *v.First, LastPosition: *v.Last, CommitNumber: *v.Commit}, nil
}

// fastAppendResult reads exactly
// {"first_position":N,"last_position":M,"commit_number":C} followed by JSON
// whitespace.
func fastAppendResult(b []byte) (AppendResult, bool) {
	var r AppendResult
	ok := true
	field := func(prefix string, dst *uint64) {
		if !ok || !bytes.HasPrefix(b, []byte(prefix)) {
			ok = false
			return
		}
		b = b[len(prefix):]
		*dst, b, ok = jsonUint(b)
	}
	field(`{"first_position":`, &r.FirstPosition)
	field(`,"last_position":`, &r.LastPosition)
	field(`,"commit_number":`, &r.CommitNumber)
	if !ok || len(b) == 0 || b[0] != '}' {
		return AppendResult{}, false
	}
	for _, c := range b[1:] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return AppendResult{}, false
		}
	}
	return r, true
}

// jsonUint reads a JSON number that is a uint64 written without fraction,
// exponent, sign or leading zeros, and returns the rest of b.
func jsonUint(b []byte) (uint64, []byte, bool) {
	if len(b) == 0 || b[0] < '0' || b[0] > '9' {
		return 0, b, false
	}
	if b[0] == '0' {
		if len(b) > 1 && (b[1] >= '0' && b[1] <= '9' || b[1] == '.' || b[1] == 'e' || b[1] == 'E') {
			return 0, b, false
		}
		return 0, b[1:], true
	}
	var v uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, b, false // over uint64
		}
		v = v*10 + d
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, b, false
	}
	return v, b[i:], true
}
