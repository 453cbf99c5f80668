package deploy

// End to end: three real kmbd processes, a real Prometheus server scraping
// them every second with alerts.yml and recordings.yml loaded, real load,
// and assertions through Prometheus' HTTP API.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

type promSample struct {
	Metric map[string]string
	Value  float64
}

// promQuery runs an instant query.
func promQuery(base, q string) ([]promSample, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, body.Error)
	}
	var out []promSample
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q: %v", q, s, err)
		}
		out = append(out, promSample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
	Value  string            `json:"value"`
}

func promAlerts(base string) ([]promAlert, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/api/v1/alerts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Alerts []promAlert `json:"alerts"`
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Data.Alerts, err
}

type promRule struct {
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
	Labels    map[string]string `json:"labels"`
	Duration  float64           `json:"duration"`
}

func promRules(base string) ([]promRule, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/api/v1/rules")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Groups []struct {
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	var out []promRule
	for _, g := range body.Data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

func describe(samples []promSample, label string) string {
	var parts []string
	for _, s := range samples {
		parts = append(parts, fmt.Sprintf("%s=%.4g", s.Metric[label], s.Value))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func describeAlerts(alerts []promAlert) string {
	var parts []string
	for _, a := range alerts {
		parts = append(parts, fmt.Sprintf("%s{instance=%q} %s value=%s", a.Labels["alertname"], a.Labels["instance"], a.State, a.Value))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

func TestE2EPrometheusScrapesCluster(t *testing.T) {
	t.Parallel()
	prometheus := kmbdtest.RequireTool(t, "KMB_PROMETHEUS", "prometheus")
	kmbdtest.Binary(t) // built before the clock starts
	started := time.Now()

	// Three replicas on kernel-chosen ports, as scripts/cluster.sh runs them,
	// backing up to a directory, so the backup series and alerts are real.
	c := kmbdtest.StartCluster(t, nil, "--backup-repo", "file://"+t.TempDir())
	// nodes[id-1] is node id; tels are its telemetry addresses, which
	// Prometheus scrapes and names instances by.
	nodes := []*kmbdtest.Node{c.Nodes[1], c.Nodes[2], c.Nodes[3]}
	var tels []string
	for _, n := range nodes {
		tels = append(tels, strings.TrimPrefix(n.Tel, "http://"))
	}
	promAddr := kmbdtest.FreeAddrs(t, 1)[0]
	t.Logf("cluster ready after %s", time.Since(started).Round(time.Millisecond))

	// Prometheus scraping every second, evaluating every second, with the
	// pack's rules.
	dir := t.TempDir()
	recordings, err := filepath.Abs(recordingsFile)
	if err != nil {
		t.Fatal(err)
	}
	alerts, _ := filepath.Abs(alertsFile)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
  - %q
scrape_configs:
  - job_name: kmb
    static_configs:
      - targets: [%q, %q, %q]
`, recordings, alerts, tels[0], tels[1], tels[2])
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := "http://" + promAddr
	pp := kmbdtest.Start(t, "prometheus", nil, prometheus,
		"--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--web.enable-lifecycle", "--log.level=warn")
	kmbdtest.WaitFor(t, "prometheus ready", 30*time.Second, func() bool {
		if pp.Exited() {
			t.Fatalf("prometheus exited:\n%s", pp.Output.String())
		}
		code, _ := kmbdtest.HTTPDo(t, "GET", prom+"/-/ready", "")
		return code == 200
	})

	// Load: writes through every node (followers redirect to the leader),
	// reads of keys and log ranges from every node, for 15 seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var mu sync.Mutex
	codes := map[string]map[int]int{}
	record := func(kind string, code int) {
		mu.Lock()
		defer mu.Unlock()
		if codes[kind] == nil {
			codes[kind] = map[int]int{}
		}
		codes[kind][code]++
	}
	client := &http.Client{Timeout: 5 * time.Second}
	do := func(kind string, req *http.Request) {
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			if ctx.Err() == nil {
				record(kind, 0)
			}
			return
		}
		resp.Body.Close()
		record(kind, resp.StatusCode)
	}
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				n := nodes[(w+seq)%3]
				body := fmt.Sprintf(`{"entries":[{"key":"k%d","value":%d},{"key":"w%d","value":"v%d"}]}`, seq, seq, w, seq)
				req, _ := http.NewRequest("POST", n.API+fmt.Sprintf("/v1/tenants/tenant-%d/entries", w), strings.NewReader(body))
				do("append", req)
				time.Sleep(100 * time.Millisecond)
			}
		}(w)
	}
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(r)))
			for i := 0; ctx.Err() == nil; i++ {
				n := nodes[(r+i)%3]
				req, _ := http.NewRequest("GET", n.API+fmt.Sprintf("/v1/tenants/tenant-%d/keys/w%d", rng.Intn(2), rng.Intn(2)), nil)
				do("get_key", req)
				req, _ = http.NewRequest("GET", n.API+fmt.Sprintf("/v1/tenants/tenant-%d/entries?from=1&limit=20", rng.Intn(2)), nil)
				do("read_entries", req)
				time.Sleep(100 * time.Millisecond)
			}
		}(r)
	}
	wg.Wait()
	total := 0
	for kind, m := range codes {
		for code, n := range m {
			total += n
			if code == 0 || code >= 500 {
				t.Errorf("load: %d %s requests answered %d", n, kind, code)
			}
		}
	}
	t.Logf("load: %d requests in 15s: %v", total, codes)
	if total < 200 {
		t.Errorf("load: only %d requests", total)
	}

	// What Prometheus sees.
	query := func(what, q string, ok func([]promSample) bool) []promSample {
		t.Helper()
		var got []promSample
		var qerr error
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, qerr = promQuery(prom, q)
			if qerr == nil && ok(got) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s returned %v (%v)", what, q, got, qerr)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	up := query("three targets up", `up{job="kmb"}`, func(s []promSample) bool {
		return len(s) == 3 && s[0].Value == 1 && s[1].Value == 1 && s[2].Value == 1
	})
	t.Logf("up: %s", describe(up, "instance"))
	rates := query("a write rate on some node", `rate(kmb_log_entries_total[1m])`, func(s []promSample) bool {
		for _, x := range s {
			if x.Value > 0 {
				return true
			}
		}
		return false
	})
	t.Logf("rate(kmb_log_entries_total[1m]): %s", describe(rates, "instance"))
	finite := func(s []promSample) bool {
		return len(s) == 1 && !math.IsNaN(s[0].Value) && !math.IsInf(s[0].Value, 0) && s[0].Value > 0
	}
	p95 := query("a finite P95 write latency", `histogram_quantile(0.95, sum by (le) (rate(kmb_write_duration_seconds_bucket[1m])))`, finite)
	t.Logf("P95 write latency (1m, cluster): %.3gms", p95[0].Value*1000)
	rp95 := query("a finite recorded P95 write latency", `job:kmb_write_duration_seconds:p95_rate5m{job="kmb"}`, finite)
	t.Logf("job:kmb_write_duration_seconds:p95_rate5m: %.3gms", rp95[0].Value*1000)
	lag := query("kmb_projection_lag on three nodes", `kmb_projection_lag`, func(s []promSample) bool { return len(s) == 3 })
	t.Logf("kmb_projection_lag: %s", describe(lag, "instance"))
	thr := query("cluster throughput", `job:kmb_log_entries:max_rate1m`, func(s []promSample) bool { return len(s) == 1 && s[0].Value > 0 })
	t.Logf("job:kmb_log_entries:max_rate1m: %.3g entries/s", thr[0].Value)
	rpo := query("a recovery point under a minute on the one node running the backup task",
		`time() - kmb_backup_checkpoint_timestamp_seconds and on (job, instance, node_id, task) kmb_backup_task_state{state="running"} == 1`,
		func(s []promSample) bool { return len(s) == 1 && s[0].Value < 60 })
	t.Logf("recovery point: %.3gs behind, on %s", rpo[0].Value, describe(rpo, "instance"))
	standby := query("two standby backup tasks", `kmb_backup_task_state{state="standby"} == 1`, func(s []promSample) bool { return len(s) == 2 })
	t.Logf("standby: %s", describe(standby, "instance"))
	ratio := query("the cluster error ratio", `job:kmb_requests_errors:ratio_rate5m`, func(s []promSample) bool { return len(s) == 1 })
	if ratio[0].Value != 0 {
		t.Errorf("error ratio %v under a healthy load, want 0", ratio[0].Value)
	}

	// Every rule loaded, evaluated without error; every recording rule has data.
	wantRecords := ruleNames(parseRules(t, recordingsFile))
	var rules []promRule
	kmbdtest.WaitFor(t, "every rule evaluated", 20*time.Second, func() bool {
		rules, err = promRules(prom)
		if err != nil {
			return false
		}
		for _, r := range rules {
			if r.Health != "ok" {
				return false
			}
		}
		return len(rules) > 0
	})
	records, alertRules := 0, 0
	for _, r := range rules {
		if r.LastError != "" {
			t.Errorf("rule %s: %s", r.Name, r.LastError)
		}
		switch r.Type {
		case "recording":
			records++
			if !wantRecords[r.Name] {
				t.Errorf("Prometheus loaded recording rule %s, unknown to recordings.yml", r.Name)
			}
		case "alerting":
			alertRules++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s: severity %q", r.Name, s)
			}
		}
	}
	if records != len(wantRecords) || alertRules != len(parseRules(t, alertsFile)) {
		t.Errorf("Prometheus loaded %d recording and %d alerting rules", records, alertRules)
	}
	var recNames []string
	for name := range wantRecords {
		recNames = append(recNames, name)
	}
	sort.Strings(recNames)
	for _, name := range recNames {
		got := query("data for "+name, name, func(s []promSample) bool { return len(s) > 0 })
		var vals []string
		for _, s := range got {
			vals = append(vals, strconv.FormatFloat(s.Value, 'g', 3, 64))
		}
		t.Logf("%-58s %d series: %s", name, len(got), strings.Join(vals, " "))
	}

	// No alert fires on a healthy cluster under load, and the availability
	// alerts are not even pending.
	kmbdtest.WaitFor(t, "no availability alert active", 20*time.Second, func() bool {
		as, err := promAlerts(prom)
		if err != nil {
			return false
		}
		for _, a := range as {
			switch a.Labels["alertname"] {
			case "ClusterNoQuorum", "KmbTargetDown", "KmbNodeNotReady", "HighErrorRate", "ProjectionLagHigh":
				return false
			}
		}
		return true
	})
	as, err := promAlerts(prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.State == "firing" {
			t.Errorf("alert firing on a healthy cluster: %s", describeAlerts([]promAlert{a}))
		}
	}
	t.Logf("alerts on the healthy cluster: %s", describeAlerts(as))

	// The log lines of a real cluster have the shape the shippers expect.
	for i, n := range nodes {
		checkLogLines(t, fmt.Sprintf("node %d stderr", i+1), n.Output.String())
	}

	// Drill 1: a follower dies. KmbTargetDown goes pending for it; the
	// other two replicas still share a leader, so ClusterNoQuorum stays
	// quiet.
	var leader uint64
	for i, n := range nodes {
		var s struct {
			IsLeader bool `json:"is_leader"`
		}
		resp, err := http.Get(n.Tel + "/status")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&s)
			resp.Body.Close()
		}
		if s.IsLeader {
			leader = uint64(i + 1)
		}
	}
	if leader == 0 {
		t.Fatal("no node reports itself leader")
	}
	follower := uint64(1) // the first node that is not the leader
	if leader == 1 {
		follower = 2
	}
	c.Kill(follower)
	followerInstance := tels[follower-1]
	var drill []promAlert
	kmbdtest.WaitFor(t, "KmbTargetDown pending for the killed follower", 20*time.Second, func() bool {
		drill, err = promAlerts(prom)
		if err != nil {
			return false
		}
		for _, a := range drill {
			if a.Labels["alertname"] == "KmbTargetDown" && a.Labels["instance"] == followerInstance && a.State == "pending" {
				return true
			}
		}
		return false
	})
	time.Sleep(3 * time.Second) // three more evaluations
	drill, _ = promAlerts(prom)
	for _, a := range drill {
		if a.Labels["alertname"] == "ClusterNoQuorum" {
			t.Errorf("ClusterNoQuorum active with two of three replicas sharing a leader: %s", describeAlerts(drill))
		}
	}
	hl, _ := promQuery(prom, `sum by (job) (kmb_consensus_has_leader)`)
	t.Logf("follower node %d killed: has_leader sum %s; alerts: %s", follower, describe(hl, "job"), describeAlerts(drill))

	// Drill 2: the leader dies too. The survivor cannot form a quorum:
	// ClusterNoQuorum goes pending (it fires after 30s).
	c.Kill(leader)
	kmbdtest.WaitFor(t, "ClusterNoQuorum pending after losing two of three replicas", 20*time.Second, func() bool {
		drill, err = promAlerts(prom)
		if err != nil {
			return false
		}
		for _, a := range drill {
			if a.Labels["alertname"] == "ClusterNoQuorum" {
				return true
			}
		}
		return false
	})
	t.Logf("leader node %d killed too: alerts: %s", leader, describeAlerts(drill))
	t.Logf("end to end: %s", time.Since(started).Round(time.Millisecond))
}
