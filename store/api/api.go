package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/kmb-db/kmb/auth"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/node"
	"github.com/kmb-db/kmb/store/projection"
	"github.com/kmb-db/kmb/telemetry/metric"
	"github.com/kmb-db/kmb/telemetry/spans"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Backend is what the API serves; *node.Node implements it.
type Backend interface {
	Append(ctx context.Context, w node.Write) (node.AppendResult, error)
	Get(tenant, key string) (projection.Value, error)
	Entries(tenant string, from uint64, limit int) ([]node.Entry, uint64, error)
}

// API is the client API handler.
type API struct {
	cfg     Config
	backend Backend
	logger  *slog.Logger
	tracer  *spans.Tracer
	mux     *http.ServeMux
	m       apiMetrics
	am      authMetrics
	tokens  *auth.Store // nil: no bearer tokens
	certs   bool        // client certificates name principals
}

// New returns the API over backend, registering its metrics in reg. A nil
// logger discards, a nil tracer traces nothing. Without options every
// client may use every tenant.
func New(cfg Config, backend Backend, reg *metric.Registry, logger *slog.Logger, tracer *spans.Tracer, opts ...Option) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if tracer == nil {
		tracer = spans.Disabled()
	}
	if reg == nil {
		reg = metric.NewRegistry()
	}
	a := &API{cfg: cfg, backend: backend, logger: logger, tracer: tracer, mux: http.NewServeMux(), m: newAPIMetrics(reg), am: newAuthMetrics(reg)}
	for _, o := range opts {
		o(a)
	}
	a.mux.HandleFunc("/v1/tenants/{tenant}/entries", a.entries)
	a.mux.HandleFunc("/v1/tenants/{tenant}/keys/{key}", a.key)
	a.mountAudit()
	a.mountCluster()
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.m.inFlight.Inc()
	defer a.m.inFlight.Dec()
	a.mux.ServeHTTP(w, r)
}

