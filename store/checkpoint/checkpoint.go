package checkpoint

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/kmb-db/kmb/store/internal/strictbin"
	kmblog "github.com/kmb-db/kmb/store/log"
)

const (
	magic   = "KMBCKP"
	version = 2 // written; 1 (no configuration) is still read

	// MaxBlockSize bounds a block's payload. A writer fills blocks up to
	// targetBlock and lets one key or client run past it; a key or value
	// is bounded by the log's record size.
	MaxBlockSize = kmblog.MaxRecordSize + 1<<20
	targetBlock  = 64 << 10
	blockHeader  = 8
)

// Block kinds.
const (
	kindHeader = 'H'
	kindTenant = 'T'
	kindKeys   = 'K'
	kindOps    = 'O'
	kindClient = 'C'
	kindEnd    = 'E'
)

// ErrCorrupt is wrapped by every error Read returns for bytes that are not
// a valid checkpoint.
var ErrCorrupt = errors.New("checkpoint: corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header says which op the checkpoint is the state after.
type Header struct {
	Op        uint64       // the last op applied
	Position  uint64       // the last position applied (that op's or an earlier one's)
	Chain     kmblog.Chain // op's chain hash
	Timestamp int64        // op's commit time, Unix ns
	// Epoch and Members are the cluster configuration in force after Op:
	// that of the last config op at or before it. A replica that installs
	// the checkpoint by state transfer may have missed that config op (its
	// log is gone), and learns the configuration, addresses included, from
	// here. Zero and empty in a version 1 checkpoint, or when the writer
	// did not know it.
	Epoch   uint64
	Members []Member
}

// Member is one replica of a configuration: its node id and replication
// address.
type Member struct {
	ID   uint64
	Addr string
}

// MaxMembers bounds a checkpoint's configuration (node ids are 1..255).
const MaxMembers = 255

// OpRef is one op of a tenant: where its entries are in the log.
type OpRef struct {
	Op, FirstPosition, Count uint64
}

// Client is one entry of the client table: a client's last applied
// request and its result.
type Client struct {
	ID, Request                 uint64
	FirstPosition, LastPosition uint64
	Op                          uint64 // the result's commit number
}

// Totals counts what a checkpoint holds.
type Totals struct {
	Tenants, Keys, Ops, Clients uint64
}

// Writer writes a checkpoint to an io.Writer as a stream of blocks. Calls
// must come in the order of the format: Tenant, then its Keys and Ops (in
// any order), then the next Tenant, ..., then Clients, then Close. The
// first error sticks and is returned by every later call.
type Writer struct {
	w      io.Writer
	seq    uint64
	buf    []byte // the block being filled, its header space included
	kind   byte
	count  uint64 // items in the current block
	n      int    // where the count goes: it is written at flush
	tot    Totals
	prevOp uint64 // op of the tenant's previous OpRef
	prevTo uint64 // end (first position + count) of the tenant's previous OpRef
	state  byte   // kind of the last item written
	err    error
	bytes  int64
}

// NewWriter writes h as the first block.
func NewWriter(w io.Writer, h Header) *Writer {
	cw := &Writer{w: w, buf: make([]byte, 0, targetBlock+1024)}
	b := cw.begin(kindHeader)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint16(b, version)
	b = binary.AppendUvarint(b, h.Op)
	b = binary.AppendUvarint(b, h.Position)
	b = append(b, h.Chain[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.Timestamp))
	b = binary.AppendUvarint(b, h.Epoch)
	b = binary.AppendUvarint(b, uint64(len(h.Members)))
	for _, m := range h.Members {
		b = binary.AppendUvarint(b, m.ID)
		b = binary.AppendUvarint(b, uint64(len(m.Addr)))
		b = append(b, m.Addr...)
	}
	cw.buf = b
	cw.flush()
	cw.state = kindHeader
	return cw
}

// Bytes is how many bytes were written so far.
func (w *Writer) Bytes() int64 { return w.bytes }

// Totals is what was written so far.
func (w *Writer) Totals() Totals { return w.tot }

// begin starts a block of kind k in w.buf.
func (w *Writer) begin(k byte) []byte {
	b := append(w.buf[:0], make([]byte, blockHeader)...)
	b = append(b, k)
	b = binary.AppendUvarint(b, w.seq)
	w.kind, w.count, w.n = k, 0, len(b)
	return b
}

// flush writes the block in w.buf. For blocks of items, the count is
// inserted after the sequence number.
func (w *Writer) flush() {
	if w.err != nil {
		return
	}
	b := w.buf
	if w.kind == kindKeys || w.kind == kindOps || w.kind == kindClient {
		var c [binary.MaxVarintLen64]byte
		cn := binary.PutUvarint(c[:], w.count)
		b = append(b, c[:cn]...)
		copy(b[w.n+cn:], b[w.n:len(b)-cn])
		copy(b[w.n:], c[:cn])
	}
	payload := b[blockHeader:]
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(payload, castagnoli))
	n, err := w.w.Write(b)
	w.bytes += int64(n)
	if err != nil {
		w.err = fmt.Errorf("checkpoint: write: %w", err)
	}
	w.seq++
	w.buf, w.kind = b[:0], 0
}

