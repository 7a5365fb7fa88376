package integration

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// disableEnable proves `dockmoat disable` and `enable` from outside: a
// closed port (TCP and UDP) opens when protection is disabled — the
// positive control of the closed assertions around it — stays open across
// a daemon restart, shows in plan and metrics, and closes again on
// enable, which also cuts the session opened while disabled. With v6 the
// same holds for IPv6 clients (dual-stack beds, where nothing else on the
// host decides IPv6: TestCore's ufw filters IPv6 on INPUT).
func disableEnable(t *testing.T, e *env, port int, v6 bool) {
	name := "disable-probe"
	c := e.run(t, testbed.Spec{Name: name, Publish: []string{strconv.Itoa(port) + ":80", strconv.Itoa(port) + ":53/udp"}, Serve: []string{"80/echo", "53/udp"}})
	e.serverUp(t, c, "tcp", 80)
	e.sync(t)
	closed := []check{out("tcp", A, port, false, ""), out("udp", A, port, false, "")}
	opened := []check{out("tcp", A, port, true, name), out("udp", A, port, true, name)}
	if v6 {
		closed = append(closed, out6("tcp", A6, port, false, ""), out6("udp", A6, port, false, ""))
		opened = append(opened, out6("tcp", A6, port, true, name), out6("udp", A6, port, true, name))
	}
	e.expect(t, closed...)

	dm := func(args ...string) string { t.Helper(); return e.dockmoat(t, args...) }
	defer func() {
		if t.Failed() { // leave the bed protected for the steps after this one
			_, _ = e.bed.Exec(e.ctx, dockmoatBin, "enable", "--state-dir", e.dm.StateDir())
			if !e.dm.Running() {
				_ = e.dm.Start()
			}
		}
	}()
	start := time.Now()
	if msg := dm("disable", "--reason", "integration test"); !strings.Contains(msg, "egress limits of deny containers are lifted too") {
		t.Errorf("disable does not say it lifts egress limits:\n%s", msg)
	}
	e.sync(t) // plan --check reads the same state: in sync once the daemon applied it
	t.Logf("disable applied in %v", time.Since(start).Round(time.Millisecond))
	e.expect(t, opened...)
	if plan := dm("plan", "--config", e.dm.Config); !strings.Contains(plan, "PROTECTION DISABLED") || !strings.Contains(plan, "integration test") {
		t.Errorf("plan does not say protection is disabled:\n%s", plan)
	}
	if _, body := e.scrape(t, testbed.MetricsAddr, "/metrics"); !strings.Contains(body, "dockmoat_protection_disabled 1") {
		t.Error("metrics do not say protection is disabled")
	}
	// A restart keeps it disabled (the state is on disk, not in the
	// process). The daemon now audits itself every second: the ports the
	// switch opened show as beyond their policy.
	if err := e.dm.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.dm.Args = []string{"--audit-every", "1s"}
	defer func() { e.dm.Args = nil }()
	if err := e.dm.Start(); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	e.expect(t, opened...)
	beyond := e.waitMetric(t, "dockmoat_ports_beyond_policy", func(v float64) bool { return v >= 2 })
	if beyond < 2 {
		t.Errorf("disabled: dockmoat_ports_beyond_policy = %v, want the probe's tcp and udp at least", beyond)
	}
	s := e.openSession(t, A, port)
	if !s.ping(2 * time.Second) {
		t.Fatal("session opened while disabled does not answer")
	}

	// enable with no daemon running records the state but must not report
	// success: the bypass stays in the kernel (the port still answers)
	// until dockmoat starts, which applies it.
	if err := e.dm.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if msg, err := e.bed.Exec(e.ctx, dockmoatBin, "enable", "--state-dir", e.dm.StateDir()); err == nil || !strings.Contains(msg, "no dockmoat daemon runs here") {
		t.Errorf("enable with no daemon running: %v\n%s", err, msg)
	}
	e.expect(t, opened...)
	start = time.Now()
	if err := e.dm.Start(); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	t.Logf("enable applied in %v", time.Since(start).Round(time.Millisecond))
	e.expect(t, closed...)
	// Enabled again: the ports the switch opened are closed (other rows
	// of the bed, if any, are the audit's business elsewhere).
	after := e.waitMetric(t, "dockmoat_ports_beyond_policy", func(v float64) bool { return v >= 0 && v <= beyond-2 })
	if after > beyond-2 || after < 0 {
		t.Errorf("enabled: dockmoat_ports_beyond_policy = %v, want at most %v", after, beyond-2)
	}
	t.Logf("scheduled audit: %v port(s) beyond policy while disabled, %v after enable", beyond, after)
	if s.ping(time.Second) {
		t.Error("the session opened while protection was disabled survived enable")
	}
	if !strings.Contains(e.dm.Logs(), "protection DISABLED") {
		t.Error("the daemon did not log the disable")
	}
}

// waitMetric scrapes series until ok says yes (a scheduled audit has run)
// or 15 s have passed, and returns its last value (-1: never exported).
func (e *env) waitMetric(t *testing.T, series string, ok func(float64) bool) float64 {
	t.Helper()
	v := -1.0
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		// A restarted daemon listens a moment after its first pass.
		var body string
		if _, body, err = e.tryScrape(testbed.MetricsAddr, "/metrics"); err != nil {
			continue
		}
		if m := re.FindStringSubmatch(body); m != nil && strings.Contains(body, "dockmoat_audit_ok 1") {
			v, _ = strconv.ParseFloat(m[1], 64)
			if ok(v) {
				return v
			}
		}
	}
	if err != nil {
		t.Logf("metrics: %v", err)
	}
	return v
}
