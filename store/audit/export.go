package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// Version is the format version of the files Export writes.
const Version = 1

// Format is a file format.
type Format string

// Formats.
const (
	JSON   Format = "json"
	NDJSON Format = "ndjson"
	CSV    Format = "csv"
)

// ParseFormat accepts json, ndjson and csv.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case JSON, NDJSON, CSV:
		return f, nil
	}
	return "", fmt.Errorf("format %q: accepted json, ndjson or csv", s)
}

// Range selects the ops committed in [Start, End) and, when Tenant is set,
// that tenant's only.
type Range struct {
	Start, End time.Time
	Tenant     string
}

// ParseRange parses the bounds of kmbd audit export: UTC days
// (2024-01-01), both inclusive, or RFC 3339 instants, both inclusive.
func ParseRange(start, end string) (Range, error) {
	var r Range
	var err error
	if r.Start, err = parseBound(start, false); err != nil {
		return r, fmt.Errorf("--start %q: %w", start, err)
	}
	if r.End, err = parseBound(end, true); err != nil {
		return r, fmt.Errorf("--end %q: %w", end, err)
	}
	if !r.End.After(r.Start) {
		return r, fmt.Errorf("--end %q is before --start %q", end, start)
	}
	return r, nil
}

// parseBound turns a day or an instant into a time; an end bound is made
// exclusive: the day after, or the instant plus a nanosecond.
func parseBound(s string, end bool) (time.Time, error) {
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("accepted a UTC day (2024-01-31) or an RFC 3339 time (2024-01-31T12:00:00Z)")
	}
	if end {
		t = t.Add(time.Nanosecond)
	}
	return t.UTC(), nil
}

// Query returns r as the query string of GET /v1/audit.
func (r Range) Query(f Format) string {
	q := "start=" + r.Start.UTC().Format(time.RFC3339Nano) + "&end=" + r.End.Add(-time.Nanosecond).UTC().Format(time.RFC3339Nano) + "&format=" + string(f)
	if r.Tenant != "" {
		q += "&tenant=" + r.Tenant
	}
	return q
}

// Source is the log an export reads: committed ops only.
type Source interface {
	// FirstOpAt is where to start reading to meet every op committed at
	// or after t (Unix ns), without reading anything before.
	FirstOpAt(t int64) uint64
	// Scan calls fn with every committed op from op from on, in order,
	// until fn returns an error.
	Scan(from uint64, fn func(*kmblog.Op) error) error
	// Chain returns the chain hash of op n (the zero hash for 0).
	Chain(n uint64) (kmblog.Chain, error)
}

// Meta says where an export comes from.
type Meta struct {
	NodeID  uint64
	Cluster string // hex chain hash of op 1, which names the log's history
}

// Summary describes an export.
type Summary struct {
	Range                  Range
	Records, Ops           uint64
	FirstOp, LastOp        uint64
	ChainBefore, ChainLast kmblog.Chain
	Bytes                  int64
	Duration               time.Duration
}

// errDone ends the scan once the range is done.
var errDone = errors.New("done")

// Export writes the records of the ops of src that r selects to w, in
// format f, streaming. progress, when set, is called now and then with how
// much of the time range is done, as parts of total.
func Export(ctx context.Context, w io.Writer, src Source, r Range, f Format, meta Meta, progress func(done, total uint64)) (Summary, error) {
	began := time.Now()
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	enc, err := newEncoder(f, bw)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Range: r}
	start, end := r.Start.UnixNano(), r.End.UnixNano()
	h := header{Version: Version, NodeID: meta.NodeID, Cluster: meta.Cluster, Range: r}
	wroteHeader := false
	var prev kmblog.Chain
	var prevOp uint64
	from := src.FirstOpAt(start)
	if from > 1 {
		if prev, err = src.Chain(from - 1); err != nil {
			return sum, fmt.Errorf("audit: chain hash of op %d: %w", from-1, err)
		}
		prevOp = from - 1
	}
	n := 0
	err = src.Scan(from, func(op *kmblog.Op) error {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if op.Timestamp >= end {
			return errDone
		}
		before, beforeOp := prev, prevOp
		prev, prevOp = op.Chain, op.Op
		if op.Timestamp < start || (r.Tenant != "" && (op.Kind != kmblog.KindData || op.Tenant != r.Tenant)) {
			return nil
		}
		if !wroteHeader {
			h.FirstOp, h.ChainBefore = op.Op, before
			if beforeOp != op.Op-1 && op.Op > 1 {
				return fmt.Errorf("audit: op %d follows op %d in the scan", op.Op, beforeOp)
			}
			if err := enc.header(h); err != nil {
				return err
			}
			wroteHeader = true
			sum.FirstOp, sum.ChainBefore = op.Op, before
		}
		k, err := enc.op(op, before)
		if err != nil {
			return err
		}
		sum.Records += uint64(k)
		sum.Ops++
		sum.LastOp, sum.ChainLast = op.Op, op.Chain
		if progress != nil && sum.Ops%256 == 0 {
			progress(uint64(min(op.Timestamp, end)-start), uint64(end-start))
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return sum, err
	}
	if !wroteHeader {
		if err := enc.header(h); err != nil {
			return sum, err
		}
	}
	t := trailer{LastOp: sum.LastOp, ChainLast: sum.ChainLast, Records: sum.Records, Ops: sum.Ops}
	if err := enc.trailer(t); err != nil {
		return sum, err
	}
	if err := bw.Flush(); err != nil {
		return sum, err
	}
	if progress != nil {
		progress(uint64(end-start), uint64(end-start))
	}
	sum.Bytes, sum.Duration = cw.n, time.Since(began)
	return sum, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// header and trailer are what a file holds around its records.
type header struct {
	Version     int
	NodeID      uint64
	Cluster     string
	Range       Range
	FirstOp     uint64
	ChainBefore kmblog.Chain
}

type trailer struct {
	LastOp       uint64
	ChainLast    kmblog.Chain
	Records, Ops uint64
}

// kindNames and kindOf map op kinds to the names files carry.
var kindNames = map[kmblog.Kind]string{
	kmblog.KindData: "data", kmblog.KindMarker: "marker", kmblog.KindAdmin: "admin", kmblog.KindConfig: "config",
}

func kindOf(s string) (kmblog.Kind, bool) {
	for k, name := range kindNames {
		if name == s {
			return k, true
		}
	}
	return 0, false
}

// encoder writes one format.
type encoder interface {
	header(h header) error
	// op writes op's records and returns how many.
	op(op *kmblog.Op, prev kmblog.Chain) (int, error)
	trailer(t trailer) error
}

func newEncoder(f Format, w *bufio.Writer) (encoder, error) {
	switch f {
	case JSON:
		return &jsonEncoder{w: w}, nil
	case NDJSON:
		return &jsonEncoder{w: w, lines: true}, nil
	case CSV:
		return &csvEncoder{w: w}, nil
	}
	return nil, fmt.Errorf("audit: unknown format %q", f)
}

// timeOf is a commit time as files carry it: UTC, formatted RFC 3339
// with nanoseconds, which parses back to the same instant.
func timeOf(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// rangeEnd is the inclusive end a file states: the last nanosecond in it.
func rangeEnd(r Range) string { return r.End.Add(-time.Nanosecond).UTC().Format(time.RFC3339Nano) }
