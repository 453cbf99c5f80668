package store

import (
	"os/exec"
	"strings"
	"testing"
)

// goList runs `go list` from the module root.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// instrumentationSDKs are the packages only telemetry/ may depend on.
var instrumentationSDKs = []string{
	"github.com/prometheus/client_golang",
	"go.opentelemetry.io/otel/sdk",
	"go.opentelemetry.io/otel/exporters",
	"github.com/VictoriaMetrics/metrics",
}

// The storage engine never depends on a metrics client, the OpenTelemetry
// SDK or an exporter, directly or not.
func TestStoreDependsOnNoInstrumentationSDK(t *testing.T) {
	for _, dep := range goList(t, "-deps", "./store/...", "./health", "./status", "./profiling", "./telemetry/metric", "./telemetry/logging") {
		for _, banned := range instrumentationSDKs {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("store or a helper package depends on %s", dep)
			}
		}
	}
}

// telemetry/metric, which the store records into, is standard library only.
func TestMetricPrimitivesAreStdlibOnly(t *testing.T) {
	for _, dep := range goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./telemetry/metric") {
		if dep != "github.com/kmb-db/kmb/telemetry/metric" {
			t.Errorf("telemetry/metric depends on non-standard package %s", dep)
		}
	}
}

// Only telemetry/ imports the SDKs directly (tests and benchmarks aside).
func TestOnlyTelemetryImportsSDKs(t *testing.T) {
	lines := goList(t, "-f", "{{.ImportPath}}:{{join .Imports \",\"}}", "./...")
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, ":")
		if pkg == "github.com/kmb-db/kmb/telemetry" {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			for _, banned := range instrumentationSDKs {
				if strings.HasPrefix(imp, banned) {
					t.Errorf("%s imports %s; only telemetry may", pkg, imp)
				}
			}
		}
	}
}

// Nothing registers handlers on http.DefaultServeMux: net/http/pprof does
// as a side effect of being imported, so no package imports it.
func TestNoDefaultServeMuxPprof(t *testing.T) {
	for _, dep := range goList(t, "-deps", "./...") {
		if dep == "net/http/pprof" {
			t.Error("net/http/pprof is linked in; it registers on http.DefaultServeMux")
		}
	}
}
