package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kmb-db/kmb/store/node"
)

// decodeSeeds are append bodies the fast path takes, and bodies it must
// leave to encoding/json.
var decodeSeeds = []string{
	`{"entries":[{"key":"k1","value":{"n": 1}},{"key":"k2","value":null},{"key":"k1","value":[1, 2]}]}`,
	" \t\r\n{ \"entries\" : [ { \"key\" : \"a b\" , \"value\" : { \"x\" : [ true , false , null , -0.5e+10 , 0 , 1E3 , \"s\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\" ] , \"y\" : { } , \"z\" : [ ] } } ] } \n",
	`{"entries":[{"value":"first","key":"k"}]}`,
	`{"entries":[{"key":"k","value":"\u2028 é \xff"}]}`,
	`{"entries":[{"key":"k","value":-12.25e-3}]}`,
	`{"entries":[{"key":"k","value":"` + strings.Repeat("v", 98) + `"},{"key":"k2","value":1}]}`,
	// Not taken by the fast path; some valid, some not.
	`{"entries":[{"key":"k","value":1}`,
	`[1,2]`,
	`{"entries":[{"key":"k","value":1,"x":2}]}`,
	`{"entries":[{"key":"k","value":1}]} {}`,
	`{"entries":[{"key":"k","value":1}]}}`,
	`{"entries":[{"key":"k","value":1}]}]`,
	`{"entries":[]}`,
	`{"entries":null}`,
	`{}`,
	``,
	`{"entries":[{"value":1}]}`,
	`{"entries":[{"key":"k"}]}`,
	`{"entries":[{"key":"","value":1}]}`,
	`{"entries":[{"key":"a\u0001","value":1}]}`,
	`{"entries":[{"key":"\u0061","value":1}]}`,
	`{"entries":[{"key":"é","value":1}]}`,
	`{"entries":[{"key":"k","key":"j","value":1}]}`,
	`{"entries":[{"key":"k","value":1,"value":2}]}`,
	`{"Entries":[{"Key":"k","VALUE":1}]}`,
	`{"entries":[{"key":null,"value":1}]}`,
	`{"entries":[{"key":1,"value":1}]}`,
	`{"entries":[{"key":"k","value":01}]}`,
	`{"entries":[{"key":"k","value":1.}]}`,
	`{"entries":[{"key":"k","value":.5}]}`,
	`{"entries":[{"key":"k","value":1e}]}`,
	`{"entries":[{"key":"k","value":-}]}`,
	`{"entries":[{"key":"k","value":+1}]}`,
	`{"entries":[{"key":"k","value":tru}]}`,
	`{"entries":[{"key":"k","value":nulll}]}`,
	`{"entries":[{"key":"k","value":"a\x01"}]}`,
	`{"entries":[{"key":"k","value":"\x"}]}`,
	`{"entries":[{"key":"k","value":"\u12"}]}`,
	`{"entries":[{"key":"k","value":"\u12g4"}]}`,
	`{"entries":[{"key":"k","value":[1,]}]}`,
	`{"entries":[{"key":"k","value":{"a":1,}}]}`,
	`{"entries":[{"key":"k","value":{"a" 1}}]}`,
	`{"entries":[{"key":"k","value":{1:1}}]}`,
	`{"entries":[{"key":"k","value":[` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `]}]}`,
	`{"entries":[{"key":"k","value":1},]}`,
	`{"entries":[{"key":"k","value":"12345678901234567"}]}`,
	`{"entries":[{"key":"123456789","value":1}]}`,
	`{"entries":[{"key":"a","value":1},{"key":"b","value":1},{"key":"c","value":1},{"key":"d","value":1}]}`,
	`{"entries":[{"key":"k","value":"` + strings.Repeat("x", 3000) + `"}]}`,
	// Refused rather than changed: keys that are not valid UTF-8 and
	// repeated members (encoding/json would keep the last).
	"{\"entries\":[{\"key\":\"\xff\xfe\",\"value\":1}]}",
	`{"entries":[{"key":"a\ud800","value":1}]}`,
	`{"entries":[{"key":"\udc00x","value":1}]}`,
	`{"entries":[{"key":"\ud800\u0041","value":1}]}`,
	`{"entries":[{"key":"\ud83d\ude00","value":1}]}`,
	`{"entries":[{"key":"\\ud800","value":1}]}`,
	"{\"entries\":[{\"key\":\"\xef\xbf\xbd\",\"value\":1}]}",
	`{"entries":[{"key":"k","value":1}],"entries":[{"key":"j","value":2}]}`,
	`{"Entries":[{"key":"k","value":1}],"entries":[]}`,
	`{"entries":[{"key":"k","KEY":"j","value":1}]}`,
	`{"entries":[{"key":"k","value":1,"Value":2}]}`,
	`{"entries":[{"key":"a","\u212aey":"b","value":1}]}`,
	`{"entries":[{"key":"k","value":{"a":1,"a":2}}]}`,
	`{"entries":[{"key":"k","value":"\ud800"}]}`,
}

