package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockmoat/dockmoat/netfilter"
)

// limitCollector exports the rate limits' refusals, read from the
// kernel's rule counters at each scrape (the rules keep the count; a
// rewrite of a rule starts it again, which Prometheus reads as a counter
// reset).
type limitCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	read func(context.Context) ([]netfilter.LimitRefusal, error)
}

func newLimitCollector() *limitCollector {
	return &limitCollector{desc: prometheus.NewDesc("dockmoat_rate_limited_packets_total",
		"Packets of new connections a published port's rate limit refused (dockmoat.limit labels, allow limit:), by port, container, family and path (dnat or docker-proxy); read from the rules' counters, reset when dockmoat rewrites a rule.",
		[]string{"port", "container", "family", "path"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *limitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *limitCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	read := c.read
	c.mu.Unlock()
	if read == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	sum := map[[4]string]uint64{}
	for _, r := range counts {
		path := "dnat"
		if r.Proxy {
			path = "docker-proxy"
		}
		sum[[4]string{r.Port, r.Container, r.Family.String(), path}] += r.Packets
	}
	for k, n := range sum {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), k[0], k[1], k[2], k[3])
	}
}

// CountLimits makes /metrics read the rate limits' refusals with read
// (netfilter.LimitRefusals over the daemon's backend).
func (m *Metrics) CountLimits(read func(context.Context) ([]netfilter.LimitRefusal, error)) {
	m.limits.mu.Lock()
	defer m.limits.mu.Unlock()
	m.limits.read = read
}
