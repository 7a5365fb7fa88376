// Package metrics owns dockmoat's observability endpoint: Prometheus
// metrics about reconciles, rules and Docker connectivity, and /healthz,
// which fails when the last reconcile failed or Docker has been
// unreachable for longer than a grace period, or while the config file is
// missing or invalid.
package metrics

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dockmoat/dockmoat/netfilter"
)

// Metrics collects what the daemon reports. Safe for concurrent use.
type Metrics struct {
	reg              *prometheus.Registry
	reconciles       *prometheus.CounterVec
	duration         prometheus.Histogram
	rules            *prometheus.GaugeVec
	ports            *prometheus.GaugeVec
	containers       *prometheus.GaugeVec
	driftRepairs     prometheus.Counter
	dockerReconnects prometheus.Counter
	dockerUp         prometheus.Gauge
	labelErrors      prometheus.Gauge
	configOK         prometheus.Gauge
	disabled         prometheus.Gauge
	mode             *prometheus.GaugeVec
	observed         prometheus.Counter
	beyond           prometheus.Gauge
	auditOK          prometheus.Gauge
	limits           *limitCollector
	listFetch        *prometheus.GaugeVec

	mu          sync.Mutex
	synced      bool
	lastErr     error
	configErr   error     // the config file is missing or invalid
	dockerSince time.Time // when Docker went down; zero while up
	connectedOK bool
	now         func() time.Time
}