// item prepares w.buf for one more item of kind k, flushing a full or
// different block first.
func (w *Writer) item(k byte) {
	if w.kind != k || len(w.buf) >= targetBlock {
		if w.kind != 0 {
			w.flush()
		}
		w.buf = w.begin(k)
	}
	w.count++
}

func (w *Writer) order(k byte, allowed ...byte) error {
	if w.err != nil {
		return w.err
	}
	for _, a := range allowed {
		if w.state == a {
			w.state = k
			return nil
		}
	}
	w.err = fmt.Errorf("checkpoint: %c after %c: calls out of order", k, w.state)
	return w.err
}

// Tenant starts the keys and ops of tenant id.
func (w *Writer) Tenant(id string) error {
	if err := w.order(kindTenant, kindHeader, kindTenant, kindKeys, kindOps); err != nil {
		return err
	}
	if w.kind != 0 {
		w.flush()
	}
	b := w.begin(kindTenant)
	b = binary.AppendUvarint(b, uint64(len(id)))
	w.buf = append(b, id...)
	w.flush()
	w.tot.Tenants++
	w.prevOp, w.prevTo = 0, 0
	return w.err
}

// Key writes the current tenant's latest value of key.
func (w *Writer) Key(key string, value []byte, position uint64) error {
	if err := w.order(kindKeys, kindTenant, kindKeys, kindOps); err != nil {
		return err
	}
	w.item(kindKeys)
	b := binary.AppendUvarint(w.buf, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, position)
	b = binary.AppendUvarint(b, uint64(len(value)))
	w.buf = append(b, value...)
	w.tot.Keys++
	return nil
}

// Op writes the current tenant's next op, which must come after the
// previous one in the log.
func (w *Writer) Op(r OpRef) error {
	if err := w.order(kindOps, kindTenant, kindKeys, kindOps); err != nil {
		return err
	}
	if r.Op <= w.prevOp || r.FirstPosition < w.prevTo || r.Count == 0 {
		w.err = fmt.Errorf("checkpoint: op %d (positions %d+%d) does not follow op %d", r.Op, r.FirstPosition, r.Count, w.prevOp)
		return w.err
	}
	w.item(kindOps)
	b := binary.AppendUvarint(w.buf, r.Op-w.prevOp)
	b = binary.AppendUvarint(b, r.FirstPosition-w.prevTo)
	w.buf = binary.AppendUvarint(b, r.Count)
	w.prevOp, w.prevTo = r.Op, r.FirstPosition+r.Count
	w.tot.Ops++
	return nil
}

// Client writes one entry of the client table.
func (w *Writer) Client(c Client) error {
	if err := w.order(kindClient, kindHeader, kindTenant, kindKeys, kindOps, kindClient); err != nil {
		return err
	}
	w.item(kindClient)
	b := binary.AppendUvarint(w.buf, c.ID)
	b = binary.AppendUvarint(b, c.Request)
	b = binary.AppendUvarint(b, c.FirstPosition)
	b = binary.AppendUvarint(b, c.LastPosition)
	w.buf = binary.AppendUvarint(b, c.Op)
	w.tot.Clients++
	return nil
}

// Close writes the end block. It does not close the underlying writer.
func (w *Writer) Close() error {
	if err := w.order(kindEnd, kindHeader, kindTenant, kindKeys, kindOps, kindClient); err != nil {
		return err
	}
	if w.kind != 0 {
		w.flush()
	}
	b := w.begin(kindEnd)
	for _, n := range []uint64{w.tot.Tenants, w.tot.Keys, w.tot.Ops, w.tot.Clients} {
		b = binary.AppendUvarint(b, n)
	}
	w.buf = b
	w.flush()
	return w.err
}

