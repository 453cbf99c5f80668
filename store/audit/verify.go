package audit

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// ErrNotExport is wrapped by Verify's errors for input that is not an
// export at all (as opposed to an export that fails its checks).
var ErrNotExport = errors.New("audit: not an audit export")

// Problem is the first thing wrong with a file.
type Problem struct {
	Record   uint64 // 1-based index of the record at fault; 0 for the file as a whole
	Op       uint64
	Position uint64
	What     string
}

func (p *Problem) String() string {
	if p.Record == 0 {
		return p.What
	}
	return fmt.Sprintf("record %d (op %d, position %d): %s", p.Record, p.Op, p.Position, p.What)
}

// Report is what Verify found.
type Report struct {
	Format                 Format
	NodeID                 uint64
	Cluster                string
	Range                  Range
	Filtered               bool // one tenant's ops only
	Records, Ops           uint64
	FirstOp, LastOp        uint64
	ChainBefore, ChainLast kmblog.Chain
	// OpChains holds every op's number and chain hash, for checking a
	// tenant's export against the live cluster; only when Filtered.
	OpChains map[uint64]kmblog.Chain
	Problem  *Problem // nil: the file is intact
}

// OK reports whether the file passed every check.
func (r *Report) OK() bool { return r.Problem == nil }

// maxLine bounds one line of an ndjson or csv file: the largest record
// (16 MiB of op) and its quoting.
const maxLine = 40 << 20

// Verify reads an export from rd and checks it: every op against its
// chain hash; in an export of every tenant, the chain from the hash before
// the first op through every op to the last; and the trailer's counts.
// The returned error is for input that could not be read as an export
// (wrapping ErrNotExport) or an I/O failure; a file that reads but fails a
// check comes back with Report.Problem set.
func Verify(rd io.Reader) (Report, error) {
	br := bufio.NewReaderSize(rd, 256<<10)
	first, err := firstByte(br)
	if err != nil {
		return Report{}, err
	}
	c := &checker{}
	switch first {
	case '{':
		peek, _ := br.Peek(32)
		switch {
		case bytes.HasPrefix(peek, []byte(`{"type":"header"`)):
			c.rep.Format = NDJSON
			err = c.ndjson(br)
		case asWritten(br):
			c.rep.Format = JSON
			err = c.jsonLines(br)
		default:
			c.rep.Format = JSON
			err = c.json(br)
		}
	case '#':
		c.rep.Format = CSV
		err = c.csv(br)
	default:
		return Report{}, fmt.Errorf("%w: starts with %q", ErrNotExport, first)
	}
	if errors.Is(err, errStopped) {
		err = nil
	}
	return c.rep, err
}

// errStopped ends reading at the first problem.
var errStopped = errors.New("stopped")

func firstByte(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return 0, fmt.Errorf("%w: empty", ErrNotExport)
		}
		if err != nil {
			return 0, err
		}
		if b != ' ' && b != '\n' && b != '\r' && b != '\t' {
			return b, br.UnreadByte()
		}
	}
}

// record is one record as read from any format.
type record struct {
	position, op, view  uint64
	kind                kmblog.Kind
	tenant, key         string
	value               []byte
	hasEntry            bool
	timestamp           int64
	principal           string
	clientID, requestID uint64
	chain, prev         kmblog.Chain
}

// checker checks records as they come, keeping one op.
type checker struct {
	rep     Report
	header  bool
	trailer bool
	records uint64

	cur      *kmblog.Op // the op being read; nil before the first
	curFirst record     // its first record, whose op-level fields the others repeat
	curIndex uint64     // the record index of curFirst
	last     uint64     // the last finished op
	lastCh   kmblog.Chain
	chainer  kmblog.Chainer
}

func (c *checker) fail(rec uint64, r *record, format string, args ...any) error {
	p := &Problem{Record: rec, What: fmt.Sprintf(format, args...)}
	if r != nil {
		p.Op, p.Position = r.op, r.position
	}
	c.rep.Problem = p
	return errStopped
}

