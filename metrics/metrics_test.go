package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

func get(t *testing.T, m *Metrics, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(time.Minute).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestMetricsAndHealth(t *testing.T) {
	m := New()
	clock := time.Unix(1000, 0)
	m.now = func() time.Time { return clock }
	if code, _ := get(t, m, "/healthz"); code != 503 {
		t.Errorf("healthz before any pass: %d", code)
	}
	res := netfilter.SyncResult{Drift: []string{"ipv4: hook missing"}, Plans: []netfilter.FamilyPlan{{Family: rules.IPv4,
		Result: policy.Build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
			{Name: "web", Labels: map[string]string{"dockmoat.allow": "80"}, Ports: []rules.PortBinding{{HostPort: 80, ContainerPort: 80, Proto: "tcp"}}},
			{Name: "db", Ports: []rules.PortBinding{{HostPort: 5432, ContainerPort: 5432, Proto: "tcp"}}},
		}}, rules.IPv4, policy.Options{})}}}
	m.DockerState(true)
	m.ObserveSync(res, nil, 3*time.Millisecond)
	if code, body := get(t, m, "/healthz"); code != 200 {
		t.Errorf("healthz after a good pass: %d %s", code, body)
	}
	_, body := get(t, m, "/metrics")
	for _, want := range []string{
		`dockmoat_reconciles_total{result="ok"} 1`,
		`dockmoat_containers{state="open"} 1`,
		`dockmoat_containers{state="protected"} 1`,
		`dockmoat_published_ports{family="ipv4",state="open"} 1`,
		`dockmoat_drift_repairs_total 1`,
		`dockmoat_docker_up 1`,
		`dockmoat_reconcile_duration_seconds_count 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	m.ObserveSync(netfilter.SyncResult{}, errors.New("iptables-restore failed"), time.Millisecond)
	if code, body := get(t, m, "/healthz"); code != 503 || !strings.Contains(body, "iptables-restore") {
		t.Errorf("healthz after a failed pass: %d %s", code, body)
	}
	m.ObserveSync(res, nil, time.Millisecond)
	m.DockerState(false)
	clock = clock.Add(30 * time.Second)
	if code, _ := get(t, m, "/healthz"); code != 200 {
		t.Error("Docker down within the grace period should still be healthy")
	}
	clock = clock.Add(time.Minute)
	if code, body := get(t, m, "/healthz"); code != 503 || !strings.Contains(body, "docker unreachable") {
		t.Errorf("healthz with Docker down past grace: %d %s", code, body)
	}
	m.DockerState(true)
	if _, body := get(t, m, "/metrics"); !strings.Contains(body, "dockmoat_docker_reconnects_total 1") {
		t.Error("reconnect not counted")
	}
	// A config error fails health even while passes succeed, until fixed.
	m.ConfigState(errors.New("config /etc/dockmoat/config.yaml: ufw: \"maybe\" is not one of auto, on, off"))
	m.ObserveSync(res, nil, time.Millisecond)
	if code, body := get(t, m, "/healthz"); code != 503 || !strings.Contains(body, "config.yaml") {
		t.Errorf("healthz with a config error: %d %s", code, body)
	}
	if _, body := get(t, m, "/metrics"); !strings.Contains(body, "dockmoat_config_ok 0") {
		t.Error("config error not in metrics")
	}
	m.ConfigState(nil)
	if code, _ := get(t, m, "/healthz"); code != 200 {
		t.Error("healthz after the config was fixed")
	}
	// Disabled is visible, and not a health failure (the user asked).
	m.Disabled(true)
	if code, body := get(t, m, "/metrics"); code != 200 || !strings.Contains(body, "dockmoat_protection_disabled 1") {
		t.Error("disable not in metrics")
	}
	if code, _ := get(t, m, "/healthz"); code != 200 {
		t.Error("healthz while disabled")
	}
}

// counted is a rendering of n rules.
type counted int

func (c counted) Lines() []string { return nil }
func (c counted) Count() int      { return int(c) }

// dockmoat_rules_installed counts every installed rule of a family: a
// second layer's (firewalld hosts) adds to the main backend's instead of
// overwriting it, and a family without rules reads 0. Ports are counted
// once.
func TestRulesInstalledLayered(t *testing.T) {
	m := New()
	res := policy.Build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		{Name: "db", Ports: []rules.PortBinding{{HostPort: 5432, ContainerPort: 5432, Proto: "tcp"}}},
	}}, rules.IPv4, policy.Options{})
	m.ObserveSync(netfilter.SyncResult{Plans: []netfilter.FamilyPlan{
		{Family: rules.IPv4, Rules: counted(9), Result: res},
		{Family: rules.IPv6, Rules: counted(4)},
		{Family: rules.IPv4, Rules: counted(13), Result: res, Layer: true},
		{Family: rules.IPv6, Layer: true},
	}}, nil, time.Millisecond)
	_, body := get(t, m, "/metrics")
	for _, want := range []string{
		`dockmoat_rules_installed{family="ipv4"} 22`,
		`dockmoat_rules_installed{family="ipv6"} 4`,
		`dockmoat_published_ports{family="ipv4",state="closed"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// TestShippedQueriesExist: every dockmoat_* metric that the shipped
// Grafana dashboard and the alert rules query is one the daemon exports
// (a renamed metric would leave a panel empty and an alert silent).
func TestShippedQueriesExist(t *testing.T) {
	m := New()
	m.ObserveSync(netfilter.SyncResult{Plans: []netfilter.FamilyPlan{{Family: rules.IPv4}}}, nil, time.Millisecond)
	m.ObserveSync(netfilter.SyncResult{}, errors.New("x"), time.Millisecond)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			exported[f.GetName()+suffix] = true
		}
	}
	name := regexp.MustCompile(`dockmoat_[a-z_]+`)
	for _, file := range []string{"../deploy/grafana/dockmoat.json", "../deploy/prometheus/dockmoat-alerts.yaml", "../deploy/prometheus/dockmoat-alerts.test.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		found := name.FindAllString(string(data), -1)
		if len(found) == 0 {
			t.Errorf("%s queries no dockmoat metric", file)
		}
		for _, n := range found {
			if !exported[n] {
				t.Errorf("%s queries %s, which the daemon does not export", file, n)
			}
		}
	}
}

// A scheduled audit sets the count; a failed one says so and keeps the
// last count (an alert on it does not resolve because the audit broke).
func TestObserveAudit(t *testing.T) {
	m := New()
	m.ObserveAudit(3, nil)
	if _, body := get(t, m, "/metrics"); !strings.Contains(body, "dockmoat_ports_beyond_policy 3\n") || !strings.Contains(body, "dockmoat_audit_ok 1\n") {
		t.Errorf("after an audit:\n%s", body)
	}
	m.ObserveAudit(0, errors.New("docker down"))
	if _, body := get(t, m, "/metrics"); !strings.Contains(body, "dockmoat_ports_beyond_policy 3\n") || !strings.Contains(body, "dockmoat_audit_ok 0\n") {
		t.Errorf("after a failed audit:\n%s", body)
	}
}
