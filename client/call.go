package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Headers that make an append idempotent (README, "Retries without
// duplicates").
const (
	headerClientID  = "Kmb-Client-Id"
	headerRequestID = "Kmb-Request-Id"
)

// Header values shared by every request: net/http only reads them.
var jsonContentType = []string{"application/json"}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// call is one logical request: sent, redirected and retried by do.
type call struct {
	op     string // "append", "get", "read": for errors
	method string
	path   string // escaped path and query, e.g. /v1/tenants/acme/entries
	body   []byte // nil for a GET
	// An append's idempotency ids.
	sess      *session
	requestID []string
	// stream, when set, reads a 200 answer's body as it arrives instead of
	// do buffering it; it returns how many bytes it passed on.
	stream func(io.Reader) (int64, error)
	// once marks a write without idempotency ids: it is sent again only
	// when the server cannot have acted on it (a redirect, a refused
	// connection, 503 no_leader or not_ready).
	once bool
}

func (r *call) write() bool { return r.sess != nil || r.once }

// errRequestTimeout is the cause of a call's end at Options.RequestTimeout.
var errRequestTimeout = fmt.Errorf("Options.RequestTimeout passed: %w", context.DeadlineExceeded)

// do sends r until an answer settles it: 200, a 4xx, a permanent failure,
// or the end of ctx or of Options.RequestTimeout. It follows redirects and
// retries 5xx answers and transport failures with a backoff, moving to the
// next address when one fails. It returns the body of the 200 answer, which
// the caller releases, and the number of requests sent.
func (c *Client) do(ctx context.Context, r *call) (*buffer, int, error) {
	if d := c.opts.RequestTimeout; d > 0 {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeoutCause(ctx, d, errRequestTimeout)
			defer cancel()
		}
	}
	// e is what the call has seen so far; only a failure copies it out, so
	// a call that succeeds allocates no error.
	e := Error{Op: r.op, Method: r.method}
	var target *string
	fail := func() error {
		out := e
		out.URL = *target + r.path
		return &out
	}
	redirects := 0
	for n := 1; ; n++ {
		target = c.target.Load()
		e.Attempts = n
		a, sent, err := c.attempt(ctx, *target, r)
		wait := true
		switch {
		case err != nil && ctx.Err() != nil:
			// The call ended during this attempt; what the last answer
			// said stays in e.
			e.Err = context.Cause(ctx)
			e.OutcomeUnknown = e.OutcomeUnknown || (r.write() && sent)
			return nil, n, fail()
		case err != nil && streamedSome(err):
			// Part of the answer was passed on: it cannot be taken back,
			// so the call cannot be retried.
			e.Status, e.Code, e.Message, e.Err = http.StatusOK, "", "", err
			return nil, n, fail()
		case err != nil:
			e.Status, e.Code, e.Message, e.Err = 0, "", "", err
			if permanent(err) {
				return nil, n, fail()
			}
			e.OutcomeUnknown = e.OutcomeUnknown || (r.write() && sent)
			if r.once && sent {
				return nil, n, fail()
			}
			c.rotate(target)
			redirects = 0
		case a.status == http.StatusOK:
			return a.body, n, nil
		default:
			e.Status, e.Err = a.status, nil
			e.Code, e.Message = errorBody(a.body.b)
			a.body.release()
			switch {
			case a.status == http.StatusTemporaryRedirect:
				redirects++
				if c.follow(a.location) && redirects <= c.opts.MaxRedirects {
					wait = false
				}
			case a.status >= 400 && a.status < 500:
				return nil, n, fail()
			default: // 5xx, or a status the API does not answer with
				if r.write() && (a.status != http.StatusServiceUnavailable || leavesOutcomeUnknown(e.Code)) {
					e.OutcomeUnknown = true
					if r.once {
						return nil, n, fail()
					}
				}
				c.rotate(target)
				redirects = 0
			}
		}
		if wait && !sleep(ctx, c.backoff(n)) {
			e.Err = context.Cause(ctx)
			return nil, n, fail()
		}
	}
}

// undecodable is the error of a 200 answer whose body could not be read:
// an append it answered was applied, but its result is lost.
func undecodable(r *call, n int, err error) error {
	return &Error{Op: r.op, Method: r.method, Status: http.StatusOK, Attempts: n, OutcomeUnknown: r.write(),
		Err: fmt.Errorf("undecodable answer: %w", err)}
}

// answer is the part of a response do looks at.
type answer struct {
	status   int
	location string
	body     *buffer // the whole body for 200, the start of it otherwise
}

