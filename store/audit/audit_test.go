package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/fuzzseed"
	kmblog "github.com/kmb-db/kmb/store/log"
)

var update = flag.Bool("update", false, "rewrite golden files and fuzz seed corpora in testdata")

// base is the commit time of op 1 of testOps; op n is n seconds later.
var base = time.Date(2024, 3, 1, 23, 59, 50, 0, time.UTC)

// testOps is a log of n ops of every kind: data ops of two tenants with
// one to three entries (keys that need quoting among them), markers, an
// admin op, principals and client ids.
func testOps(n int) []*kmblog.Op {
	var ops []*kmblog.Op
	var prev kmblog.Chain
	pos := uint64(1)
	for i := 1; i <= n; i++ {
		op := &kmblog.Op{Op: uint64(i), View: uint64(i / 10), Timestamp: base.Add(time.Duration(i) * time.Second).UnixNano(), FirstPosition: pos}
		switch {
		case i%7 == 0:
			op.Kind = kmblog.KindMarker
		case i%11 == 0:
			op.Kind, op.Principal = kmblog.KindAdmin, "root"
			op.Entries = []kmblog.Entry{{Key: "token_reload", Value: []byte(`{"tokens":2}`)}}
		default:
			op.Tenant = []string{"acme", "globex"}[i%2]
			op.Principal = op.Tenant + "-writer"
			op.ClientID, op.RequestID = uint64(i%3), uint64(i)
			if op.ClientID == 0 {
				op.RequestID = 0
			}
			for j := 0; j <= i%3; j++ {
				key := fmt.Sprintf("k%d-%d", i, j)
				if i%5 == 0 {
					key = fmt.Sprintf(`k "%d", ünï`, i)
				}
				op.Entries = append(op.Entries, kmblog.Entry{Key: key, Value: fmt.Appendf(nil, `{"n":%d,"s":"a,b \"c\""}`, i*10+j)})
			}
		}
		op.Chain = kmblog.ChainHash(prev, op)
		prev, pos = op.Chain, op.LastPosition()+1
		ops = append(ops, op)
	}
	return ops
}

// sliceSource is a log held in memory.
type sliceSource []*kmblog.Op

func (s sliceSource) FirstOpAt(t int64) uint64 {
	for _, op := range s {
		if op.Timestamp >= t {
			return op.Op
		}
	}
	return uint64(len(s)) + 1
}

func (s sliceSource) Scan(from uint64, fn func(*kmblog.Op) error) error {
	for _, op := range s[min(from-1, uint64(len(s))):] {
		if err := fn(op); err != nil {
			return err
		}
	}
	return nil
}

func (s sliceSource) Chain(n uint64) (kmblog.Chain, error) {
	if n == 0 {
		return kmblog.Chain{}, nil
	}
	return s[n-1].Chain, nil
}

func export(t *testing.T, ops []*kmblog.Op, r Range, f Format) ([]byte, Summary) {
	t.Helper()
	var b bytes.Buffer
	sum, err := Export(context.Background(), &b, sliceSource(ops), r, f, Meta{NodeID: 2, Cluster: fmt.Sprintf("%x", ops[0].Chain[:])}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), sum
}

var formats = []Format{JSON, NDJSON, CSV}

func TestRoundTrip(t *testing.T) {
	ops := testOps(60)
	all := Range{Start: base, End: base.Add(time.Hour)}
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			b, sum := export(t, ops, all, f)
			rep, err := Verify(bytes.NewReader(b))
			if err != nil || !rep.OK() {
				t.Fatalf("Verify = %+v, %v\n%s", rep.Problem, err, b)
			}
			if rep.Format != f || rep.Ops != 60 || rep.Records != sum.Records || rep.FirstOp != 1 || rep.LastOp != 60 ||
				rep.ChainLast != ops[59].Chain || rep.ChainBefore != (kmblog.Chain{}) || rep.NodeID != 2 || rep.Filtered {
				t.Fatalf("report %+v, summary %+v", rep, sum)
			}
			if sum.Bytes != int64(len(b)) {
				t.Fatalf("summary counts %d bytes, wrote %d", sum.Bytes, len(b))
			}
			if f != JSON {
				return
			}
			// Reformatted by another tool, the file takes the decoder's
			// path, and still verifies; altered, it still fails.
			var indented bytes.Buffer
			if err := json.Indent(&indented, b, "", "    "); err != nil {
				t.Fatal(err)
			}
			if rep, err := Verify(bytes.NewReader(indented.Bytes())); err != nil || !rep.OK() || rep.Ops != 60 {
				t.Fatalf("reformatted export: %+v, %v", rep.Problem, err)
			}
			altered := strings.Replace(indented.String(), "a,b", "a,B", 1)
			if rep, err := Verify(strings.NewReader(altered)); err != nil || rep.OK() {
				t.Fatalf("altered reformatted export passed: %v", err)
			}
		})
	}
}

