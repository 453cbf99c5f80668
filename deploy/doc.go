// Package deploy holds kmb's operations pack and its tests: Prometheus
// alerting and recording rules with promtool unit tests (prometheus/), the
// Grafana dashboard (grafana/), log shipping configurations for Promtail and
// Fluent Bit (logging/), and Kubernetes probes (kubernetes/). The runbooks
// are in docs/operations.md.
//
// The package has no code; its tests check the files: promtool check and
// test rules, that every PromQL expression in the rules, the dashboard and
// the operations guide parses, that the log shipping configurations match
// real kmbd log lines, and, end to end, a real Prometheus server scraping a
// three-node kmbd cluster with these rules loaded.
package deploy
