package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kmb-db/kmb/internal/fuzzseed"
	kmblog "github.com/kmb-db/kmb/store/log"
)

var update = flag.Bool("update", false, "rewrite golden files and fuzz seed corpora in testdata")

// state is a checkpoint's content, as a Sink records it.
type state struct {
	Header  Header
	Tenants []tenantState
	Clients []Client
}

type tenantState struct {
	ID   string
	Keys []keyState
	Ops  []OpRef
}

type keyState struct {
	Key      string
	Value    string
	Position uint64
}

func (s *state) Begin(h Header) error { s.Header = h; return nil }
func (s *state) Tenant(id string) error {
	s.Tenants = append(s.Tenants, tenantState{ID: id})
	return nil
}
func (s *state) Key(k string, v []byte, pos uint64) error {
	t := &s.Tenants[len(s.Tenants)-1]
	t.Keys = append(t.Keys, keyState{k, string(v), pos})
	return nil
}
func (s *state) Op(r OpRef) error {
	t := &s.Tenants[len(s.Tenants)-1]
	t.Ops = append(t.Ops, r)
	return nil
}
func (s *state) Client(c Client) error { s.Clients = append(s.Clients, c); return nil }

// write encodes s.
func (s *state) write(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewWriter(&b, s.Header)
	for _, tn := range s.Tenants {
		must(t, w.Tenant(tn.ID))
		for _, k := range tn.Keys {
			must(t, w.Key(k.Key, []byte(k.Value), k.Position))
		}
		for _, r := range tn.Ops {
			must(t, w.Op(r))
		}
	}
	for _, c := range s.Clients {
		must(t, w.Client(c))
	}
	must(t, w.Close())
	return b.Bytes()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func goldenState() *state {
	return &state{
		Header: Header{Op: 7, Position: 12, Chain: kmblog.Chain{1, 2, 3}, Timestamp: 1_764_000_000_000_000_000},
		Tenants: []tenantState{
			{ID: "acme", Keys: []keyState{{"user-1", `{"name":"Ada"}`, 1}, {"user-2", "42", 11}},
				Ops: []OpRef{{Op: 1, FirstPosition: 1, Count: 2}, {Op: 6, FirstPosition: 11, Count: 1}}},
			{ID: "globex", Keys: []keyState{{"k", `"v"`, 12}}, Ops: []OpRef{{Op: 7, FirstPosition: 12, Count: 1}}},
		},
		Clients: []Client{{ID: 9, Request: 3, FirstPosition: 11, LastPosition: 11, Op: 6}},
	}
}

// bigState has enough keys to fill several blocks.
func bigState(keys int) *state {
	s := &state{Header: Header{Op: uint64(keys), Position: uint64(keys)}}
	for tn := range 3 {
		ts := tenantState{ID: fmt.Sprintf("tenant-%d", tn)}
		for i := range keys / 3 {
			ts.Keys = append(ts.Keys, keyState{fmt.Sprintf("k%05d", i), strings.Repeat("v", i%300), uint64(i + 1)})
			ts.Ops = append(ts.Ops, OpRef{Op: uint64(3*i + tn + 1), FirstPosition: uint64(3*i + tn + 1), Count: 1})
		}
		s.Tenants = append(s.Tenants, ts)
	}
	for i := range 5000 {
		s.Clients = append(s.Clients, Client{ID: uint64(i + 1), Request: 7, FirstPosition: 1, LastPosition: 2, Op: 3})
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	for name, s := range map[string]*state{"golden": goldenState(), "big": bigState(30000), "empty": {}} {
		t.Run(name, func(t *testing.T) {
			b := s.write(t)
			var got state
			h, tot, err := Read(bytes.NewReader(b), &got)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, s.Header) {
				t.Fatalf("header %+v, want %+v", h, s.Header)
			}
			want := *s
			if len(want.Tenants) == 0 {
				want.Tenants = nil
			}
			if !reflect.DeepEqual(&got, &want) {
				t.Fatal("decoded state differs")
			}
			if tot.Tenants != uint64(len(s.Tenants)) || tot.Clients != uint64(len(s.Clients)) {
				t.Fatalf("totals %+v", tot)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	s := goldenState()
	s.Header.Epoch, s.Header.Members = 3, []Member{{1, "10.0.0.1:7001"}, {2, "10.0.0.2:7001"}, {4, "kmb-4:7001"}}
	fuzzseed.Golden(t, *update, "checkpoint_v2.golden", s.write(t))
	var got state
	if _, _, err := Read(bytes.NewReader(s.write(t)), &got); err != nil || !reflect.DeepEqual(&got, s) {
		t.Fatalf("read back %+v, %v; want %+v", got.Header, err, s.Header)
	}
}

// A version 1 checkpoint (before the configuration was recorded) is still
// read: its state, with epoch 0 and no members.
func TestReadVersion1(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "checkpoint_v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	var got state
	if _, _, err := Read(bytes.NewReader(b), &got); err != nil {
		t.Fatal(err)
	}
	if want := goldenState(); !reflect.DeepEqual(&got, want) {
		t.Fatalf("version 1 read as %+v, want %+v", got, want)
	}
}

// Anything but a whole, untouched checkpoint is refused, and wraps
// ErrCorrupt.
func TestReadRejects(t *testing.T) {
	good := bigState(3000).write(t)
	blocks := blockOffsets(good)
	cases := map[string][]byte{
		"empty":          nil,
		"trailing bytes": append(bytes.Clone(good), 0),
		"second copy":    append(bytes.Clone(good), good...),
	}
	for i, off := range blocks[1:] {
		cases[fmt.Sprintf("cut before block %d", i+1)] = good[:off]
	}
	cases["cut inside the last block"] = good[:len(good)-3]
	for _, at := range []int{0, 5, 9, 20, len(good) / 2, len(good) - 1} {
		b := bytes.Clone(good)
		b[at] ^= 0x08
		cases[fmt.Sprintf("bit flipped at %d", at)] = b
	}
	// Two blocks swapped: each checks out alone.
	b1, b2, b3 := blocks[2], blocks[3], blocks[4]
	swapped := append(append(append(bytes.Clone(good[:b1]), good[b2:b3]...), good[b1:b2]...), good[b3:]...)
	cases["blocks swapped"] = swapped
	// A block dropped.
	cases["block dropped"] = append(bytes.Clone(good[:b1]), good[b2:]...)
	for name, b := range cases {
		if _, _, err := Read(bytes.NewReader(b), &state{}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// blockOffsets returns where each block of a checkpoint starts.
func blockOffsets(b []byte) []int {
	var out []int
	for off := 0; off+8 <= len(b); {
		out = append(out, off)
		n := int(b[off]) | int(b[off+1])<<8 | int(b[off+2])<<16 | int(b[off+3])<<24
		off += 8 + n
	}
	return out
}

// The writer refuses calls out of the format's order.
func TestWriterOrder(t *testing.T) {
	for name, f := range map[string]func(w *Writer) error{
		"key before a tenant":  func(w *Writer) error { return w.Key("k", nil, 1) },
		"op before a tenant":   func(w *Writer) error { return w.Op(OpRef{1, 1, 1}) },
		"tenant after clients": func(w *Writer) error { w.Client(Client{ID: 1}); return w.Tenant("t") },
		"ops out of order": func(w *Writer) error {
			w.Tenant("t")
			w.Op(OpRef{5, 5, 1})
			return w.Op(OpRef{4, 6, 1})
		},
	} {
		if err := f(NewWriter(&bytes.Buffer{}, Header{})); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Save keeps the newest two; Load uses the newest valid one that its
// caller accepts, and says why it passed over the others.
func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	save := func(op uint64) {
		s := bigState(300)
		s.Header.Op = op
		_, err := Save(context.Background(), dir, s.Header, func(w *Writer) error {
			for _, tn := range s.Tenants {
				w.Tenant(tn.ID)
				for _, k := range tn.Keys {
					w.Key(k.Key, []byte(k.Value), k.Position)
				}
			}
			return nil
		})
		must(t, err)
	}
	for _, op := range []uint64{10, 20, 30} {
		save(op)
	}
	files, _ := List(dir)
	if len(files) != 2 || files[0].Op != 30 || files[1].Op != 20 {
		t.Fatalf("files %+v", files)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	load := func(accept func(Header) error) (Loaded, error) {
		return Load(dir, logger, accept, func() Sink { return &state{} })
	}
	if l, err := load(nil); err != nil || l.Header.Op != 30 || l.Totals.Keys != 300 || l.Bytes == 0 {
		t.Fatalf("load = %+v, %v", l, err)
	}
	// A corrupt newest one: the one before it, with a WARN.
	b, _ := os.ReadFile(files[0].Path)
	b[len(b)/2] ^= 1
	os.WriteFile(files[0].Path, b, 0o644)
	if l, err := load(nil); err != nil || l.Header.Op != 20 {
		t.Fatalf("load = %+v, %v", l, err)
	}
	if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), "00000000000000000030.ckpt") {
		t.Fatalf("no WARN naming the corrupt checkpoint: %s", logs.String())
	}
	// Refused by the caller: none.
	if _, err := load(func(h Header) error { return errors.New("ahead of the log") }); !errors.Is(err, ErrNone) {
		t.Fatalf("load = %v", err)
	}
	// A cancelled save leaves nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := bigState(30000)
	if _, err := Save(ctx, dir, Header{Op: 99}, func(w *Writer) error {
		w.Tenant("t")
		for _, k := range s.Tenants[0].Keys {
			w.Key(k.Key, []byte(k.Value), k.Position)
		}
		return nil
	}); err == nil {
		t.Fatal("cancelled save succeeded")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*99*")); len(left) != 0 {
		t.Fatalf("left %v", left)
	}
}

func FuzzRead(f *testing.F) {
	good := goldenState().write(f)
	f.Add(good)
	f.Add(good[:len(good)-4])
	f.Add(bigState(600).write(f))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s state
		h, _, err := Read(bytes.NewReader(b), &s)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// What is accepted re-encodes to exactly the same bytes.
		s.Header = h
		if got := s.write(t); !bytes.Equal(got, b) {
			t.Fatal("an accepted checkpoint does not re-encode to itself")
		}
	})
}
