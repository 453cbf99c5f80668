package main

// End-to-end tracing: three kmbd processes export spans over OTLP to a real
// Jaeger v2 on loopback; the assertions go through Jaeger's query API.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

const jaegerConfig = `
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %s
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
		Tags        []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"processes"`
}

func jaegerGet(t *testing.T, url string) []jaegerTrace {
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	return body.Data
}

// instance returns the service.instance.id of the span's process.
func (tr jaegerTrace) instance(processID string) string {
	for _, tag := range tr.Processes[processID].Tags {
		if tag.Key == "service.instance.id" {
			return fmt.Sprint(tag.Value)
		}
	}
	return ""
}

func TestE2EJaegerTraces(t *testing.T) {
	jaeger := kmbdtest.RequireTool(t, "KMB_JAEGER", "jaeger")
	addrs := kmbdtest.FreeAddrs(t, 5) // health, query http, query grpc, otlp grpc, otlp http
	cfgPath := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(jaegerConfig, addrs[0], addrs[1], addrs[2], addrs[3], addrs[4])), 0o644); err != nil {
		t.Fatal(err)
	}
	// Jaeger traces nothing of its own.
	kmbdtest.Start(t, "jaeger", []string{"OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none"}, jaeger, "--config", cfgPath)
	query := "http://" + addrs[1]
	kmbdtest.WaitFor(t, "jaeger query API", 60*time.Second, func() bool {
		resp, err := http.Get(query + "/api/services")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	// Three nodes exporting every sampled span; new traces at 1% so the
	// test's own traceparent decides.
	c := kmbdtest.StartCluster(t, debugLog, "--tracing-enabled", "--tracing-endpoint", "http://"+addrs[4], "--tracing-sample-ratio", "0.01")
	leader := c.Leader()

	const writeTrace = "5bf92f3577b34da6a3ce929d0e0e4736"
	const queryTrace = "6bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", c.Nodes[leader].API+"/v1/tenants/acme/entries", strings.NewReader(`{"entries":[{"key":"k","value":1}]}`))
	req.Header.Set("traceparent", "00-"+writeTrace+"-00f067aa0ba902b7-01")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("traced write: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest("GET", c.Nodes[leader].API+"/v1/tenants/acme/keys/k", nil)
	req.Header.Set("traceparent", "00-"+queryTrace+"-00f067aa0ba902b8-01")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("traced query: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	// The write's latency observation carries its trace id as an exemplar.
	mreq, _ := http.NewRequest("GET", c.Nodes[leader].Tel+"/metrics", nil)
	mreq.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	mresp, err := http.DefaultClient.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	om, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(om), `# {trace_id="`+writeTrace+`"}`) {
		t.Errorf("no exemplar with the write's trace id in the leader's OpenMetrics output")
	}

	// One write is one trace: kmb.write, and kmb.consensus.prepare from at
	// least two nodes.
	var write jaegerTrace
	kmbdtest.WaitFor(t, "the write's trace in Jaeger", 30*time.Second, func() bool {
		traces := jaegerGet(t, query+"/api/traces/"+writeTrace)
		if len(traces) != 1 {
			return false
		}
		write = traces[0]
		prepareNodes := map[string]bool{}
		hasWrite := false
		for _, s := range write.Spans {
			switch s.OperationName {
			case "kmb.write":
				hasWrite = true
			case "kmb.consensus.prepare":
				prepareNodes[write.instance(s.ProcessID)] = true
			}
		}
		return hasWrite && len(prepareNodes) >= 2
	})
	for _, p := range write.Processes {
		if p.ServiceName != "kmbd" {
			t.Errorf("service.name %q", p.ServiceName)
		}
	}
	kmbdtest.WaitFor(t, "the query's trace in Jaeger", 30*time.Second, func() bool {
		traces := jaegerGet(t, query+"/api/traces/"+queryTrace)
		return len(traces) == 1 && len(traces[0].Spans) >= 1 && traces[0].Spans[0].OperationName == "kmb.query"
	})

	// Killing the leader produces a kmb.view_change span.
	c.Kill(leader)
	c.Leader()
	kmbdtest.WaitFor(t, "a kmb.view_change span in Jaeger", 30*time.Second, func() bool {
		return len(jaegerGet(t, query+"/api/traces?service=kmbd&operation=kmb.view_change&limit=20")) > 0
	})
	// Log lines written inside the view change's span carry its ids.
	kmbdtest.WaitFor(t, "a view-change log line with trace_id and span_id", 10*time.Second, func() bool {
		for _, p := range c.Nodes {
			for _, l := range p.Output.LogLines(t) {
				f, _ := l["fields"].(map[string]any)
				if l["message"] == "view change started" && f["trace_id"] != nil && f["span_id"] != nil {
					return true
				}
			}
		}
		return false
	})

	// OTLP over gRPC reaches Jaeger too.
	grpcNode := kmbdtest.StartNode(t, t.TempDir(), debugLog, "--tracing-enabled", "--tracing-protocol", "grpc", "--tracing-endpoint", "http://"+addrs[3], "--tracing-sample-ratio", "1")
	const grpcTrace = "8bf92f3577b34da6a3ce929d0e0e4736"
	req, _ = http.NewRequest("POST", grpcNode.API+"/v1/tenants/acme/entries", strings.NewReader(`{"entries":[{"key":"g","value":1}]}`))
	req.Header.Set("traceparent", "00-"+grpcTrace+"-00f067aa0ba902b9-01")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("write to the gRPC-exporting node: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	kmbdtest.WaitFor(t, "the gRPC-exported trace in Jaeger", 30*time.Second, func() bool {
		return len(jaegerGet(t, query+"/api/traces/"+grpcTrace)) == 1
	})
	grpcNode.Stop(t)

	t.Logf("write trace %s: %d spans over %d processes", writeTrace, len(write.Spans), len(write.Processes))
	for _, p := range c.Nodes {
		p.Stop(t)
	}
}
