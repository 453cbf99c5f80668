package api

import "github.com/kmb-db/kmb/telemetry/metric"

// requestCounters are the pre-resolved kmb_requests_total children of one
// method, so counting a request is one sharded add and no label lookup.
type requestCounters struct {
	ok, clientError, err, redirect *metric.Counter
}

type apiMetrics struct {
	appendReqs, getReqs, readReqs, configReqs requestCounters
	inFlight                                  *metric.Gauge
	writeDuration                             *metric.Histogram
	queryDuration                             *metric.Histogram
}

// Label values of kmb_requests_total.
const (
	MethodAppend      = "append"
	MethodGetKey      = "get_key"
	MethodReadEntries = "read_entries"
	// MethodClusterConfig: GET and POST /v1/cluster/config.
	MethodClusterConfig = "cluster_config"

	StatusOK          = "ok"
	StatusClientError = "client_error"
	StatusError       = "error"
	StatusRedirect    = "redirect"
)

func newAPIMetrics(r *metric.Registry) apiMetrics {
	if r == nil {
		r = metric.NewRegistry()
	}
	reqs := r.NewCounterVec("kmb_requests_total",
		"Client API requests by method (append, get_key, read_entries, cluster_config) and status: ok, redirect (307 to the leader), client_error (4xx: the request was rejected) or error (5xx: the node could not serve it).",
		"method", "status")
	counters := func(method string) requestCounters {
		return requestCounters{
			ok:          reqs.With(method, StatusOK),
			clientError: reqs.With(method, StatusClientError),
			err:         reqs.With(method, StatusError),
		}
	}
	appendCounters := counters(MethodAppend)
	appendCounters.redirect = reqs.With(MethodAppend, StatusRedirect) // only writes are redirected
	configCounters := counters(MethodClusterConfig)
	configCounters.redirect = reqs.With(MethodClusterConfig, StatusRedirect)
	durations := metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}
	return apiMetrics{
		appendReqs:    appendCounters,
		getReqs:       counters(MethodGetKey),
		readReqs:      counters(MethodReadEntries),
		configReqs:    configCounters,
		inFlight:      r.NewGauge("kmb_requests_in_flight", "Client API requests being processed."),
		writeDuration: r.NewHistogram("kmb_write_duration_seconds", "Latency of writes this node tried to commit, from validation to commit and apply (redirects and refusals excluded).", durations),
		queryDuration: r.NewHistogram("kmb_query_duration_seconds", "Latency of accepted reads (key and log range reads).", durations),
	}
}