// Sink receives a checkpoint's state as Read decodes it. Key and Op
// belong to the tenant of the last Tenant call. The strings and slices
// it gets are its own (they share one allocation per block). An error
// stops Read, which returns it.
type Sink interface {
	// Begin is called with the header, before any state.
	Begin(h Header) error
	Tenant(id string) error
	Key(key string, value []byte, position uint64) error
	Op(r OpRef) error
	Client(c Client) error
}

var decodeErrors = &strictbin.Errors{Malformed: ErrCorrupt, Input: "checkpoint block"}

// Read decodes a checkpoint from r into sink and returns its header and
// totals. It reads nothing past the end block, and fails, wrapping
// ErrCorrupt, on anything that is not a whole valid checkpoint: the sink
// must then discard what it received.
func Read(r io.Reader, sink Sink) (Header, Totals, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	rd := reader{br: br}
	var h Header
	body, err := rd.block(kindHeader)
	if err != nil {
		return h, Totals{}, err
	}
	d := strictbin.NewDecoder(body, decodeErrors)
	if len(body) < len(magic)+2 || string(body[:len(magic)]) != magic {
		return h, Totals{}, fmt.Errorf("%w: not a checkpoint (bad magic)", ErrCorrupt)
	}
	d.Rewind(len(magic))
	v := uint16(d.Byte("version")) | uint16(d.Byte("version"))<<8
	if v != 1 && v != version {
		return h, Totals{}, fmt.Errorf("%w: unknown version %d", ErrCorrupt, v)
	}
	h.Op = d.Uvarint("op")
	h.Position = d.Uvarint("position")
	copy(h.Chain[:], fixed(&d, kmblog.ChainSize, "chain"))
	h.Timestamp = int64(d.Fixed64("timestamp"))
	if v >= 2 {
		h.Epoch = d.Uvarint("epoch")
		n := d.Uvarint("members")
		if n > MaxMembers {
			return h, Totals{}, fmt.Errorf("%w: %d members, at most %d", ErrCorrupt, n, MaxMembers)
		}
		for range n {
			m := Member{ID: d.Uvarint("member id")}
			m.Addr = string(d.Bytes("member address length"))
			if m.ID == 0 {
				return h, Totals{}, fmt.Errorf("%w: member id 0", ErrCorrupt)
			}
			h.Members = append(h.Members, m)
		}
	}
	if err := done(&d); err != nil {
		return h, Totals{}, err
	}
	if err := sink.Begin(h); err != nil {
		return h, Totals{}, err
	}

	var tot Totals
	inTenant := false
	var prevOp, prevTo uint64
	for {
		kind, body, err := rd.next()
		if err != nil {
			return h, tot, err
		}
		d := strictbin.NewDecoder(body, decodeErrors)
		switch kind {
		case kindTenant:
			if rd.clients {
				return h, tot, fmt.Errorf("%w: tenant block after the clients", ErrCorrupt)
			}
			id := string(d.Bytes("tenant length"))
			if err := done(&d); err != nil {
				return h, tot, err
			}
			if id == "" {
				return h, tot, fmt.Errorf("%w: empty tenant id", ErrCorrupt)
			}
			if err := sink.Tenant(id); err != nil {
				return h, tot, err
			}
			inTenant, prevOp, prevTo = true, 0, 0
			tot.Tenants++
		case kindKeys:
			if !inTenant || rd.clients {
				return h, tot, fmt.Errorf("%w: key block outside a tenant", ErrCorrupt)
			}
			n := count(&d, 3)
			// One allocation for the block's keys, one for its values.
			own := append([]byte(nil), body[d.Offset():]...)
			strs := string(own)
			base := d.Offset()
			for range n {
				k := d.Bytes("key length")
				kat := d.Offset() - len(k) - base
				pos := d.Uvarint("position")
				v := d.Bytes("value length")
				if d.Err() != nil {
					break
				}
				vat := d.Offset() - len(v) - base
				var value []byte
				if len(v) > 0 {
					value = own[vat : vat+len(v) : vat+len(v)]
				}
				if err := sink.Key(strs[kat:kat+len(k)], value, pos); err != nil {
					return h, tot, err
				}
				tot.Keys++
			}
			if err := done(&d); err != nil {
				return h, tot, err
			}
		case kindOps:
			if !inTenant || rd.clients {
				return h, tot, fmt.Errorf("%w: op block outside a tenant", ErrCorrupt)
			}
			n := count(&d, 3)
			for range n {
				dOp, dPos, c := d.Uvarint("op"), d.Uvarint("first position"), d.Uvarint("entries")
				if d.Err() != nil {
					break
				}
				if dOp == 0 || c == 0 || dOp > ^uint64(0)-prevOp || dPos > ^uint64(0)-prevTo || c > ^uint64(0)-prevTo-dPos {
					return h, tot, fmt.Errorf("%w: op ref out of order", ErrCorrupt)
				}
				ref := OpRef{Op: prevOp + dOp, FirstPosition: prevTo + dPos, Count: c}
				if err := sink.Op(ref); err != nil {
					return h, tot, err
				}
				prevOp, prevTo = ref.Op, ref.FirstPosition+ref.Count
				tot.Ops++
			}
			if err := done(&d); err != nil {
				return h, tot, err
			}
		case kindClient:
			rd.clients = true
			n := count(&d, 5)
			for range n {
				c := Client{ID: d.Uvarint("id"), Request: d.Uvarint("request"), FirstPosition: d.Uvarint("first position"),
					LastPosition: d.Uvarint("last position"), Op: d.Uvarint("op")}
				if d.Err() != nil {
					break
				}
				if err := sink.Client(c); err != nil {
					return h, tot, err
				}
				tot.Clients++
			}
			if err := done(&d); err != nil {
				return h, tot, err
			}
		case kindEnd:
			want := Totals{d.Uvarint("tenants"), d.Uvarint("keys"), d.Uvarint("ops"), d.Uvarint("clients")}
			if err := done(&d); err != nil {
				return h, tot, err
			}
			if want != tot {
				return h, tot, fmt.Errorf("%w: the end block counts %+v, the stream held %+v", ErrCorrupt, want, tot)
			}
			if _, err := br.Peek(1); err != io.EOF {
				return h, tot, fmt.Errorf("%w: bytes after the end block", ErrCorrupt)
			}
			return h, tot, nil
		default:
			return h, tot, fmt.Errorf("%w: unknown block kind %q", ErrCorrupt, kind)
		}
	}
}

