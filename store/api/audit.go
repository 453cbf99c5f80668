package api

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kmb-db/kmb/auth"
	"github.com/kmb-db/kmb/store/audit"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/node"
)

// AuditLog is a backend's committed log for audit exports; *node.Node
// returns one from AuditLog.
type AuditLog interface {
	audit.Source
	NodeID() uint64
	Cluster() string
}

// Auditor is implemented by backends that export their log.
type Auditor interface {
	AuditLog() node.AuditLog
}

// contentTypes of the audit formats.
var contentTypes = map[audit.Format]string{
	audit.JSON:   "application/json",
	audit.NDJSON: "application/x-ndjson",
	audit.CSV:    "text/csv; charset=utf-8",
}

// auditExport serves GET /v1/audit?start=&end=&tenant=&format=: the
// committed ops of the range as an audit export, streamed.
func (a *API) auditExport(w http.ResponseWriter, r *http.Request, log AuditLog) {
	q := r.URL.Query()
	f, err := audit.ParseFormat(cmp.Or(q.Get("format"), "json"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	rg, err := audit.ParseRange(q.Get("start"), q.Get("end"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", strings.ReplaceAll(err.Error(), "--", ""))
		return
	}
	if t := q.Get("tenant"); t != "" {
		if !validTenant(t) {
			writeError(w, http.StatusBadRequest, "invalid_tenant", "tenant "+strconv.Quote(t)+": accepted [a-z0-9][a-z0-9_-]{0,63}")
			return
		}
		rg.Tenant = t
	}
	w.Header().Set("Content-Type", contentTypes[f])
	w.Header().Set("Cache-Control", "no-store")
	// An export of a long range takes long: push the write deadline out
	// as it goes rather than cut it off.
	rc := http.NewResponseController(w)
	stream := &deadlineWriter{w: w, rc: rc}
	sum, err := audit.Export(r.Context(), stream, log, rg, f, audit.Meta{NodeID: log.NodeID(), Cluster: log.Cluster()}, nil)
	if err != nil {
		a.logger.Error("audit export failed", slog.String("error", err.Error()), slog.Uint64("records", sum.Records))
		if sum.Bytes == 0 && !stream.wrote {
			writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		// The status is gone; abort the response, so the client sees a
		// broken stream (and the file fails verification), not an end.
		panic(http.ErrAbortHandler)
	}
	a.logger.Info("audit export served", slog.Uint64("records", sum.Records), slog.Uint64("ops", sum.Ops),
		slog.Int64("bytes", sum.Bytes), slog.String("format", string(f)), slog.Duration("duration", sum.Duration))
}

// auditChain serves GET /v1/audit/chain?ops=N,M,...: the chain hashes of
// committed ops, for kmbd audit verify --addr.
func (a *API) auditChain(w http.ResponseWriter, r *http.Request, log AuditLog) {
	var ops []uint64
	for _, s := range strings.Split(r.URL.Query().Get("ops"), ",") {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "ops="+strconv.Quote(s)+": accepted a comma-separated list of op numbers")
			return
		}
		ops = append(ops, n)
	}
	if len(ops) > maxChainOps {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "at most "+strconv.Itoa(maxChainOps)+" ops per request")
		return
	}
	chains := make(map[string]string, len(ops))
	for _, n := range ops {
		c, err := log.Chain(n)
		if errors.Is(err, node.ErrNotFound) {
			chains[strconv.FormatUint(n, 10)] = ""
			continue
		}
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		chains[strconv.FormatUint(n, 10)] = hexChain(c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"node_id": log.NodeID(), "cluster": log.Cluster(), "chains": chains})
}

// maxChainOps bounds one /v1/audit/chain request.
const maxChainOps = 1000

func hexChain(c kmblog.Chain) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 2*len(c))
	for _, x := range c {
		b = append(b, digits[x>>4], digits[x&0xf])
	}
	return string(b)
}

// deadlineWriter extends the response's write deadline before each write.
type deadlineWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	wrote bool
}

// auditWriteWindow is how long one write of an export may take.
const auditWriteWindow = 30 * time.Second

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(auditWriteWindow))
	d.wrote = true
	return d.w.Write(p)
}

// mountAudit registers the audit routes when the backend exports its log.
func (a *API) mountAudit() {
	au, ok := a.backend.(Auditor)
	if !ok {
		return
	}
	log := au.AuditLog()
	get := func(h func(http.ResponseWriter, *http.Request, AuditLog)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet {
				w.Header().Set("Allow", http.MethodGet)
				writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" "+r.URL.Path+": only GET")
				return
			}
			h(w, r, log)
		}
	}
	a.mux.HandleFunc("/v1/audit", get(a.auditAuthorized(a.auditExport, exportTenant)))
	a.mux.HandleFunc("/v1/audit/chain", get(a.auditAuthorized(a.auditChain, anyTenant)))
}

// auditAuthorized wraps an audit route with authorization: the audit
// right, on the tenant scope returns for the request.
func (a *API) auditAuthorized(h func(http.ResponseWriter, *http.Request, AuditLog), scope func(*http.Request) string) func(http.ResponseWriter, *http.Request, AuditLog) {
	return func(w http.ResponseWriter, r *http.Request, log AuditLog) {
		if _, ok := a.authorize(w, r, nil, scope(r), auth.Audit); !ok {
			return
		}
		h(w, r, log)
	}
}

// exportTenant: an export of one tenant takes the audit right on it; one
// of the whole log (every tenant and the system ops) on every tenant.
func exportTenant(r *http.Request) string {
	return cmp.Or(r.URL.Query().Get("tenant"), auth.AllTenants)
}

// anyTenant: chain hashes reveal no entry, and verifying an export of
// one's own tenant needs them: the audit right on any tenant will do.
func anyTenant(*http.Request) string { return "" }
