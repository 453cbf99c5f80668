package audit

import (
	"bufio"
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	kmblog "github.com/kmb-db/kmb/store/log"
)

// jsonEncoder writes the json format (one object) or, with lines, ndjson.
// Records are encoded by hand: an export is mostly records, and the
// stored values go out as the raw JSON they are.
type jsonEncoder struct {
	w     *bufio.Writer
	lines bool
	buf   []byte
	n     int // records written
}

func (e *jsonEncoder) header(h header) error {
	b := e.buf[:0]
	if e.lines {
		b = append(b, `{"type":"header",`...)
	} else {
		b = append(b, '{')
	}
	b = append(b, `"kmb_audit_export":`...)
	b = strconv.AppendInt(b, int64(h.Version), 10)
	b = append(b, `,"node_id":`...)
	b = strconv.AppendUint(b, h.NodeID, 10)
	b = append(b, `,"cluster":`...)
	b = appendString(b, h.Cluster)
	b = append(b, `,"range":{"start":`...)
	b = appendString(b, h.Range.Start.UTC().Format(timeLayout))
	b = append(b, `,"end":`...)
	b = appendString(b, rangeEnd(h.Range))
	if h.Range.Tenant != "" {
		b = append(b, `,"tenant":`...)
		b = appendString(b, h.Range.Tenant)
	}
	b = append(b, `},"first_op":`...)
	b = strconv.AppendUint(b, h.FirstOp, 10)
	b = append(b, `,"chain_before":"`...)
	b = hex.AppendEncode(b, h.ChainBefore[:])
	if e.lines {
		b = append(b, "\"}\n"...)
	} else {
		b = append(b, `","records":[`...)
	}
	e.buf = b
	_, err := e.w.Write(b)
	return err
}

func (e *jsonEncoder) op(op *kmblog.Op, prev kmblog.Chain) (int, error) {
	if len(op.Entries) == 0 {
		return 1, e.record(op, prev, -1)
	}
	for i := range op.Entries {
		if err := e.record(op, prev, i); err != nil {
			return i, err
		}
	}
	return len(op.Entries), nil
}

// record writes entry i of op (i < 0: op has no entries).
func (e *jsonEncoder) record(op *kmblog.Op, prev kmblog.Chain, i int) error {
	b := e.buf[:0]
	switch {
	case e.lines:
		b = append(b, `{"type":"record",`...)
	case e.n > 0:
		b = append(b, ",\n{"...)
	default:
		b = append(b, "\n{"...)
	}
	e.n++
	pos := op.FirstPosition
	if i > 0 {
		pos += uint64(i)
	}
	b = append(b, `"position":`...)
	b = strconv.AppendUint(b, pos, 10)
	b = append(b, `,"op":`...)
	b = strconv.AppendUint(b, op.Op, 10)
	b = append(b, `,"view":`...)
	b = strconv.AppendUint(b, op.View, 10)
	b = append(b, `,"kind":"`...)
	b = append(b, kindNames[op.Kind]...)
	b = append(b, '"')
	if op.Tenant != "" {
		b = append(b, `,"tenant":`...)
		b = appendString(b, op.Tenant)
	}
	if i >= 0 {
		en := &op.Entries[i]
		b = append(b, `,"key":`...)
		b = appendString(b, en.Key)
		if len(en.Value) > 0 {
			b = append(b, `,"value":`...)
			b = append(b, en.Value...)
		}
	}
	b = append(b, `,"timestamp":"`...)
	b = appendTime(b, op.Timestamp)
	b = append(b, '"')
	if op.Principal != "" {
		b = append(b, `,"principal":`...)
		b = appendString(b, op.Principal)
	}
	if op.ClientID != 0 {
		b = append(b, `,"client_id":`...)
		b = strconv.AppendUint(b, op.ClientID, 10)
		b = append(b, `,"request_id":`...)
		b = strconv.AppendUint(b, op.RequestID, 10)
	}
	b = append(b, `,"chain":"`...)
	b = hex.AppendEncode(b, op.Chain[:])
	b = append(b, `","prev_chain":"`...)
	b = hex.AppendEncode(b, prev[:])
	b = append(b, `"}`...)
	if e.lines {
		b = append(b, '\n')
	}
	e.buf = b
	_, err := e.w.Write(b)
	return err
}