func decodeTestConfigs() []Config {
	small := DefaultConfig()
	small.MaxBodyBytes = 2048
	small.MaxBatchEntries = 3
	small.MaxKeyBytes = 8
	small.MaxValueBytes = 16
	return []Config{DefaultConfig(), small}
}

// checkDecode compares decodeAppend, which tries the fast path first, with
// encoding/json alone: the same entries, or the same rejection.
func checkDecode(t *testing.T, cfg Config, body []byte) {
	a := &API{cfg: cfg}
	for _, knownLength := range []bool{true, false} {
		r, err := http.NewRequest(http.MethodPost, "/v1/tenants/t/entries", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if !knownLength {
			r.ContentLength = -1
		}
		got, gs, gc, gm := a.decodeAppend(r)
		want, ws, wc, wm := a.decodeAppendSlow(http.MaxBytesReader(nil, readCloser{bytes.NewReader(body)}, cfg.MaxBodyBytes))
		if knownLength && int64(len(body)) > cfg.MaxBodyBytes {
			continue // refused on Content-Length before reading
		}
		if gs != ws || gc != wc || gm != wm || !reflect.DeepEqual(got, want) {
			t.Fatalf("body %q (max %d bytes):\n got %d %q %q %q\nwant %d %q %q %q", body, cfg.MaxBodyBytes, gs, gc, gm, got, ws, wc, wm, want)
		}
	}
}

func TestDecodeAppendMatchesEncodingJSON(t *testing.T) {
	for _, cfg := range decodeTestConfigs() {
		for _, body := range decodeSeeds {
			checkDecode(t, cfg, []byte(body))
		}
	}
}

// The fast path takes the bodies clients send.
func TestDecodeFastTakesCommonBodies(t *testing.T) {
	for _, body := range append([][]byte{benchBody(1), benchBody(100)}, []byte(decodeSeeds[0]), []byte(decodeSeeds[1]), []byte(decodeSeeds[2])) {
		s := getScratch()
		entries, ok := s.decodeFast(body, DefaultConfig())
		if !ok {
			t.Errorf("fast path refused %q", body)
		}
		for i, e := range entries {
			if cap(e.Value) != len(e.Value) {
				t.Errorf("entries[%d].Value has spare capacity %d: appending to it would overwrite the next", i, cap(e.Value)-len(e.Value))
			}
		}
		s.release()
	}
}

// Input that encoding/json alone would change silently is refused.
func TestDecodeAppendRefusesSilentChanges(t *testing.T) {
	tests := []struct {
		body string
		code string // "" for accepted
	}{
		{"{\"entries\":[{\"key\":\"\xff\xfe\",\"value\":1}]}", "invalid_key"},
		{"{\"entries\":[{\"key\":\"ok\",\"value\":1},{\"key\":\"a\xc3\",\"value\":1}]}", "invalid_key"},
		{`{"entries":[{"key":"a\ud800","value":1}]}`, "invalid_key"},
		{`{"entries":[{"key":"\udc00x","value":1}]}`, "invalid_key"},
		{`{"entries":[{"key":"\ud800\u0041","value":1}]}`, "invalid_key"},
		{`{"entries":[{"key":"k","value":1}],"entries":[{"key":"j","value":2}]}`, "malformed"},
		{`{"Entries":[{"key":"k","value":1}],"entries":[]}`, "malformed"},
		{`{"entries":[{"key":"k","key":"j","value":1}]}`, "malformed"},
		{`{"entries":[{"key":"k","KEY":"j","value":1}]}`, "malformed"},
		{`{"entries":[{"key":"k","value":1,"value":2}]}`, "malformed"},
		{`{"entries":[{"key":"a","\u212aey":"b","value":1}]}`, "malformed"},
		{`{"entries":[{"key":"ok","value":1},{"value":1,"key":"k","value":2}]}`, "malformed"},
		// Accepted: valid escapes, U+FFFD itself, values stored as sent.
		{`{"entries":[{"key":"\ud83d\ude00","value":1}]}`, ""},
		{`{"entries":[{"key":"\\ud800","value":1}]}`, ""},
		{"{\"entries\":[{\"key\":\"\xef\xbf\xbd\",\"value\":1}]}", ""},
		{`{"entries":[{"key":"k","value":{"a":1,"a":2}}]}`, ""},
	}
	a := &API{cfg: DefaultConfig()}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/v1/tenants/t/entries", strings.NewReader(tt.body))
		entries, status, code, msg := a.decodeAppend(r)
		switch {
		case tt.code == "" && status != 0:
			t.Errorf("%q: refused %d %s %q", tt.body, status, code, msg)
		case tt.code != "" && (status != http.StatusBadRequest || code != tt.code || entries != nil):
			t.Errorf("%q: got %d %q %q, want 400 %q", tt.body, status, code, msg, tt.code)
		}
	}
}