// New registers dockmoat's metrics on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockmoat_reconciles_total", Help: "Reconcile passes, by result (ok or error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dockmoat_reconcile_duration_seconds", Help: "Duration of a reconcile pass.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		rules: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dockmoat_rules_installed", Help: "Rules in dockmoat's chains and jumps, by address family (nftables backend: the whole inet table under ipv4).",
		}, []string{"family"}),
		ports: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dockmoat_published_ports", Help: "Published ports by state (open by policy, or closed).",
		}, []string{"family", "state"}),
		containers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dockmoat_containers", Help: "Containers with published ports: protected (all closed) or open (at least one port opened by policy).",
		}, []string{"state"}),
		driftRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dockmoat_drift_repairs_total", Help: "Passes that repaired changes made by someone else.",
		}),
		dockerReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dockmoat_docker_reconnects_total", Help: "Connections to Docker's event stream after the first.",
		}),
		dockerUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dockmoat_docker_up", Help: "1 while the Docker event stream is connected.",
		}),
		labelErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dockmoat_label_errors", Help: "Containers kept closed by an invalid dockmoat label.",
		}),
		configOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dockmoat_config_ok", Help: "1 while the config file is valid (or absent at the default path); 0 while dockmoat runs fail-closed on a config error.",
		}),
		disabled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dockmoat_protection_disabled", Help: "1 while protection is switched off by dockmoat disable (every published port follows Docker's own rules).",
		}),
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dockmoat_mode", Help: "1 for the mode dockmoat runs in: enforce (refused connections are dropped) or observe (let through, counted, logged).",
		}, []string{"mode"}),
		observed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dockmoat_observed_connections_total", Help: "New connections the policy refuses that observe mode let through (dockmoat suggest lists them).",
		}),
		beyond: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dockmoat_ports_beyond_policy", Help: "Published ports (and deny containers' egress) reachable beyond their policy at the daemon's last scheduled audit (--audit-every).",
		}),
		auditOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dockmoat_audit_ok", Help: "1 when the last scheduled audit ran, 0 when it failed (dockmoat_ports_beyond_policy then keeps its last value).",
		}),
		listFetch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dockmoat_list_fetch_ok", Help: "1 when a URL source list's last fetch succeeded, 0 when it failed (the last good copy stays in force; none: the list opens nothing).",
		}, []string{"list"}),
		now:    time.Now,
		limits: newLimitCollector(),
	}
	m.Mode(false)
	m.reg.MustRegister(m.limits, m.listFetch, m.reconciles, m.duration, m.rules, m.ports, m.containers, m.driftRepairs,
		m.dockerReconnects, m.dockerUp, m.labelErrors, m.configOK, m.disabled, m.mode, m.observed, m.beyond, m.auditOK,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ListFetch records a URL list's fetch.
func (m *Metrics) ListFetch(list string, ok bool) {
	m.listFetch.WithLabelValues(list).Set(map[bool]float64{false: 0, true: 1}[ok])
}

// ObserveSync records one reconcile pass.
func (m *Metrics) ObserveSync(res netfilter.SyncResult, err error, took time.Duration) {
	m.Mode(res.Observe)
	m.duration.Observe(took.Seconds())
	m.mu.Lock()
	m.lastErr = err
	m.synced = m.synced || err == nil
	m.mu.Unlock()
	if err != nil {
		m.reconciles.WithLabelValues("error").Inc()
		return
	}
	m.reconciles.WithLabelValues("ok").Inc()
	if len(res.Drift) > 0 {
		m.driftRepairs.Inc()
	}
	open, protected := map[string]bool{}, map[string]bool{}
	installed := map[string]int{}
	for _, p := range res.Plans {
		if p.Skipped != "" {
			continue
		}
		// A second layer's rules (netfilter.Layered) are installed too:
		// they add to the family's count. A family without rules reads 0.
		f, n := p.Family.String(), 0
		if p.Rules != nil {
			n = p.Rules.Count()
		}
		installed[f] += n
		if p.Layer {
			continue // the same policy again: its ports are counted once
		}
		var o, c int
		for _, d := range p.Result.Decisions() {
			if d.Open {
				o++
				open[d.Container] = true
			} else {
				c++
				protected[d.Container] = true
			}
		}
		m.ports.WithLabelValues(p.Family.String(), "open").Set(float64(o))
		m.ports.WithLabelValues(p.Family.String(), "closed").Set(float64(c))
	}
	for fam, n := range installed {
		m.rules.WithLabelValues(fam).Set(float64(n))
	}
	for name := range open {
		delete(protected, name)
	}
	m.containers.WithLabelValues("open").Set(float64(len(open)))
	m.containers.WithLabelValues("protected").Set(float64(len(protected)))
	bad := map[string]bool{}
	for _, p := range res.Problems {
		if p.Fatal {
			bad[p.Container] = true
		}
	}
	m.labelErrors.Set(float64(len(bad)))
}

// ConfigState records whether the config file last read was valid (nil)
// or why not. While it is not, the daemon runs on a fail-closed config
// and /healthz fails, so the error is seen without reading the log.
func (m *Metrics) ConfigState(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.configErr = err
	if err != nil {
		m.configOK.Set(0)
	} else {
		m.configOK.Set(1)
	}
}

// Disabled records `dockmoat disable` (true) and `dockmoat enable`.
func (m *Metrics) Disabled(off bool) {
	if off {
		m.disabled.Set(1)
	} else {
		m.disabled.Set(0)
	}
}

// Mode records whether dockmoat observes (true) or enforces.
func (m *Metrics) Mode(observe bool) {
	on := map[bool]float64{false: 0, true: 1}
	m.mode.WithLabelValues("observe").Set(on[observe])
	m.mode.WithLabelValues("enforce").Set(on[!observe])
}

// Observed counts connections observe mode let through.
func (m *Metrics) Observed(n int) { m.observed.Add(float64(n)) }

// DockerState records the event stream going up or down.
func (m *Metrics) DockerState(connected bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if connected {
		if m.connectedOK {
			m.dockerReconnects.Inc()
		}
		m.connectedOK = true
		m.dockerSince = time.Time{}
		m.dockerUp.Set(1)
		return
	}
	if m.dockerSince.IsZero() {
		m.dockerSince = m.now()
	}
	m.dockerUp.Set(0)
}

// Health reports whether the daemon is doing its job.
func (m *Metrics) Health(grace time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.configErr != nil:
		return fmt.Errorf("config: %v", m.configErr)
	case m.lastErr != nil:
		return fmt.Errorf("last reconcile failed: %v", m.lastErr)
	case !m.synced:
		return fmt.Errorf("no reconcile has completed yet")
	case !m.dockerSince.IsZero() && m.now().Sub(m.dockerSince) > grace:
		return fmt.Errorf("docker unreachable for %s", m.now().Sub(m.dockerSince).Round(time.Second))
	}
	return nil
}

// Handler serves /metrics and /healthz.
func (m *Metrics) Handler(grace time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := m.Health(grace); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// ObserveAudit records a scheduled audit: how many ports (and egress
// policies) are reachable beyond their policy, or that it failed.
func (m *Metrics) ObserveAudit(beyond int, err error) {
	if err != nil {
		m.auditOK.Set(0)
		return
	}
	m.auditOK.Set(1)
	m.beyond.Set(float64(beyond))
}
