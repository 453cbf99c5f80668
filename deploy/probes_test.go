package deploy

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// block returns the lines indented under the first line matching "key:".
func block(t *testing.T, text, key string) string {
	t.Helper()
	ls := lines(text)
	for i, ln := range ls {
		if strings.TrimSpace(ln) != key+":" {
			continue
		}
		indent := len(ln) - len(strings.TrimLeft(ln, " "))
		var out []string
		for _, l := range ls[i+1:] {
			if strings.TrimSpace(l) != "" && len(l)-len(strings.TrimLeft(l, " ")) <= indent {
				break
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
	t.Fatalf("no %s: in the manifest", key)
	return ""
}

func field(t *testing.T, blk, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s+` + key + `:\s*(\S+)`).FindStringSubmatch(blk)
	if m == nil {
		t.Fatalf("no %s in\n%s", key, blk)
	}
	return m[1]
}

func intField(t *testing.T, blk, key string) int {
	t.Helper()
	n, err := strconv.Atoi(field(t, blk, key))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The StatefulSet probes the right endpoints on the metrics port, with
// thresholds that neither kill a recovering replica nor leave a dead one in
// rotation.
func TestKubernetesProbes(t *testing.T) {
	y := readFile(t, "kubernetes/probes.yaml")
	if !regexp.MustCompile(`(?m)- name: metrics\n\s+containerPort: 9090$`).MatchString(y) {
		t.Error("no container port named metrics on 9090")
	}
	want := map[string]string{"livenessProbe": "/health/live", "readinessProbe": "/health/ready", "startupProbe": "/health/live"}
	for probe, path := range want {
		b := block(t, y, probe)
		if got := field(t, b, "path"); got != path {
			t.Errorf("%s path %s, want %s", probe, got, path)
		}
		if got := field(t, b, "port"); got != "metrics" {
			t.Errorf("%s port %s, want metrics", probe, got)
		}
		if to, period := intField(t, b, "timeoutSeconds"), intField(t, b, "periodSeconds"); to > period {
			t.Errorf("%s: timeout %ds longer than its period %ds", probe, to, period)
		}
	}
	startup := block(t, y, "startupProbe")
	if budget := intField(t, startup, "periodSeconds") * intField(t, startup, "failureThreshold"); budget < 30 {
		t.Errorf("startupProbe allows %ds to start, want at least 30s", budget)
	}
	live := block(t, y, "livenessProbe")
	// kmbd turns /health/live 503 after an event loop stall of 30s; do not
	// restart on a single slow probe.
	if n := intField(t, live, "failureThreshold"); n < 3 {
		t.Errorf("livenessProbe failureThreshold %d, want at least 3", n)
	}
	ready := block(t, y, "readinessProbe")
	if window := intField(t, ready, "periodSeconds") * intField(t, ready, "failureThreshold"); window > 30 {
		t.Errorf("readinessProbe takes %ds to remove a replica, want at most 30s", window)
	}
	// kmbd drains for up to 30s on SIGTERM.
	if m := regexp.MustCompile(`terminationGracePeriodSeconds: (\d+)`).FindStringSubmatch(y); m == nil {
		t.Error("no terminationGracePeriodSeconds")
	} else if n, _ := strconv.Atoi(m[1]); n <= 30 {
		t.Errorf("terminationGracePeriodSeconds %d does not cover kmbd's 30s drain", n)
	}
	if !strings.Contains(y, "publishNotReadyAddresses: true") {
		t.Error("the peer Service must publish not-ready pods: replicas talk while they are not ready")
	}
}
