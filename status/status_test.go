package status

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestHandlerGolden(t *testing.T) {
	snap := Snapshot{
		NodeID: 1, Status: StateNormal, View: 5, CommitNumber: 12345, OpNumber: 12400,
		IsLeader: true, ClusterSize: 3, HealthyReplicas: 3, LeaderID: 1, Epoch: 2,
		Replicas:   NewMembers([]Replica{{ID: 1, Addr: "10.0.0.1:7001"}, {ID: 2, Addr: "10.0.0.2:7001"}, {ID: 4, Addr: "10.0.0.4:7001"}}),
		ChainHead:  ChainHead{Op: 12390, Hash: "5f1c0a3e9d2b7f6c4a8e1d0b3c5f7a9e2d4b6f8a0c1e3d5f7b9a2c4e6f8d0b1a"},
		Log:        Log{FirstOp: 1, LastOp: 12400, LastPosition: 99000, SizeBytes: 524288000},
		Projection: Projection{AppliedPosition: 98990, Lag: 10, ActiveTenants: 7},
		Checkpoint: Checkpoint{Op: 12000, Position: 95000, Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), SizeBytes: 10485760, DurationSeconds: 0.25},
		Build:      Build{Version: "v0.1.0", Revision: "abc123", GoVersion: "go1.26"},
	}
	mux := http.NewServeMux()
	Mount(mux, func() Snapshot { return snap })
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("code %d", rec.Code)
	}
	golden := filepath.Join("testdata", "status.golden.json")
	if *update {
		if err := os.WriteFile(golden, rec.Body.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body.Bytes(), want) {
		t.Errorf("body differs from %s:\n%s", golden, rec.Body.String())
	}
}

// The contract names eight fields every /status answer carries.
func TestContractFields(t *testing.T) {
	b, err := json.Marshal(Snapshot{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"node_id", "status", "view", "commit_number", "op_number", "is_leader", "cluster_size", "healthy_replicas"} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing %q", k)
		}
	}
}

func TestRejectsOtherMethods(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux, func() Snapshot { return Snapshot{} })
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/status", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /status = %d, want 405", rec.Code)
	}
}

// Members keeps Snapshot comparable: equal when made by one NewMembers,
// and decodes what it encodes.
func TestMembers(t *testing.T) {
	a := NewMembers([]Replica{{ID: 1, Addr: "h:1"}})
	s1, s2 := Snapshot{Replicas: a}, Snapshot{Replicas: a}
	if s1 != s2 {
		t.Fatal("snapshots sharing Members differ")
	}
	if b := NewMembers([]Replica{{ID: 1, Addr: "h:1"}}); (Snapshot{Replicas: b}) == s1 || !b.Same(a) {
		t.Fatal("Members made twice: == must tell them apart (the publisher reuses one), Same must not")
	}
	js, err := json.Marshal(s1)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(js, &back); err != nil || !back.Replicas.Same(a) {
		t.Fatalf("round trip: %v %+v", err, back.Replicas.List())
	}
	if js, _ := json.Marshal(Snapshot{}); !bytes.Contains(js, []byte(`"replicas":[]`)) {
		t.Fatalf("no replicas encode as %s", js)
	}
}
