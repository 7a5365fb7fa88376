package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/daemon"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// TestAuditQuiet: audit -q prints nothing when every port is as
// intended, and the whole report when one is reachable beyond policy.
func TestAuditQuiet(t *testing.T) {
	fine := report.Report{Rows: []report.Row{{Container: "db", HostPort: 5432, Proto: "tcp", Reason: "no allow"}}}
	bad := report.Report{Rows: []report.Row{{Container: "db", HostPort: 5432, Proto: "tcp", Reason: "no allow", Beyond: true}}}
	for _, c := range []struct {
		name       string
		rep        report.Report
		quiet      bool
		wantBeyond bool
		wantOutput bool
	}{
		{"fine", fine, false, false, true},
		{"fine quiet", fine, true, false, false},
		{"beyond quiet", bad, true, true, true},
	} {
		var out bytes.Buffer
		beyond, err := printReport(&out, options{format: "table", quiet: c.quiet}, c.rep)
		if err != nil || beyond != c.wantBeyond || (out.Len() > 0) != c.wantOutput {
			t.Errorf("%s: beyond %v, %d bytes, %v", c.name, beyond, out.Len(), err)
		}
	}
}

// TestStatus: stopped without a daemon; protecting while one holds the
// lock and its last pass went well (the counts per family); failing
// after a failed pass; disabled while switched off. Exit 0 only when
// protecting.
func TestStatus(t *testing.T) {
	dir := t.TempDir()
	status := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := realMain(append([]string{"status", "--state-dir", dir}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := status(); code != 1 || !strings.Contains(out, "STOPPED") {
		t.Errorf("no daemon: %d %s", code, out)
	}
	release, err := config.HoldDaemonLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	record := daemon.StatusWriter(dir, "test", logrus.New())
	res := netfilter.SyncResult{Plans: []netfilter.FamilyPlan{{Family: rules.IPv4, Tool: "iptables-nft",
		Result: policy.Build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
			{Name: "web", Labels: map[string]string{"dockmoat.allow": "80"}, Ports: []rules.PortBinding{{HostPort: 80, ContainerPort: 80, Proto: "tcp"}}},
			{Name: "db", Ports: []rules.PortBinding{{HostPort: 5432, ContainerPort: 5432, Proto: "tcp"}}},
		}}, rules.IPv4, policy.Options{})}}}
	record(res, nil, time.Millisecond)
	if code, out := status(); code != 0 || !strings.Contains(out, "PROTECTING") || !strings.Contains(out, "ipv4 (iptables-nft): 1 published port(s) open by policy, 1 closed") {
		t.Errorf("protecting: %d %s", code, out)
	}
	record(netfilter.SyncResult{}, errors.New("iptables-restore: exit 1"), time.Millisecond)
	if code, out := status("--format", "json"); code != 1 || !strings.Contains(out, `"state": "failing"`) || !strings.Contains(out, `"open": 1`) {
		t.Errorf("failing: %d %s", code, out)
	}
	record(res, nil, time.Millisecond)
	if err := config.WriteDisabled(dir, config.Off{Since: time.Now(), Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	if code, out := status(); code != 1 || !strings.Contains(out, "DISABLED") || !strings.Contains(out, "maintenance") {
		t.Errorf("disabled: %d %s", code, out)
	}
}

// TestManPage: dockmoat(8) names every command and its flags, and groff
// reads it without a warning.
func TestManPage(t *testing.T) {
	var out bytes.Buffer
	if code := realMain([]string{"man"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	page := out.String()
	for _, cmd := range allCommands() {
		if !strings.Contains(page, ".B "+cmd+"\n") {
			t.Errorf("no command %s", cmd)
		}
	}
	for _, want := range []string{".TH DOCKMOAT 8", `.B \-\-state\-dir`, `.B \-\-metrics\-addr`, ".SH EXIT STATUS"} {
		if !strings.Contains(page, want) {
			t.Errorf("no %q", want)
		}
	}
	groffReads(t, page)
}

// TestConfigManPage: dockmoat.yaml(5) names every key, and groff reads it
// without a warning.
func TestConfigManPage(t *testing.T) {
	var out bytes.Buffer
	if code := realMain([]string{"man", "config"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	page := out.String()
	for _, k := range config.Keys {
		if !strings.Contains(page, ".B "+roff(k.Key)+"\n") {
			t.Errorf("no key %s", k.Key)
		}
	}
	if code := realMain([]string{"man", "nope"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("man nope: exit %d", code)
	}
	groffReads(t, page)
}

// groffReads fails t when groff warns about a manual page.
func groffReads(t *testing.T, page string) {
	t.Helper()
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("no groff to read it")
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
		t.Errorf("groff: %v\n%s", err, msg)
	}
}
