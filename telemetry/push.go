package telemetry

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/kmb-db/kmb/telemetry/metric"
)

// Push sends the families of reg to the Prometheus Pushgateway at
// gatewayURL under job and grouping, with push-add semantics (HTTP POST):
// families pushed before under the same group and absent from reg keep
// their values. One-shot commands use it, since they exit before any
// scrape; a command that failed leaves its last-success gauges out, so a
// failure never overwrites an earlier success.
func Push(ctx context.Context, gatewayURL, job string, grouping map[string]string, reg *metric.Registry) error {
	pr := prometheus.NewRegistry()
	if err := pr.Register(newBridge(reg, nil)); err != nil {
		return err
	}
	p := push.New(gatewayURL, job).Gatherer(pr)
	for k, v := range grouping {
		p = p.Grouping(k, v)
	}
	if err := p.AddContext(ctx); err != nil {
		return fmt.Errorf("push to %s: %w", gatewayURL, err)
	}
	return nil
}