func (c *checker) setHeader(version int, nodeID uint64, cluster, start, end, tenant string, firstOp uint64, chainBefore string) error {
	if version != Version {
		return fmt.Errorf("%w: format version %d, this kmbd reads %d", ErrNotExport, version, Version)
	}
	c.header = true
	c.rep.NodeID, c.rep.Cluster, c.rep.FirstOp = nodeID, cluster, firstOp
	var err error
	if c.rep.Range.Start, err = time.Parse(time.RFC3339Nano, start); err != nil {
		return fmt.Errorf("%w: range start %q", ErrNotExport, start)
	}
	endT, err := time.Parse(time.RFC3339Nano, end)
	if err != nil {
		return fmt.Errorf("%w: range end %q", ErrNotExport, end)
	}
	c.rep.Range.End, c.rep.Range.Tenant = endT.Add(time.Nanosecond), tenant
	c.rep.Filtered = tenant != ""
	if c.rep.Filtered {
		c.rep.OpChains = map[uint64]kmblog.Chain{}
	}
	if c.rep.ChainBefore, err = parseChain(chainBefore); err != nil {
		return fmt.Errorf("%w: chain_before: %v", ErrNotExport, err)
	}
	c.lastCh = c.rep.ChainBefore
	if firstOp > 0 {
		c.last = firstOp - 1
	}
	return nil
}

func parseChain(s string) (kmblog.Chain, error) {
	var c kmblog.Chain
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(c) {
		return c, fmt.Errorf("chain hash %q is not %d hex bytes", s, len(c))
	}
	copy(c[:], b)
	return c, nil
}

// add checks one record.
func (c *checker) add(r *record) error {
	c.records++
	n := c.records
	if !c.header {
		return fmt.Errorf("%w: a record before the header", ErrNotExport)
	}
	if c.trailer {
		return c.fail(n, r, "record after the trailer: inserted")
	}
	if c.rep.Filtered && (r.kind != kmblog.KindData || r.tenant != c.rep.Range.Tenant) {
		return c.fail(n, r, "record of tenant %q in an export of tenant %q: inserted", r.tenant, c.rep.Range.Tenant)
	}
	if c.cur != nil && r.op == c.cur.Op {
		f := &c.curFirst
		if r.view != f.view || r.kind != f.kind || r.tenant != f.tenant || r.timestamp != f.timestamp || r.principal != f.principal ||
			r.clientID != f.clientID || r.requestID != f.requestID || r.chain != f.chain || r.prev != f.prev {
			return c.fail(n, r, "its op's fields differ from the op's first record (record %d): altered", c.curIndex)
		}
		if !r.hasEntry || !f.hasEntry {
			return c.fail(n, r, "a second record of an op without entries: inserted")
		}
		if want := c.cur.FirstPosition + uint64(len(c.cur.Entries)); r.position != want {
			return c.fail(n, r, "position %d, the op's next entry is at %d: a record was dropped, inserted or reordered", r.position, want)
		}
		c.cur.Entries = append(c.cur.Entries, kmblog.Entry{Key: r.key, Value: r.value})
		return nil
	}
	if err := c.finishOp(); err != nil {
		return err
	}
	switch {
	case r.op <= c.last:
		return c.fail(n, r, "op %d after op %d: reordered or inserted", r.op, c.last)
	case !c.rep.Filtered && r.op != c.last+1:
		return c.fail(n, r, "op %d after op %d: ops %d..%d were dropped", r.op, c.last, c.last+1, r.op-1)
	case !c.rep.Filtered && r.prev != c.lastCh:
		return c.fail(n, r, "its previous chain hash is not the chain hash of op %d: the log was altered before it", c.last)
	}
	op := &kmblog.Op{Op: r.op, View: r.view, Timestamp: r.timestamp, Kind: r.kind, Tenant: r.tenant,
		FirstPosition: r.position, ClientID: r.clientID, RequestID: r.requestID, Principal: r.principal}
	if r.hasEntry {
		op.Entries = []kmblog.Entry{{Key: r.key, Value: r.value}}
	}
	c.cur, c.curFirst, c.curIndex = op, *r, n
	return nil
}

// finishOp checks the op read so far against its chain hash.
func (c *checker) finishOp() error {
	if c.cur == nil {
		return nil
	}
	op, f := c.cur, &c.curFirst
	if got := c.chainer.Op(f.prev, op); got != f.chain {
		return c.fail(c.curIndex, f, "op %d does not match its chain hash: one of its %d records was altered, or a record of it dropped or inserted", op.Op, max(1, len(op.Entries)))
	}
	if c.rep.Ops == 0 {
		c.rep.FirstOp = op.Op
	}
	c.rep.Ops++
	c.rep.Records += uint64(max(1, len(op.Entries)))
	c.rep.LastOp, c.rep.ChainLast = op.Op, f.chain
	if c.rep.OpChains != nil {
		c.rep.OpChains[op.Op] = f.chain
	}
	c.last, c.lastCh = op.Op, f.chain
	c.cur = nil
	return nil
}

