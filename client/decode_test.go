package client

import (
	"encoding/json"
	"testing"
)

func TestDecodeAppendResult(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want AppendResult
		fast bool // read without encoding/json
		bad  bool
	}{
		{in: `{"first_position":1,"last_position":2,"commit_number":1}` + "\n", want: AppendResult{1, 2, 1, 0}, fast: true},
		{in: `{"first_position":0,"last_position":18446744073709551615,"commit_number":7} `, want: AppendResult{0, 1<<64 - 1, 7, 0}, fast: true},
		{in: `{"commit_number":3,"first_position":1,"last_position":2,"principal":"x"}`, want: AppendResult{1, 2, 3, 0}},
		{in: `{ "first_position" : 1 , "last_position" : 2 , "commit_number" : 1 }`, want: AppendResult{1, 2, 1, 0}},
		{in: `{"first_position":1,"last_position":2}`, bad: true},
		{in: `{"first_position":01,"last_position":2,"commit_number":1}`, bad: true},
		{in: `{"first_position":1.0,"last_position":2,"commit_number":1}`, bad: true},
		{in: `{"first_position":-1,"last_position":2,"commit_number":1}`, bad: true},
		{in: `{"first_position":18446744073709551616,"last_position":2,"commit_number":1}`, bad: true},
		{in: `{"first_position":1,"last_position":2,"commit_number":1}x`, bad: true},
		{in: ``, bad: true},
	} {
		got, err := decodeAppendResult([]byte(tt.in))
		if tt.bad {
			if err == nil {
				t.Errorf("%q: decoded %+v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if _, fast := fastAppendResult([]byte(tt.in)); fast != tt.fast {
			t.Errorf("%q: fast path %v, want %v", tt.in, fast, tt.fast)
		}
	}
	// The shape the server writes allocates nothing.
	b := []byte(`{"first_position":123,"last_position":456,"commit_number":78}` + "\n")
	if n := testing.AllocsPerRun(100, func() { decodeAppendResult(b) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// Whatever the fast path accepts, encoding/json accepts with the same
// figures.
func FuzzDecodeAppendResult(f *testing.F) {
	for _, s := range []string{
		`{"first_position":1,"last_position":2,"commit_number":1}` + "\n",
		`{"first_position":0,"last_position":0,"commit_number":0}`,
		`{"first_position":18446744073709551615,"last_position":1,"commit_number":1}`,
		`{"first_position":1e3,"last_position":1,"commit_number":1}`,
		`{"first_position":00,"last_position":1,"commit_number":1}`,
		`{"first_position":1,"last_position":1,"commit_number":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastAppendResult(b)
		if !ok {
			return
		}
		var v struct {
			First  uint64 `json:"first_position"`
			Last   uint64 `json:"last_position"`
			Commit uint64 `json:"commit_number"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%q: the fast path read %+v, encoding/json refuses it: %v", b, fast, err)
		}
		if fast != (AppendResult{FirstPosition: v.First, LastPosition: v.Last, CommitNumber: v.Commit}) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", b, fast, v)
		}
	})
}
