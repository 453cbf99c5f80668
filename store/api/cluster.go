package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kmb-db/kmb/auth"
	"github.com/kmb-db/kmb/store/node"
	"github.com/kmb-db/kmb/store/vsr"
)

// Reconfigurer is implemented by backends whose cluster can change its
// members; *node.Node is one.
type Reconfigurer interface {
	Reconfigure(ctx context.Context, members []vsr.Member, principal string) (node.ReconfigureResult, error)
	Membership() (epoch uint64, members []vsr.Member, reconfiguring bool)
}

// configBody is the JSON of GET and POST /v1/cluster/config.
type configBody struct {
	Epoch         uint64          `json:"epoch,omitempty"`
	Op            uint64          `json:"op,omitempty"`
	Replicas      []configReplica `json:"replicas"`
	Reconfiguring *bool           `json:"reconfiguring,omitempty"`
}

type configReplica struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
}

// maxConfigBody bounds a POST /v1/cluster/config body.
const maxConfigBody = 64 << 10

// reconfigureTimeout bounds how long a reconfiguration request waits for
// its config op to commit.
const reconfigureTimeout = 30 * time.Second

// mountCluster registers /v1/cluster/config when the backend can be
// reconfigured: GET shows the configuration, POST changes it (the admin
// right, on the leader; followers redirect).
func (a *API) mountCluster() {
	rc, ok := a.backend.(Reconfigurer)
	if !ok {
		return
	}
	a.mux.HandleFunc("/v1/cluster/config", func(w http.ResponseWriter, r *http.Request) {
		c := &a.m.configReqs
		switch r.Method {
		case http.MethodGet:
			if _, ok := a.authorize(w, r, c, "", auth.Read); !ok {
				return
			}
			epoch, members, pending := rc.Membership()
			writeJSON(w, http.StatusOK, configBody{Epoch: epoch, Replicas: toReplicas(members), Reconfiguring: &pending})
			c.ok.Inc()
		case http.MethodPost:
			a.reconfigure(w, r, c, rc)
		default:
			w.Header().Set("Allow", "GET, POST")
			a.reject(w, c, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" "+r.URL.Path+": GET or POST")
		}
	})
}

func (a *API) reconfigure(w http.ResponseWriter, r *http.Request, c *requestCounters, rc Reconfigurer) {
	principal, ok := a.authorize(w, r, c, "", auth.Admin)
	if !ok {
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxConfigBody))
	dec.DisallowUnknownFields()
	var body configBody
	if err := dec.Decode(&body); err != nil {
		a.reject(w, c, http.StatusBadRequest, "malformed", "body: want {\"replicas\":[{\"id\":N,\"addr\":\"host:port\"},...]}: "+strings.TrimPrefix(err.Error(), "json: "))
		return
	}
	if dec.More() {
		a.reject(w, c, http.StatusBadRequest, "malformed", "body: one JSON object only")
		return
	}
	members := make([]vsr.Member, len(body.Replicas))
	for i, m := range body.Replicas {
		members[i] = vsr.Member{ID: m.ID, Addr: m.Addr}
	}
	ctx, cancel := context.WithTimeout(r.Context(), reconfigureTimeout)
	defer cancel()
	res, err := rc.Reconfigure(ctx, members, principal)
	if err != nil {
		a.backendError(w, r, c, err)
		return
	}
	a.logger.Info("configuration changed", slog.Uint64("epoch", res.Epoch), slog.Uint64("op", res.Op), slog.String("principal", principal))
	writeJSON(w, http.StatusOK, configBody{Epoch: res.Epoch, Op: res.Op, Replicas: toReplicas(res.Replicas)})
	c.ok.Inc()
}

func toReplicas(ms []vsr.Member) []configReplica {
	out := make([]configReplica, len(ms))
	for i, m := range ms {
		out[i] = configReplica{ID: m.ID, Addr: m.Addr}
	}
	return out
}