// end checks the trailer against what was read.
func (c *checker) end(lastOp uint64, chainLast string, records, ops uint64) error {
	if err := c.finishOp(); err != nil {
		return err
	}
	c.trailer = true
	cl, err := parseChain(chainLast)
	if err != nil {
		return c.fail(0, nil, "trailer: %v", err)
	}
	switch {
	case records != c.rep.Records || ops != c.rep.Ops:
		return c.fail(0, nil, "the trailer counts %d records in %d ops, the file holds %d in %d: records were dropped or inserted", records, ops, c.rep.Records, c.rep.Ops)
	case ops > 0 && (lastOp != c.rep.LastOp || cl != c.rep.ChainLast):
		return c.fail(0, nil, "the trailer ends at op %d, the records at op %d (or with another chain hash): the end was cut or altered", lastOp, c.rep.LastOp)
	}
	return nil
}

// done is called at the end of the input.
func (c *checker) done() error {
	if c.rep.Problem != nil {
		return nil
	}
	if !c.header {
		return fmt.Errorf("%w: no header", ErrNotExport)
	}
	if !c.trailer {
		if err := c.finishOp(); err != nil {
			return err
		}
		return c.fail(0, nil, "the file ends before its trailer: its end was cut off")
	}
	return nil
}

// jsonRecord is a record as the json and ndjson formats hold it.
type jsonRecord struct {
	Type      string          `json:"type"`
	Position  uint64          `json:"position"`
	Op        uint64          `json:"op"`
	View      uint64          `json:"view"`
	Kind      string          `json:"kind"`
	Tenant    string          `json:"tenant"`
	Key       *string         `json:"key"`
	Value     json.RawMessage `json:"value"`
	Timestamp string          `json:"timestamp"`
	Principal string          `json:"principal"`
	ClientID  uint64          `json:"client_id"`
	RequestID uint64          `json:"request_id"`
	Chain     string          `json:"chain"`
	PrevChain string          `json:"prev_chain"`
}

type jsonHeader struct {
	Type        string `json:"type"`
	Version     int    `json:"kmb_audit_export"`
	NodeID      uint64 `json:"node_id"`
	Cluster     string `json:"cluster"`
	Range       struct{ Start, End, Tenant string }
	FirstOp     uint64 `json:"first_op"`
	ChainBefore string `json:"chain_before"`
}

type jsonTrailer struct {
	Type      string `json:"type"`
	LastOp    uint64 `json:"last_op"`
	ChainLast string `json:"chain_last"`
	Counts    struct{ Records, Ops uint64 }
}

// convert turns a json record into a record.
func (c *checker) convert(j *jsonRecord) (*record, error) {
	r := &record{position: j.Position, op: j.Op, view: j.View, tenant: j.Tenant, principal: j.Principal,
		clientID: j.ClientID, requestID: j.RequestID, hasEntry: j.Key != nil}
	if j.Key != nil {
		r.key = *j.Key
		r.value = bytes.Clone(j.Value) // j.Value may alias a reused line buffer
		// Stored values are compact JSON; a file reformatted by some tool
		// spread them out, which changes no byte that matters.
		if bytes.ContainsAny(r.value, " \t\r\n") {
			var compact bytes.Buffer
			if json.Compact(&compact, r.value) == nil {
				r.value = compact.Bytes()
			}
		}
	}
	return r, c.fields(r, j.Kind, j.Timestamp, j.Chain, j.PrevChain)
}

// fields parses the fields every format holds as text.
func (c *checker) fields(r *record, kind, ts, chain, prev string) error {
	k, ok := kindOf(kind)
	if !ok {
		return c.fail(c.records+1, r, "unknown kind %q: altered", kind)
	}
	r.kind = k
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return c.fail(c.records+1, r, "timestamp %q: altered", ts)
	}
	r.timestamp = t.UnixNano()
	if r.chain, err = parseChain(chain); err != nil {
		return c.fail(c.records+1, r, "%v: altered", err)
	}
	if r.prev, err = parseChain(prev); err != nil {
		return c.fail(c.records+1, r, "previous %v: altered", err)
	}
	if r.hasEntry == (k == kmblog.KindMarker) {
		return c.fail(c.records+1, r, "a %s op record with entry=%v: altered", kind, r.hasEntry)
	}
	return nil
}