// startSpan opens the request's kmb.write or kmb.query span, continuing the
// client's traceparent. Unsampled requests get a no-op span for free.
func (a *API) startSpan(r *http.Request, name, tenant string) (*http.Request, trace.Span) {
	if !a.tracer.Enabled() {
		return r, noSpan
	}
	ctx := spans.ExtractHTTP(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := a.tracer.Start(ctx, name, trace.SpanKindServer)
	if !span.IsRecording() {
		return r, span
	}
	span.SetAttributes(
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.URLPath(r.URL.Path),
		spans.AttrTenant.String(tenant),
	)
	return r.WithContext(ctx), span
}

var noSpan = trace.SpanFromContext(context.Background())

// traced wraps a handler's request in its span; done ends it with the
// response status. Untraced requests pay for one branch.
func (a *API) traced(w http.ResponseWriter, r *http.Request, name, tenant string) (*http.Request, http.ResponseWriter, func()) {
	r, span := a.startSpan(r, name, tenant)
	if !span.IsRecording() {
		return r, w, noop
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	return r, sw, func() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
		span.End()
	}
}

func noop() {}

// traceID is the id of the request's sampled trace, "" when untraced. With
// tracing off there is none, and the request's context is not searched.
func (a *API) traceID(r *http.Request) string {
	if !a.tracer.Enabled() {
		return ""
	}
	sc := trace.SpanContextFromContext(r.Context())
	if !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (a *API) entries(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		a.append(w, r)
	case http.MethodGet, http.MethodHead:
		a.readEntries(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
	}
}

func (a *API) key(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
		return
	}
	a.getKey(w, r)
}

type appendRequest struct {
	Entries []struct {
		Key   *string         `json:"key"`
		Value json.RawMessage `json:"value"`
	} `json:"entries"`
}

type appendResponse struct {
	FirstPosition uint64 `json:"first_position"`
	LastPosition  uint64 `json:"last_position"`
	CommitNumber  uint64 `json:"commit_number"`
}

func (a *API) append(w http.ResponseWriter, r *http.Request) {
	counts := &a.m.appendReqs
	tenant := r.PathValue("tenant")
	r, w, done := a.traced(w, r, spans.Write, tenant)
	defer done()
	if !a.checkTenant(w, counts, tenant) {
		return
	}
	principal, ok := a.authorize(w, r, counts, tenant, auth.Write)
	if !ok {
		return
	}
	clientID, requestID, err := idempotencyKey(r)
	if err != nil {
		a.reject(w, counts, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	entries, status, code, msg := a.decodeAppend(r)
	if status != 0 {
		a.reject(w, counts, status, code, msg)
		return
	}
	start := time.Now()
	// The node enforces the deadline at its tick: no timer per write.
	res, err := a.backend.Append(r.Context(), node.Write{Tenant: tenant, Entries: entries, Principal: principal, ClientID: clientID, RequestID: requestID,
		Deadline: start.Add(time.Duration(a.cfg.WriteTimeoutMillis) * time.Millisecond)})
	if err == nil || errors.Is(err, node.ErrOutcomeUnknown) || errors.Is(err, node.ErrLostLeadership) {
		// Only writes this node tried to commit: a redirect or a refusal
		// before proposing would drag the latency quantiles down.
		a.m.writeDuration.ObserveDurationWithExemplar(time.Since(start), a.traceID(r))
	}
	if err != nil {
		a.backendError(w, r, counts, err)
		return
	}
	counts.ok.Inc()
	writeAppendResponse(w, res)
}

// writeAppendResponse writes what writeJSON would write for an
// appendResponse, without reflection or allocations.
func writeAppendResponse(w http.ResponseWriter, res node.AppendResult) {
	s := getScratch() // a stack buffer would escape through w.Write
	defer s.release()
	b := append(s.body[:0], `{"first_position":`...)
	b = strconv.AppendUint(b, res.FirstPosition, 10)
	b = append(b, `,"last_position":`...)
	b = strconv.AppendUint(b, res.LastPosition, 10)
	b = append(b, `,"commit_number":`...)
	b = strconv.AppendUint(b, res.CommitNumber, 10)
	b = append(b, "}\n"...)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	s.body = b
}

// jsonContentType is shared by every response's header: net/http only
// reads it.
var jsonContentType = []string{"application/json"}

// decodeAppend parses and validates the whole body; a non-zero status means
// it was rejected.
func (a *API) decodeAppend(r *http.Request) (entries []kmblog.Entry, status int, code, msg string) {
	if r.ContentLength > a.cfg.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body of %d bytes exceeds api.max_body_bytes = %d", r.ContentLength, a.cfg.MaxBodyBytes)
	}
	s := getScratch()
	defer s.release()
	body, err := readBody(r.Body, s.body, r.ContentLength, a.cfg.MaxBodyBytes)
	s.body = body
	if err == nil {
		if entries, ok := s.decodeFast(body, a.cfg); ok {
			return entries, 0, "", ""
		}
	}
	// The same bytes, then the same error, through encoding/json.
	var src io.Reader = bytes.NewReader(body)
	if err != nil {
		src = io.MultiReader(src, errReader{err})
	}
	return a.decodeAppendSlow(src)
}

// decodeAppendSlow decodes the body with encoding/json: whatever the fast
// path does not take, and every error.
func (a *API) decodeAppendSlow(body io.Reader) (entries []kmblog.Entry, status int, code, msg string) {
	var seen bytes.Buffer // what the decoder read, for strictCheck
	dec := json.NewDecoder(io.TeeReader(body, &seen))
	dec.DisallowUnknownFields()
	var req appendRequest
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body exceeds api.max_body_bytes = %d", a.cfg.MaxBodyBytes)
		}
		return nil, http.StatusBadRequest, "malformed", "malformed JSON body: " + err.Error()
	}
	if dec.More() {
		return nil, http.StatusBadRequest, "malformed", "malformed JSON body: trailing data after the object"
	}
	problem, badKey := strictCheck(seen.Bytes())
	if problem != "" {
		return nil, http.StatusBadRequest, "malformed", problem
	}
	switch n := len(req.Entries); {
	case n == 0:
		return nil, http.StatusBadRequest, "malformed", `"entries" must hold at least one entry`
	case n > a.cfg.MaxBatchEntries:
		return nil, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("%d entries exceed api.max_batch_entries = %d", n, a.cfg.MaxBatchEntries)
	}
	entries = make([]kmblog.Entry, len(req.Entries))
	var buf bytes.Buffer
	for i, e := range req.Entries {
		switch {
		case e.Key == nil:
			return nil, http.StatusBadRequest, "malformed", fmt.Sprintf("entries[%d].key is required", i)
		case len(*e.Key) > a.cfg.MaxKeyBytes:
			return nil, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("entries[%d].key is %d bytes, over api.max_key_bytes = %d", i, len(*e.Key), a.cfg.MaxKeyBytes)
		case !validKey(*e.Key) || badKey != nil && badKey[i]:
			return nil, http.StatusBadRequest, "invalid_key", fmt.Sprintf("entries[%d].key: must be non-empty, valid UTF-8 without control characters", i)
		case e.Value == nil:
			return nil, http.StatusBadRequest, "malformed", fmt.Sprintf("entries[%d].value is required (any JSON value, null included)", i)
		}
		buf.Reset()
		if err := json.Compact(&buf, e.Value); err != nil {
			return nil, http.StatusBadRequest, "malformed", fmt.Sprintf("entries[%d].value: %v", i, err)
		}
		if buf.Len() > a.cfg.MaxValueBytes {
			return nil, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("entries[%d].value is %d bytes, over api.max_value_bytes = %d", i, buf.Len(), a.cfg.MaxValueBytes)
		}
		entries[i] = kmblog.Entry{Key: *e.Key, Value: bytes.Clone(buf.Bytes())}
	}
	return entries, 0, "", ""
}