// count reads an item count, bounded by the bytes left (each item takes
// at least min bytes).
func count(d *strictbin.Decoder, min int) uint64 {
	n := d.Uvarint("count")
	if d.Err() == nil && (n == 0 || n > uint64(d.Remaining()/min)) {
		d.Fail("count %d does not fit the block", n)
	}
	return n
}

func fixed(d *strictbin.Decoder, n int, field string) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = d.Byte(field)
	}
	return out
}

func done(d *strictbin.Decoder) error {
	if err := d.Err(); err != nil {
		return err
	}
	if d.Remaining() != 0 {
		return fmt.Errorf("%w: %d trailing bytes in a block", ErrCorrupt, d.Remaining())
	}
	return nil
}

// reader reads blocks, checking their checksums and sequence numbers.
type reader struct {
	br      *bufio.Reader
	seq     uint64
	buf     []byte
	clients bool // a client block was read: only clients and the end may follow
}

func (r *reader) block(want byte) ([]byte, error) {
	k, body, err := r.next()
	if err == nil && k != want {
		err = fmt.Errorf("%w: block %d is %q, want %q", ErrCorrupt, r.seq-1, k, want)
	}
	return body, err
}

// next reads one block and returns its kind and body (after the sequence
// number), valid until the next call.
func (r *reader) next() (byte, []byte, error) {
	var h [blockHeader]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: block %d: %w (the checkpoint ends early)", ErrCorrupt, r.seq, unexpected(err))
	}
	n := binary.LittleEndian.Uint32(h[:])
	if n < 2 || n > MaxBlockSize {
		return 0, nil, fmt.Errorf("%w: block %d: length %d", ErrCorrupt, r.seq, n)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	p := r.buf[:n]
	if _, err := io.ReadFull(r.br, p); err != nil {
		return 0, nil, fmt.Errorf("%w: block %d: %w (the checkpoint ends early)", ErrCorrupt, r.seq, unexpected(err))
	}
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return 0, nil, fmt.Errorf("%w: block %d: checksum mismatch", ErrCorrupt, r.seq)
	}
	d := strictbin.NewDecoder(p, decodeErrors)
	kind := d.Byte("kind")
	seq := d.Uvarint("sequence")
	if err := d.Err(); err != nil {
		return 0, nil, err
	}
	if seq != r.seq {
		return 0, nil, fmt.Errorf("%w: block %d where block %d belongs", ErrCorrupt, seq, r.seq)
	}
	r.seq++
	return kind, p[d.Offset():], nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