func (c *checker) json(br *bufio.Reader) error {
	dec := json.NewDecoder(br)
	dec.UseNumber()
	expect := func(want json.Delim) error {
		t, err := dec.Token()
		if d, ok := t.(json.Delim); err != nil || !ok || d != want {
			return fmt.Errorf("%w: want %q", ErrNotExport, want)
		}
		return nil
	}
	if err := expect('{'); err != nil {
		return err
	}
	var h jsonHeader
	var t jsonTrailer
	sawRecords := false
	for dec.More() {
		t0, err := dec.Token()
		if err != nil {
			if c.header {
				return c.done() // cut off after the records began
			}
			return fmt.Errorf("%w: %v", ErrNotExport, err)
		}
		key, _ := t0.(string)
		switch key {
		case "records":
			if err := c.setHeader(h.Version, h.NodeID, h.Cluster, h.Range.Start, h.Range.End, h.Range.Tenant, h.FirstOp, h.ChainBefore); err != nil {
				return err
			}
			if err := expect('['); err != nil {
				return err
			}
			for dec.More() {
				var raw json.RawMessage
				if err := dec.Decode(&raw); err != nil {
					if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
						return c.done()
					}
					return c.fail(c.records+1, nil, "not a record: %v", err)
				}
				var j jsonRecord
				if !fastRecord(raw, &j) {
					if err := json.Unmarshal(raw, &j); err != nil {
						return c.fail(c.records+1, nil, "not a record: %v", err)
					}
				}
				r, err := c.convert(&j)
				if err == nil {
					err = c.add(r)
				}
				if err != nil {
					return err
				}
			}
			if err := expect(']'); err != nil {
				return c.done()
			}
			sawRecords = true
		case "kmb_audit_export":
			err = dec.Decode(&h.Version)
		case "node_id":
			err = dec.Decode(&h.NodeID)
		case "cluster":
			err = dec.Decode(&h.Cluster)
		case "range":
			err = dec.Decode(&h.Range)
		case "first_op":
			err = dec.Decode(&h.FirstOp)
		case "chain_before":
			err = dec.Decode(&h.ChainBefore)
		case "last_op":
			err = dec.Decode(&t.LastOp)
		case "chain_last":
			err = dec.Decode(&t.ChainLast)
		case "counts":
			err = dec.Decode(&t.Counts)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return fmt.Errorf("%w: field %s: %v", ErrNotExport, key, err)
		}
	}
	if !sawRecords {
		return fmt.Errorf("%w: no records array", ErrNotExport)
	}
	if err := expect('}'); err != nil {
		return c.done()
	}
	if t.ChainLast == "" {
		return c.done()
	}
	if err := c.end(t.LastOp, t.ChainLast, t.Counts.Records, t.Counts.Ops); err != nil {
		return err
	}
	return c.done()
}

// recordsOpen ends the first line of a json export as Export writes it,
// one record a line.
var recordsOpen = []byte(`"records":[`)

// asWritten reports whether a json export is laid out as Export writes it
// (the header on the first line, then a record a line), which jsonLines
// reads much faster than a JSON decoder. A file reformatted by some tool
// is not, and takes the decoder.
func asWritten(br *bufio.Reader) bool {
	peek, _ := br.Peek(4096)
	line, _, ok := bytes.Cut(peek, []byte("\n"))
	return ok && bytes.HasSuffix(line, recordsOpen)
}

// jsonLines reads a json export laid out as Export writes it.
func (c *checker) jsonLines(br *bufio.Reader) error {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	if !sc.Scan() {
		return fmt.Errorf("%w: no header", ErrNotExport)
	}
	var h jsonHeader
	if err := json.Unmarshal(append(bytes.Clone(sc.Bytes()), "]}"...), &h); err != nil {
		return fmt.Errorf("%w: header: %v", ErrNotExport, err)
	}
	if err := c.setHeader(h.Version, h.NodeID, h.Cluster, h.Range.Start, h.Range.End, h.Range.Tenant, h.FirstOp, h.ChainBefore); err != nil {
		return err
	}
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("],")) {
			var t jsonTrailer
			if err := json.Unmarshal(append([]byte("{"), line[2:]...), &t); err != nil {
				return c.fail(0, nil, "the trailer does not parse: %v", err)
			}
			if err := c.end(t.LastOp, t.ChainLast, t.Counts.Records, t.Counts.Ops); err != nil {
				return err
			}
			if sc.Scan() && len(bytes.TrimSpace(sc.Bytes())) > 0 {
				return c.fail(0, nil, "data after the trailer: inserted")
			}
			return c.done()
		}
		line = bytes.TrimSuffix(line, []byte(","))
		var j jsonRecord
		if !fastRecord(line, &j) {
			if err := json.Unmarshal(line, &j); err != nil {
				return c.fail(c.records+1, nil, "not a record on its line: %v", err)
			}
		}
		r, err := c.convert(&j)
		if err == nil {
			err = c.add(r)
		}
		if err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return c.done()
}