type keyResponse struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	Position uint64          `json:"position"`
}

func (a *API) getKey(w http.ResponseWriter, r *http.Request) {
	counts := &a.m.getReqs
	tenant, key := r.PathValue("tenant"), r.PathValue("key")
	r, w, done := a.traced(w, r, spans.Query, tenant)
	defer done()
	if !a.checkTenant(w, counts, tenant) {
		return
	}
	if _, ok := a.authorize(w, r, counts, tenant, auth.Read); !ok {
		return
	}
	if !validKey(key) || len(key) > a.cfg.MaxKeyBytes {
		a.reject(w, counts, http.StatusBadRequest, "invalid_key", "key must be non-empty UTF-8 without control characters, at most api.max_key_bytes long")
		return
	}
	start := time.Now()
	v, err := a.backend.Get(tenant, key)
	a.m.queryDuration.ObserveDurationWithExemplar(time.Since(start), a.traceID(r))
	if err != nil {
		a.backendError(w, r, counts, err)
		return
	}
	counts.ok.Inc()
	writeJSON(w, http.StatusOK, keyResponse{Key: key, Value: v.Data, Position: v.Position})
}

type entryJSON struct {
	Position  uint64          `json:"position"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Timestamp string          `json:"timestamp"`
	Principal string          `json:"principal,omitempty"` // who wrote it; omitted when written without authentication
}

type entriesResponse struct {
	Entries []entryJSON `json:"entries"`
	Next    uint64      `json:"next"`
}

func (a *API) readEntries(w http.ResponseWriter, r *http.Request) {
	counts := &a.m.readReqs
	tenant := r.PathValue("tenant")
	r, w, done := a.traced(w, r, spans.Query, tenant)
	defer done()
	if !a.checkTenant(w, counts, tenant) {
		return
	}
	if _, ok := a.authorize(w, r, counts, tenant, auth.Read); !ok {
		return
	}
	q := r.URL.Query()
	from := uint64(1)
	if s := q.Get("from"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v == 0 {
			a.reject(w, counts, http.StatusBadRequest, "bad_request", fmt.Sprintf("from=%q: accepted a position >= 1", s))
			return
		}
		from = v
	}
	limit := DefaultReadLimit
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > a.cfg.MaxReadLimit {
			a.reject(w, counts, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit=%q: accepted 1..%d", s, a.cfg.MaxReadLimit))
			return
		}
		limit = v
	}
	start := time.Now()
	entries, next, err := a.backend.Entries(tenant, from, limit)
	a.m.queryDuration.ObserveDurationWithExemplar(time.Since(start), a.traceID(r))
	if err != nil {
		a.backendError(w, r, counts, err)
		return
	}
	resp := entriesResponse{Entries: make([]entryJSON, len(entries)), Next: next}
	for i, e := range entries {
		resp.Entries[i] = entryJSON{e.Position, e.Key, e.Value, e.Timestamp.Format(time.RFC3339Nano), e.Principal}
	}
	counts.ok.Inc()
	writeJSON(w, http.StatusOK, resp)
}

// checkTenant rejects a request whose tenant id is malformed.
func (a *API) checkTenant(w http.ResponseWriter, c *requestCounters, tenant string) bool {
	if validTenant(tenant) {
		return true
	}
	a.reject(w, c, http.StatusBadRequest, "invalid_tenant", fmt.Sprintf("tenant %q: accepted [a-z0-9][a-z0-9_-]{0,63}", tenant))
	return false
}

// reject answers a request refused before it reached the node; c, when
// not nil, counts it.
func (a *API) reject(w http.ResponseWriter, c *requestCounters, status int, code, msg string) {
	if c != nil {
		c.clientError.Inc()
	}
	writeError(w, status, code, msg)
}

func (a *API) backendError(w http.ResponseWriter, r *http.Request, c *requestCounters, err error) {
	var notLeader *node.NotLeaderError
	switch {
	case errors.As(err, &notLeader) && c.redirect != nil:
		c.redirect.Inc()
		// Every node of a cluster serves the same scheme.
		scheme := "http://"
		if r.TLS != nil {
			scheme = "https://"
		}
		w.Header().Set("Location", scheme+notLeader.LeaderAPIAddr+r.URL.RequestURI())
		writeError(w, http.StatusTemporaryRedirect, "not_leader", err.Error())
	case errors.Is(err, node.ErrNoLeader):
		c.err.Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "no_leader", err.Error())
	case errors.Is(err, node.ErrOutcomeUnknown):
		c.err.Inc()
		writeError(w, http.StatusServiceUnavailable, "timeout", err.Error())
	case errors.Is(err, node.ErrLostLeadership):
		c.err.Inc()
		writeError(w, http.StatusServiceUnavailable, "leadership_lost", err.Error())
	case errors.Is(err, node.ErrStaleRequest):
		c.clientError.Inc()
		writeError(w, http.StatusConflict, "stale_request", err.Error())
	case errors.Is(err, node.ErrNotFound):
		c.clientError.Inc()
		writeError(w, http.StatusNotFound, "not_found", "not found")
	case errors.Is(err, node.ErrNotReady):
		c.err.Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
	case errors.Is(err, node.ErrShuttingDown):
		c.err.Inc()
		writeError(w, http.StatusServiceUnavailable, "shutting_down", err.Error())
	case errors.Is(err, node.ErrRemoved):
		c.err.Inc()
		writeError(w, http.StatusServiceUnavailable, "removed", err.Error())
	case errors.Is(err, node.ErrBadConfig):
		c.clientError.Inc()
		writeError(w, http.StatusBadRequest, "bad_config", err.Error())
	case errors.Is(err, node.ErrReconfiguring):
		c.clientError.Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusConflict, "reconfiguring", err.Error())
	case errors.Is(err, node.ErrDiskFull):
		c.err.Inc()
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusInsufficientStorage, "disk_full", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		c.err.Inc()
		writeError(w, http.StatusServiceUnavailable, "timeout", "request cancelled before it was queued; nothing was appended")
	default:
		c.err.Inc()
		a.logger.Error("request failed", slog.String("error", err.Error()))
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	}
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Headers that make an append idempotent: a retry carrying the same pair
// is executed at most once and answered with the first result.
const (
	HeaderClientID  = "Kmb-Client-Id"
	HeaderRequestID = "Kmb-Request-Id"
)

func idempotencyKey(r *http.Request) (client, request uint64, err error) {
	c, q := r.Header.Get(HeaderClientID), r.Header.Get(HeaderRequestID)
	if c == "" && q == "" {
		return 0, 0, nil
	}
	client, err1 := strconv.ParseUint(c, 10, 64)
	request, err2 := strconv.ParseUint(q, 10, 64)
	if err1 != nil || err2 != nil || client == 0 || request == 0 {
		return 0, 0, fmt.Errorf("%s and %s must both be set to integers >= 1 (got %q, %q)", HeaderClientID, HeaderRequestID, c, q)
	}
	return client, request, nil
}