func (e *jsonEncoder) trailer(t trailer) error {
	b := e.buf[:0]
	if e.lines {
		b = append(b, `{"type":"trailer",`...)
	} else {
		if e.n > 0 {
			b = append(b, '\n')
		}
		b = append(b, `],`...)
	}
	b = append(b, `"last_op":`...)
	b = strconv.AppendUint(b, t.LastOp, 10)
	b = append(b, `,"chain_last":"`...)
	b = hex.AppendEncode(b, t.ChainLast[:])
	b = append(b, `","counts":{"records":`...)
	b = strconv.AppendUint(b, t.Records, 10)
	b = append(b, `,"ops":`...)
	b = strconv.AppendUint(b, t.Ops, 10)
	b = append(b, "}}\n"...)
	e.buf = b
	_, err := e.w.Write(b)
	return err
}

// csvColumns are the csv format's columns, in order.
var csvColumns = []string{"position", "op", "view", "kind", "tenant", "key", "value", "timestamp", "principal", "client_id", "request_id", "chain", "prev_chain"}

// csvEncoder writes the csv format.
type csvEncoder struct {
	w   *bufio.Writer
	buf []byte
}

func (e *csvEncoder) comment(key, value string) {
	e.w.WriteString("# " + key + ": " + value + "\n")
}

func (e *csvEncoder) header(h header) error {
	e.comment("kmb_audit_export", strconv.Itoa(h.Version))
	e.comment("node_id", strconv.FormatUint(h.NodeID, 10))
	e.comment("cluster", h.Cluster)
	e.comment("start", h.Range.Start.UTC().Format(timeLayout))
	e.comment("end", rangeEnd(h.Range))
	if h.Range.Tenant != "" {
		e.comment("tenant", h.Range.Tenant)
	}
	e.comment("first_op", strconv.FormatUint(h.FirstOp, 10))
	e.comment("chain_before", hex.EncodeToString(h.ChainBefore[:]))
	for i, c := range csvColumns {
		if i > 0 {
			e.w.WriteByte(',')
		}
		e.w.WriteString(c)
	}
	_, err := e.w.WriteString("\n")
	return err
}

func (e *csvEncoder) op(op *kmblog.Op, prev kmblog.Chain) (int, error) {
	if len(op.Entries) == 0 {
		return 1, e.record(op, prev, -1)
	}
	for i := range op.Entries {
		if err := e.record(op, prev, i); err != nil {
			return i, err
		}
	}
	return len(op.Entries), nil
}

func (e *csvEncoder) record(op *kmblog.Op, prev kmblog.Chain, i int) error {
	b := e.buf[:0]
	pos := op.FirstPosition
	if i > 0 {
		pos += uint64(i)
	}
	b = strconv.AppendUint(b, pos, 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, op.Op, 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, op.View, 10)
	b = append(b, ',')
	b = append(b, kindNames[op.Kind]...)
	b = append(b, ',')
	b = appendCSV(b, op.Tenant)
	b = append(b, ',')
	if i >= 0 {
		b = appendCSV(b, op.Entries[i].Key)
		b = append(b, ',')
		b = appendCSV(b, op.Entries[i].Value)
	} else {
		b = append(b, ',')
	}
	b = append(b, ',')
	b = appendTime(b, op.Timestamp)
	b = append(b, ',')
	b = appendCSV(b, op.Principal)
	b = append(b, ',')
	if op.ClientID != 0 {
		b = strconv.AppendUint(b, op.ClientID, 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, op.RequestID, 10)
	} else {
		b = append(b, ',')
	}
	b = append(b, ',')
	b = hex.AppendEncode(b, op.Chain[:])
	b = append(b, ',')
	b = hex.AppendEncode(b, prev[:])
	b = append(b, '\n')
	e.buf = b
	_, err := e.w.Write(b)
	return err
}

func (e *csvEncoder) trailer(t trailer) error {
	e.comment("last_op", strconv.FormatUint(t.LastOp, 10))
	e.comment("chain_last", hex.EncodeToString(t.ChainLast[:]))
	e.comment("records", strconv.FormatUint(t.Records, 10))
	e.comment("ops", strconv.FormatUint(t.Ops, 10))
	return e.w.Flush()
}

// appendCSV appends s as a CSV field, quoted when it must be.
func appendCSV[S string | []byte](b []byte, s S) []byte {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ',' || c == '"' || c == '\n' || c == '\r' {
			need = true
			break
		}
	}
	if !need {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// timeLayout is RFC 3339 with nanoseconds, trailing zeros dropped.
const timeLayout = "2006-01-02T15:04:05.999999999Z07:00"

func appendTime(b []byte, ns int64) []byte {
	return timeOf(ns).AppendFormat(b, timeLayout)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Keys, tenants and principals
// are valid UTF-8 (the API refuses others); an invalid byte would be
// written as U+FFFD, and the record would then fail verification rather
// than go unnoticed.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