// attempt sends r once to base and reads the answer. sent reports whether
// the whole body was handed to the connection: until then the server cannot
// have executed the request (it reads a body in full before acting on it).
func (c *Client) attempt(ctx context.Context, base string, r *call) (a answer, sent bool, err error) {
	if d := c.opts.AttemptTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var rd io.Reader
	var wrote *atomic.Bool
	if r.body != nil {
		ctx, rd, wrote = c.requestBody(ctx, r.body)
	}
	defer func() { sent = wrote != nil && wrote.Load() }()
	req, err := http.NewRequestWithContext(ctx, r.method, base+r.path, rd)
	if err != nil {
		return answer{}, false, permanentError{err}
	}
	if rd != nil {
		req.ContentLength = int64(len(r.body))
	}
	h := req.Header
	if r.body != nil {
		h["Content-Type"] = jsonContentType
	}
	if c.auth != nil {
		h["Authorization"] = c.auth
	}
	if r.sess != nil {
		h[headerClientID] = r.sess.clientID
		h[headerRequestID] = r.requestID
	}
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		if rec := (tls.RecordHeaderError{}); errors.As(err, &rec) && string(rec.RecordHeader[:]) == "HTTP/" {
			err = http.ErrSchemeMismatch
		}
		return answer{}, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && r.stream != nil {
		if n, err := r.stream(resp.Body); err != nil {
			return answer{}, false, streamError{n: n, err: err}
		}
		return answer{status: http.StatusOK, body: getBuffer()}, false, nil
	}
	a = answer{status: resp.StatusCode, location: resp.Header.Get("Location"), body: getBuffer()}
	limit := int64(-1)
	if a.status != http.StatusOK {
		limit = maxErrorBody
	}
	if err := a.body.readFrom(resp.Body, resp.ContentLength, limit); err != nil {
		a.body.release()
		return answer{}, false, err
	}
	if limit >= 0 {
		// What is left of a long error body is drained, within a bound,
		// so that the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, maxErrorBody)
	}
	return a, false, nil
}

// errorBody returns the code and message of an error answer: the server's
// JSON {"error":..,"code":..}, or the start of any other body.
func errorBody(b []byte) (code, msg string) {
	var v struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(b, &v) == nil && v.Code != "" {
		return v.Code, v.Error
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b[:min(len(b), 512)]), "\uFFFD"))
	return "", s
}

// streamError is a failure while a streamed answer was being read, after
// n bytes of it were passed on.
type streamError struct {
	n   int64
	err error
}

func (e streamError) Error() string {
	return fmt.Sprintf("the answer broke off after %d bytes: %v", e.n, e.err)
}
func (e streamError) Unwrap() error { return e.err }

// streamedSome tells a streamError after which bytes were passed on.
func streamedSome(err error) bool {
	var se streamError
	return errors.As(err, &se) && se.n > 0
}

// permanentError marks a failure that no retry can fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// permanent tells transport failures a retry would meet again: a request
// that cannot be built, a certificate that does not verify, a server that
// does not speak TLS, a TLS alert from the server (a client certificate
// missing or refused, no common protocol version).
func permanent(err error) bool {
	var p permanentError
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var op *net.OpError
	return errors.As(err, &p) || errors.As(err, &verify) || errors.As(err, &record) ||
		errors.Is(err, http.ErrSchemeMismatch) || (errors.As(err, &op) && op.Op == "remote error")
}

// requestBody returns the body of a request sending b, and a flag set once
// all of b was handed to the connection.
//
// With the client's own transport the body is a bytes.Reader, which net/http
// knows to be in memory: the head and the body then go through the
// connection's write buffer and leave in one write. Any other reader makes
// it flush the head on its own first and copy the body through a new buffer
// of the body's size. The flag is set by httptrace's WroteRequest. A
// transport of the caller's may not call httptrace's hooks, so with one the
// body is a reader of ours, which sets the flag as its last byte is read.
func (c *Client) requestBody(ctx context.Context, b []byte) (context.Context, io.Reader, *atomic.Bool) {
	if c.own == nil {
		br := &bodyReader{b: b}
		return ctx, br, &br.done
	}
	w := &wroteTrace{}
	w.trace.WroteRequest = w.wroteRequest
	return httptrace.WithClientTrace(ctx, &w.trace), bytes.NewReader(b), &w.done
}

// wroteTrace records that a request was written whole.
type wroteTrace struct {
	trace httptrace.ClientTrace
	done  atomic.Bool
}

func (w *wroteTrace) wroteRequest(info httptrace.WroteRequestInfo) {
	if info.Err == nil {
		w.done.Store(true)
	}
}

// bodyReader is a request body that records when the transport has read
// all of it.
type bodyReader struct {
	b    []byte
	off  int
	done atomic.Bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		r.done.Store(true)
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	if r.off == len(r.b) {
		r.done.Store(true)
	}
	return n, nil
}

// buffer is a pooled body buffer.
type buffer struct{ b []byte }

var buffers = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, 512)} }}

func getBuffer() *buffer { return buffers.Get().(*buffer) }

// release returns the buffer to the pool; large ones are left to the
// garbage collector, so one huge read does not stay pinned.
func (b *buffer) release() {
	if cap(b.b) > 1<<20 {
		return
	}
	b.b = b.b[:0]
	buffers.Put(b)
}

// readFrom reads r into b: all of it when limit < 0 (sized by the
// Content-Length hint n when known), else at most limit bytes.
func (b *buffer) readFrom(r io.Reader, n, limit int64) error {
	b.b = b.b[:0]
	if limit >= 0 {
		r = io.LimitReader(r, limit)
	}
	if n > 0 && (limit < 0 || n <= limit) && int64(cap(b.b)) < n+1 {
		b.b = make([]byte, 0, n+1)
	}
	for {
		if len(b.b) == cap(b.b) {
			b.b = append(b.b, 0)[:len(b.b)]
		}
		m, err := r.Read(b.b[len(b.b):cap(b.b)])
		b.b = b.b[:len(b.b)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }
