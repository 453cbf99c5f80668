package client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The codes of the server's JSON errors (README, "Client API").
const (
	CodeMalformed        = "malformed"
	CodeInvalidTenant    = "invalid_tenant"
	CodeInvalidKey       = "invalid_key"
	CodeBadRequest       = "bad_request"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "too_large"
	CodeNotLeader        = "not_leader"
	CodeStaleRequest     = "stale_request"
	CodeNotReady         = "not_ready"
	CodeNoLeader         = "no_leader"
	CodeLeadershipLost   = "leadership_lost"
	CodeShuttingDown     = "shutting_down"
	CodeTimeout          = "timeout"
	CodeUnavailable      = "unavailable"
)

var (
	// ErrNotFound matches an *Error whose code is not_found: a key that
	// was never written.
	ErrNotFound = errors.New("not found")
	// ErrOutcomeUnknown matches the *Error of an append that gave up after
	// an attempt that may have been executed: the entries may have been
	// appended. Appending the same batch again would append them twice if
	// they were; reading the tenant's log tells.
	ErrOutcomeUnknown = errors.New("outcome unknown: the write may have been applied")
)

// Error is how every call of a Client fails.
type Error struct {
	// Op is the call: "append", "get" or "read".
	Op string
	// Method and URL are those of the last request sent; URL is empty when
	// the client refused the call before sending anything.
	Method, URL string
	// Status is the HTTP status of the last answer; 0 when there was none
	// (a transport failure, a cancelled context, a call refused by the
	// client).
	Status int
	// Code and Message are the server's JSON "code" and "error" of the last
	// answer, or, for a call the client refused, the code the server would
	// have answered with. Message holds the start of the body when the
	// answer was not the server's JSON (a proxy's, for instance).
	Code, Message string
	// Attempts is how many requests the call sent, redirects and retries
	// included; a call its context ended counts the request it had begun,
	// which may not have reached the server.
	Attempts int
	// OutcomeUnknown is set on an append that may have been executed.
	OutcomeUnknown bool
	// Err is the transport or context error that ended the call, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("kmb client: ")
	b.WriteString(e.Op)
	if e.URL != "" {
		b.WriteString(": ")
		b.WriteString(e.Method)
		b.WriteByte(' ')
		b.WriteString(e.URL)
	}
	if e.Status != 0 {
		b.WriteString(": ")
		b.WriteString(strconv.Itoa(e.Status))
	}
	if e.Code != "" {
		if e.Status == 0 {
			b.WriteByte(':')
		}
		b.WriteByte(' ')
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (%d attempts)", e.Attempts)
	}
	if e.OutcomeUnknown {
		b.WriteString("; the write may have been applied")
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see Err, ErrNotFound and
// ErrOutcomeUnknown.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Code == CodeNotFound {
		errs = append(errs, ErrNotFound)
	}
	if e.OutcomeUnknown {
		errs = append(errs, ErrOutcomeUnknown)
	}
	return errs
}

// leavesOutcomeUnknown tells whether a 5xx answer with this code to an
// append leaves it unknown whether the append was executed: the node had
// taken the write (a timeout, a leadership lost before the commit, a storage
// failure, a shutdown with writes in flight), or the answer is not the
// server's own (a proxy's 502 or 504).
func leavesOutcomeUnknown(code string) bool {
	switch code {
	case CodeNoLeader, CodeNotReady:
		return false // refused before anything was proposed
	}
	return true
}

var errNotJSON = errors.New("the body is not JSON")