func FuzzDecodeAppend(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, cfg := range decodeTestConfigs() {
			checkDecode(t, cfg, body)
		}
		checkNothingChanged(t, body)
	})
}

// checkNothingChanged: whatever decodeAppend accepts it stores as sent.
// Every key is valid UTF-8, and the request and each entry name every
// member once, which a walk over the body's tokens confirms on its own.
func checkNothingChanged(t *testing.T, body []byte) {
	a := &API{cfg: DefaultConfig()}
	r := httptest.NewRequest(http.MethodPost, "/v1/tenants/t/entries", bytes.NewReader(body))
	entries, status, _, _ := a.decodeAppend(r)
	if status != 0 {
		return
	}
	for i, e := range entries {
		if !utf8.ValidString(e.Key) {
			t.Fatalf("body %q: entries[%d].key %q accepted but not valid UTF-8", body, i, e.Key)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := walkMembers(dec, 0); err != nil {
		t.Fatalf("body %q: accepted, but %v", body, err)
	}
}

// walkMembers reads one value from dec and fails on a member named twice
// (as encoding/json matches names: strings.EqualFold) in an object at
// depth 0 (the request) or 2 (an entry).
func walkMembers(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return nil // the decoder refused it; decodeAppend's business
	}
	switch tok {
	case json.Delim('{'):
		var names []string
		for dec.More() {
			tok, err := dec.Token()
			name, ok := tok.(string)
			if err != nil || !ok {
				return nil
			}
			for _, n := range names {
				if (depth == 0 || depth == 2) && strings.EqualFold(n, name) {
					return fmt.Errorf("member %q appears twice", name)
				}
			}
			names = append(names, name)
			if err := walkMembers(dec, depth+1); err != nil {
				return err
			}
		}
		dec.Token()
	case json.Delim('['):
		for dec.More() {
			if err := walkMembers(dec, depth+1); err != nil {
				return err
			}
		}
		dec.Token()
	}
	return nil
}

// The hand-written append response is what encoding it would give.
func TestWriteAppendResponse(t *testing.T) {
	for _, res := range []node.AppendResult{{}, {FirstPosition: 1, LastPosition: 3, CommitNumber: 1}, {FirstPosition: math.MaxUint64, LastPosition: math.MaxUint64, CommitNumber: math.MaxUint64}} {
		got := httptest.NewRecorder()
		writeAppendResponse(got, res)
		want := httptest.NewRecorder()
		writeJSON(want, http.StatusOK, appendResponse{res.FirstPosition, res.LastPosition, res.CommitNumber})
		if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
			t.Errorf("got %d %v %q, want %d %v %q", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	}
}

func TestHasSpecial(t *testing.T) {
	for c := range 256 {
		want := c < 0x20 || c == '"' || c == '\\'
		for pos := range 8 {
			var word [8]byte
			for i := range word {
				word[i] = 'a'
			}
			word[pos] = byte(c)
			if got := hasSpecial(binary.LittleEndian.Uint64(word[:])); got != want {
				t.Fatalf("byte %#x at %d: hasSpecial = %v", c, pos, got)
			}
			for i := range word { // neighbours that borrow or carry
				if i != pos {
					word[i] = 0xff
				}
			}
			if got := hasSpecial(binary.LittleEndian.Uint64(word[:])); got != want {
				t.Fatalf("byte %#x at %d among 0xff: hasSpecial = %v", c, pos, got)
			}
		}
	}
}