func (c *checker) ndjson(br *bufio.Reader) error {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var j jsonRecord
		kind := &j
		if !fastRecord(line, &j) {
			// Not a record in the shape Export writes: a header, a
			// trailer, or something else.
			var typ struct{ Type string }
			if err := json.Unmarshal(line, &typ); err != nil {
				if !c.header {
					return fmt.Errorf("%w: %v", ErrNotExport, err)
				}
				return c.fail(c.records+1, nil, "not a record: %v", err)
			}
			j.Type = typ.Type
			if typ.Type == "record" {
				if err := json.Unmarshal(line, &j); err != nil {
					return c.fail(c.records+1, nil, "not a record: %v", err)
				}
			}
		}
		var err error
		switch kind.Type {
		case "header":
			var h jsonHeader
			if err = json.Unmarshal(line, &h); err == nil {
				err = c.setHeader(h.Version, h.NodeID, h.Cluster, h.Range.Start, h.Range.End, h.Range.Tenant, h.FirstOp, h.ChainBefore)
			}
		case "record":
			var r *record
			if r, err = c.convert(&j); err == nil {
				err = c.add(r)
			}
		case "trailer":
			var t jsonTrailer
			if err = json.Unmarshal(line, &t); err == nil {
				err = c.end(t.LastOp, t.ChainLast, t.Counts.Records, t.Counts.Ops)
			}
		default:
			return c.fail(c.records+1, nil, "line of unknown type %q: inserted", kind.Type)
		}
		if err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return c.done()
}

func (c *checker) csv(br *bufio.Reader) error {
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	meta := map[string]string{}
	columns := false
	for {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !c.header {
				return fmt.Errorf("%w: %v", ErrNotExport, err)
			}
			return c.fail(c.records+1, nil, "not a csv record: %v", err)
		}
		if len(row) == 1 && strings.HasPrefix(row[0], "# ") {
			k, v, _ := strings.Cut(strings.TrimPrefix(row[0], "# "), ": ")
			meta[k] = v
			if k == "ops" { // the trailer's last line
				if err := c.csvTrailer(meta); err != nil {
					return err
				}
			}
			continue
		}
		if !columns {
			if strings.Join(row, ",") != strings.Join(csvColumns, ",") {
				return fmt.Errorf("%w: csv columns %v", ErrNotExport, row)
			}
			columns = true
			version, _ := strconv.Atoi(meta["kmb_audit_export"])
			nodeID, _ := strconv.ParseUint(meta["node_id"], 10, 64)
			firstOp, _ := strconv.ParseUint(meta["first_op"], 10, 64)
			if err := c.setHeader(version, nodeID, meta["cluster"], meta["start"], meta["end"], meta["tenant"], firstOp, meta["chain_before"]); err != nil {
				return err
			}
			continue
		}
		if len(row) != len(csvColumns) {
			return c.fail(c.records+1, nil, "%d fields, want %d: altered", len(row), len(csvColumns))
		}
		r := &record{tenant: row[4], principal: row[8]}
		var perr error
		num := func(s string) uint64 {
			if s == "" {
				return 0
			}
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil && perr == nil {
				perr = err
			}
			return v
		}
		r.position, r.op, r.view = num(row[0]), num(row[1]), num(row[2])
		r.clientID, r.requestID = num(row[9]), num(row[10])
		if perr != nil {
			return c.fail(c.records+1, r, "a number field: %v: altered", perr)
		}
		r.hasEntry = row[3] != "marker"
		if r.hasEntry {
			r.key, r.value = row[5], []byte(row[6])
		}
		if err := c.fields(r, row[3], row[7], row[11], row[12]); err != nil {
			return err
		}
		if err := c.add(r); err != nil {
			return err
		}
	}
	return c.done()
}

func (c *checker) csvTrailer(meta map[string]string) error {
	num := func(k string) uint64 { v, _ := strconv.ParseUint(meta[k], 10, 64); return v }
	if _, ok := meta["chain_last"]; !ok {
		return c.fail(0, nil, "trailer without chain_last: altered")
	}
	return c.end(num("last_op"), meta["chain_last"], num("records"), num("ops"))
}
