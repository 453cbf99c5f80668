package api

import (
	"net/http"

	"github.com/kmb-db/kmb/auth"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// Option configures an API beyond its Config.
type Option func(*API)

// WithTokens makes every request authenticate with "Authorization:
// Bearer <secret>" against tokens, and checks the principal's tenants and
// rights.
func WithTokens(tokens *auth.Store) Option { return func(a *API) { a.tokens = tokens } }

// WithClientCertificates makes the subject CN of a request's verified TLS
// client certificate its principal when the request carries no bearer
// token: the principal of that name in the tokens file, or, without one,
// a principal with every right.
func WithClientCertificates() Option { return func(a *API) { a.certs = true } }

// Reasons of kmb_auth_failures_total.
const (
	AuthMissing            = "missing_credentials"
	AuthInvalidToken       = "invalid_token"
	AuthUnknownCertificate = "unknown_certificate"
	AuthForbiddenTenant    = "forbidden_tenant"
	AuthForbiddenRight     = "forbidden_right"
)

// authMetrics are kmb_auth_failures_total's children, resolved once.
type authMetrics struct {
	missing, invalidToken, unknownCert, forbiddenTenant, forbiddenRight *metric.Counter
}

func newAuthMetrics(r *metric.Registry) authMetrics {
	v := r.NewCounterVec("kmb_auth_failures_total",
		"Client API requests refused by authentication (401: missing_credentials, invalid_token, unknown_certificate) or authorization (403: forbidden_tenant, forbidden_right).",
		"reason")
	return authMetrics{
		missing:         v.With(AuthMissing),
		invalidToken:    v.With(AuthInvalidToken),
		unknownCert:     v.With(AuthUnknownCertificate),
		forbiddenTenant: v.With(AuthForbiddenTenant),
		forbiddenRight:  v.With(AuthForbiddenRight),
	}
}

// authOn reports whether requests must authenticate.
func (a *API) authOn() bool { return a.tokens != nil || a.certs }

// authorize returns the name of the principal that may exercise right on
// tenant (on any tenant when tenant is "", on every one when it is "*"),
// "" when authentication is off. c counts the refusal in kmb_requests_total
// when not nil. Otherwise it answers 401 or 403,
// counts the refusal, and reports false: nothing more may be done.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, c *requestCounters, tenant string, right auth.Right) (string, bool) {
	if !a.authOn() {
		return "", true
	}
	p, reason := a.authenticate(r)
	if p == nil {
		w.Header()["Www-Authenticate"] = bearerChallenge
		switch reason {
		case AuthMissing:
			a.am.missing.Inc()
		case AuthInvalidToken:
			a.am.invalidToken.Inc()
		default:
			a.am.unknownCert.Inc()
		}
		a.reject(w, c, http.StatusUnauthorized, "unauthenticated", unauthenticatedMessage[reason])
		return "", false
	}
	switch {
	case tenant == "" && p.Rights&right == right:
		// Any tenant: the right alone is asked for.
	case tenant == "":
		a.am.forbiddenRight.Inc()
		a.reject(w, c, http.StatusForbidden, "forbidden", "principal "+p.Name+" lacks the "+right.String()+" right")
		return "", false
	case !p.Allows(tenant, 0):
		a.am.forbiddenTenant.Inc()
		a.reject(w, c, http.StatusForbidden, "forbidden", "principal "+p.Name+" may not use tenant "+tenant)
		return "", false
	case !p.Allows(tenant, right):
		a.am.forbiddenRight.Inc()
		a.reject(w, c, http.StatusForbidden, "forbidden", "principal "+p.Name+" lacks the "+right.String()+" right on tenant "+tenant)
		return "", false
	}
	return p.Name, true
}

var bearerChallenge = []string{`Bearer realm="kmb"`}

var unauthenticatedMessage = map[string]string{
	AuthMissing:            "authentication required: send Authorization: Bearer <secret>",
	AuthInvalidToken:       "the bearer token is not valid",
	AuthUnknownCertificate: "the client certificate's subject CN names no principal in the tokens file",
}

// authenticate identifies the request's principal, or says why it cannot.
func (a *API) authenticate(r *http.Request) (*auth.Principal, string) {
	if h := r.Header["Authorization"]; len(h) > 0 && a.tokens != nil {
		secret, ok := auth.BearerSecret(h[0])
		if !ok {
			return nil, AuthInvalidToken
		}
		if p := a.tokens.Authenticate(secret); p != nil {
			return p, ""
		}
		return nil, AuthInvalidToken
	}
	if a.certs && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if auth.ValidName(cn) != nil {
			return nil, AuthUnknownCertificate
		}
		if a.tokens == nil {
			return auth.Everyone(cn), ""
		}
		if p := a.tokens.Current().ByName(cn); p != nil {
			return p, ""
		}
		return nil, AuthUnknownCertificate
	}
	return nil, AuthMissing
}
