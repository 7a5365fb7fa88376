package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/daemon"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/reconciler"
	"github.com/dockmoat/dockmoat/rules"
)

// The mode commands record what the daemon follows; suggest prints the
// record as allow rules or labels, and says when there is none; status
// says a daemon observes (exit 1: it does not protect).
func TestObserveCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := realMain(append(args, "--state-dir", dir), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("suggest"); code != 2 || !strings.Contains(out, "nothing observed yet") {
		t.Errorf("suggest before observing: %d %s", code, out)
	}
	if code, out := run("observe"); code != 0 || !strings.Contains(out, "OBSERVE mode recorded") {
		t.Errorf("observe: %d %s", code, out)
	}
	rec := reconciler.New(nil, nil, config.Default(), logrus.New())
	log, hook := test.NewNullLogger()
	if !daemon.ApplyMode(dir, rec, log) || !rec.Config().Observe {
		t.Error("the daemon does not follow 'dockmoat observe'")
	}
	if code, _ := run("enforce"); code != 0 || !daemon.ApplyMode(dir, rec, log) || rec.Config().Observe {
		t.Error("the daemon does not follow 'dockmoat enforce'")
	}
	if err := os.WriteFile(filepath.Join(dir, "mode"), []byte("observ\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.SetMode(reconciler.ModeObserve)
	if daemon.ApplyMode(dir, rec, log); rec.Config().Observe || len(hook.AllEntries()) == 0 {
		t.Error("a damaged mode record must enforce, and say so")
	}

	record := `{"since":"2026-12-05T14:00:00Z","ports":[{"container":"db","port":5432,"proto":"tcp","sources":{"198.51.100.5":{"count":3,"first":"2026-12-05T14:01:00Z","last":"2026-12-05T14:05:00Z"}}}]}`
	if err := os.WriteFile(filepath.Join(dir, daemon.ObservedFile), []byte(record), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := run("suggest"); code != 0 || !strings.Contains(out, `- container: "db"`) || !strings.Contains(out, `from: ["198.51.100.5"]`) {
		t.Errorf("suggest: %d %s", code, out)
	}
	if code, out := run("suggest", "--format", "labels"); code != 0 || !strings.Contains(out, `dockmoat.allow.5432/tcp: "198.51.100.5"`) {
		t.Errorf("suggest labels: %d %s", code, out)
	}
	if code, _ := run("suggest", "--format", "yaml"); code != 2 {
		t.Error("suggest --format yaml accepted")
	}

	release, err := config.HoldDaemonLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	daemon.StatusWriter(dir, "test", logrus.New())(netfilter.SyncResult{Observe: true, Plans: []netfilter.FamilyPlan{{Family: rules.IPv4}}}, nil, time.Millisecond)
	if code, out := run("status"); code != 1 || !strings.Contains(out, "OBSERVING") {
		t.Errorf("status while observing: %d %s", code, out)
	}
}