// TestRanges: days are inclusive UTC days, instants inclusive instants;
// the ops outside the range are left out, and the chain before the first
// op is that of the op before it.
func TestRanges(t *testing.T) {
	ops := testOps(60) // op 10 is committed at 2024-03-02T00:00:00Z
	for _, tt := range []struct {
		start, end  string
		tenant      string
		first, last uint64
		ops         uint64
	}{
		{"2024-03-01", "2024-03-01", "", 1, 9, 9},
		{"2024-03-02", "2024-03-02", "", 10, 60, 51},
		{"2024-03-01", "2024-03-02", "", 1, 60, 60},
		{"2024-03-02T00:00:05Z", "2024-03-02T00:00:07Z", "", 15, 17, 3},
		{"2024-03-02T00:00:05Z", "2024-03-02T00:00:07.5Z", "", 15, 17, 3},
		{"2024-03-03", "2024-03-31", "", 0, 0, 0},
		{"2024-03-01", "2024-03-02", "acme", 2, 60, 0},
	} {
		r, err := ParseRange(tt.start, tt.end)
		if err != nil {
			t.Fatal(err)
		}
		r.Tenant = tt.tenant
		b, sum := export(t, ops, r, NDJSON)
		rep, err := Verify(bytes.NewReader(b))
		if err != nil || !rep.OK() {
			t.Fatalf("%+v: Verify = %+v, %v", tt, rep.Problem, err)
		}
		if tt.tenant != "" {
			for op := range rep.OpChains {
				if o := ops[op-1]; o.Tenant != tt.tenant || o.Kind != kmblog.KindData {
					t.Fatalf("op %d of tenant %q in an export of %s", op, o.Tenant, tt.tenant)
				}
			}
			if !rep.Filtered || rep.Ops == 0 {
				t.Fatalf("tenant export: %+v", rep)
			}
			continue
		}
		if sum.Ops != tt.ops || (tt.ops > 0 && (sum.FirstOp != tt.first || sum.LastOp != tt.last)) {
			t.Fatalf("%s..%s: ops %d..%d (%d), want %d..%d (%d)", tt.start, tt.end, sum.FirstOp, sum.LastOp, sum.Ops, tt.first, tt.last, tt.ops)
		}
		if tt.first > 1 && sum.ChainBefore != ops[tt.first-2].Chain {
			t.Fatalf("chain before op %d is not op %d's", tt.first, tt.first-1)
		}
	}
	for _, bad := range [][2]string{{"2024-03-02", "2024-03-01"}, {"2024-3-1", "2024-03-02"}, {"2024-03-01", "tomorrow"}, {"2024-03-02T00:00:00Z", "2024-03-01T23:59:59Z"}} {
		if _, err := ParseRange(bad[0], bad[1]); err == nil {
			t.Errorf("ParseRange(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("format xml accepted")
	}
}

// TestTamperDetected alters an export the ways a forger or a bad disk
// would; Verify must name the first bad record or the file's end.
func TestTamperDetected(t *testing.T) {
	ops := testOps(40)
	all := Range{Start: base, End: base.Add(time.Hour)}
	for _, f := range formats {
		b, _ := export(t, ops, all, f)
		lines := strings.SplitAfter(string(b), "\n")
		// recordLines are the indexes of the lines holding records.
		var recs []int
		for i, l := range lines {
			if (f == CSV && l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "position,")) ||
				(f != CSV && strings.Contains(l, `"position":`)) {
				recs = append(recs, i)
			}
		}
		edit := func(fn func(ls []string) []string) string {
			return strings.Join(fn(append([]string(nil), lines...)), "")
		}
		// last record's line in JSON carries no trailing comma; keep the
		// commas right when records move.
		fix := func(ls []string) []string {
			if f != JSON {
				return ls
			}
			for k, i := range recs {
				if i >= len(ls) {
					break
				}
				l := strings.TrimSuffix(strings.TrimSuffix(ls[i], "\n"), ",")
				if k < len(recs)-1 {
					l += ","
				}
				ls[i] = l + "\n"
			}
			return ls
		}
		tests := []struct {
			name string
			file string
			want string
		}{
			{"value altered", edit(func(ls []string) []string {
				ls[recs[10]] = strings.Replace(ls[recs[10]], "a,b", "a,c", 1)
				return ls
			}), "does not match its chain hash"},
			{"principal altered", edit(func(ls []string) []string {
				ls[recs[3]] = strings.Replace(ls[recs[3]], "-writer", "-admin", 1)
				return ls
			}), "record "},
			{"record dropped", edit(func(ls []string) []string {
				return fix(append(ls[:recs[5]], ls[recs[5]+1:]...))
			}), "record "},
			{"record inserted", edit(func(ls []string) []string {
				dup := ls[recs[8]]
				out := append(append(ls[:recs[8]+1:recs[8]+1], dup), ls[recs[8]+1:]...)
				return fix(out)
			}), "record "},
			{"records reordered", edit(func(ls []string) []string {
				ls[recs[20]], ls[recs[30]] = ls[recs[30]], ls[recs[20]]
				return fix(ls)
			}), "record "},
			{"end cut off", edit(func(ls []string) []string { return ls[:recs[len(recs)-3]] }), "ends before its trailer"},
			{"trailer count altered", strings.Replace(string(b), fmt.Sprintf("%d", len(recs)), fmt.Sprintf("%d", len(recs)-1), 1), ""},
		}
		for _, tt := range tests {
			t.Run(string(f)+"/"+tt.name, func(t *testing.T) {
				rep, err := Verify(strings.NewReader(tt.file))
				if err != nil {
					if tt.name == "end cut off" && f == JSON {
						return // cut mid-object: not even JSON any more
					}
					t.Fatalf("Verify error %v", err)
				}
				if rep.OK() {
					t.Fatalf("tampered file verified:\n%s", tt.file)
				}
				if !strings.Contains(rep.Problem.String(), tt.want) {
					t.Fatalf("problem %q does not mention %q", rep.Problem, tt.want)
				}
			})
		}
	}
}

// TestGolden pins the formats.
func TestGolden(t *testing.T) {
	ops := testOps(12)
	r, _ := ParseRange("2024-03-01", "2024-03-02")
	for _, f := range formats {
		b, _ := export(t, ops, r, f)
		fuzzseed.Golden(t, *update, "export_v1."+string(f)+".golden", b)
	}
}

func TestFuzzSeedCorpus(t *testing.T) {
	ops := testOps(12)
	var seeds [][]byte
	for _, f := range formats {
		b, _ := export(t, ops, Range{Start: base, End: base.Add(time.Hour)}, f)
		seeds = append(seeds, b)
	}
	seeds = append(seeds, []byte("{}"), []byte("# kmb_audit_export: 1\n"), []byte(`{"type":"header","kmb_audit_export":1}`))
	fuzzseed.Check(t, *update, "FuzzVerify", fuzzseed.Numbered(seeds))
}

// FuzzVerify: Verify never panics, and a file it passes rebuilds ops
// whose chain hashes it checked.
// Its seed corpus, testdata/fuzz/FuzzVerify, is kept by TestFuzzSeedCorpus.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Verify(bytes.NewReader(b))
		if err == nil && rep.OK() && rep.Ops > 0 && rep.FirstOp > rep.LastOp {
			t.Fatalf("passed a file with ops %d..%d", rep.FirstOp, rep.LastOp)
		}
	})
}
