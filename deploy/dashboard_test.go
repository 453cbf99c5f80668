package deploy

import (
	"encoding/json"
	"strings"
	"testing"
)

type dashboard struct {
	SchemaVersion int    `json:"schemaVersion"`
	UID           string `json:"uid"`
	Title         string `json:"title"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Datasource *struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
			IncludeAll bool   `json:"includeAll"`
			Multi      bool   `json:"multi"`
			AllValue   string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		RefID      string `json:"refId"`
		Exemplar   bool   `json:"exemplar"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// The dashboard is valid JSON with a ${datasource} Prometheus variable and
// an instance variable, every query on that data source, the monitoring
// page's key panels, leader and replica status, fsync and replication
// panels, and exemplars on latency panels.
func TestDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want about 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Name {
		case "datasource":
			if v.Type != "datasource" || v.Query != "prometheus" {
				t.Errorf("datasource variable: type %q query %v, want a prometheus data source variable", v.Type, v.Query)
			}
		case "instance", "job":
			if v.Type != "query" || v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("%s variable must query ${datasource}", v.Name)
			}
		}
		if v.Name == "instance" && (!v.Multi || !v.IncludeAll || v.AllValue != ".*") {
			t.Errorf("instance variable: multi %v includeAll %v allValue %q", v.Multi, v.IncludeAll, v.AllValue)
		}
	}
	for _, want := range []string{"datasource", "job", "instance"} {
		if !vars[want] {
			t.Errorf("no %s variable", want)
		}
	}

	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	ids := map[int]bool{}
	titles := ""
	exemplarPanels := 0
	for _, p := range all {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		titles += strings.ToLower(p.Title) + "\n"
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		exemplar := false
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %q with refId %q", p.Title, tg.Expr, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: target %s does not use ${datasource}", p.Title, tg.RefID)
			}
			if !strings.Contains(tg.Expr, `job="$job"`) {
				t.Errorf("panel %q: target %s is not scoped to the job: %s", p.Title, tg.RefID, tg.Expr)
			}
			if tg.Exemplar {
				exemplar = true
				if !strings.Contains(tg.Expr, "_bucket") {
					t.Errorf("panel %q: exemplars need the raw buckets, not %s", p.Title, tg.Expr)
				}
			}
		}
		if exemplar {
			exemplarPanels++
			if !strings.Contains(strings.ToLower(p.Title), "latency") {
				t.Errorf("exemplars on %q, a panel that is not a latency panel", p.Title)
			}
			if !strings.Contains(p.Description, "OpenMetrics") || !strings.Contains(p.Description, "exemplar") {
				t.Errorf("panel %q: its description should say exemplars arrive with OpenMetrics scraping", p.Title)
			}
		}
	}
	if exemplarPanels < 2 {
		t.Errorf("%d latency panels with exemplars, want write and read", exemplarPanels)
	}
	for _, want := range []string{
		"write throughput", "write latency p50/p95/p99", "read latency p50/p95/p99", "active tenants",
		"projection lag", "view change history", "error ratio", "requests by method and status",
		"leader", "replica status", "fsync latency", "replication round trip", "replication messages",
	} {
		if !strings.Contains(titles, want) {
			t.Errorf("no panel titled like %q", want)
		}
	}
	t.Logf("%d panels, %d with exemplars", len(all), exemplarPanels)
}
