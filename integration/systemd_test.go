package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestSystemdSequence boots a Debian host under systemd-nspawn (systemd as
// init, Debian's docker.io with its docker.service and docker.socket, in a
// network namespace of its own), installs the .deb, enables both units as
// docs/deployment.md says, and does to Docker what administrators do. It
// checks that dockmoat follows Docker and that the rules never go away:
//
//   - at boot the guard has finished before dockerd starts, and dockmoat
//     runs once Docker does;
//   - `systemctl stop docker` stops dockmoat too (PartOf) and leaves its
//     rules in place;
//   - docker.socket re-activating dockerd (a `docker` command) starts
//     dockmoat again (WantedBy=docker.service), and so does a plain
//     `systemctl start docker` after docker.socket was stopped too;
//   - a SIGSTOPped daemon is killed by the watchdog and restarted;
//   - `systemctl reload` fails on an invalid config and keeps the daemon,
//     and takes a valid one up.
func TestSystemdSequence(t *testing.T) {
	t.Parallel() // beside the bed suites, not before them
	needBeds(t)
	needTools(t, "systemd-nspawn", "debootstrap")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root := installedHost(ctx, t)
	m, err := testbed.Boot(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := m.Run(context.Background(), "journalctl", "--no-pager", "-u", "dockmoat", "-u", "docker", "-u", "dockmoat-guard")
			t.Logf("journal:\n%s", out)
		}
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})

	steps := []struct {
		name string
		run  func(*systemdHost)
	}{
		{"BootGuardThenDocker", (*systemdHost).bootOrder},
		{"StopDockerStopsDockmoatRulesStay", (*systemdHost).stopDocker},
		{"SocketActivationStartsDockmoat", (*systemdHost).socketActivation},
		{"StartDockerStartsDockmoat", (*systemdHost).startDocker},
		{"WatchdogRestartsStoppedDaemon", (*systemdHost).watchdog},
		{"ReloadChecksConfig", (*systemdHost).reload},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(&systemdHost{t: t, ctx: ctx, m: m}) }) {
			break // each step starts from the state the last one left
		}
	}
}

// installedHost unpacks the cached Debian host, installs the .deb with
// dpkg, enables both units and shortens the watchdog to 8 s (the loop's
// ping interval follows WATCHDOG_USEC, so the same code runs as with the
// shipped 60 s; the test need not wait a minute).
func installedHost(ctx context.Context, t *testing.T) string {
	t.Helper()
	rel := t.TempDir()
	cmd := exec.CommandContext(ctx, "make", "-C", "..", "release", "RELEASE_DIR="+rel, "VERSION=v1.2.3")
	cmd.Env = append(os.Environ(), "ARCHES=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	tarball, err := testbed.HostRootfs(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "dmhost"+strconv.Itoa(os.Getpid()%100000))
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "tar", "-C", root, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpacking the Debian host: %v\n%s", err, out)
	}
	deb, err := os.ReadFile(filepath.Join(rel, "dockmoat_1.2.3_amd64.deb"))
	if err == nil {
		err = os.WriteFile(filepath.Join(root, "tmp/dockmoat.deb"), deb, 0o644)
	}
	if err == nil {
		err = os.MkdirAll(filepath.Join(root, "etc/systemd/system/dockmoat.service.d"), 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(root, "etc/systemd/system/dockmoat.service.d/watchdog.conf"),
			[]byte("[Service]\nWatchdogSec=8s\n"), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"dpkg", "-i", "/tmp/dockmoat.deb"},
		{"systemctl", "enable", "dockmoat-guard", "dockmoat"},
	} {
		cmd := exec.CommandContext(ctx, "chroot", append([]string{root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v in the Debian host: %v\n%s", args, err, out)
		}
	}
	return root
}

// systemdHost is one step's view of the booted host.
type systemdHost struct {
	t   *testing.T
	ctx context.Context
	m   *testbed.Machine
}

func (s *systemdHost) run(args ...string) string {
	s.t.Helper()
	out, err := s.m.Run(s.ctx, args...)
	if err != nil {
		s.t.Fatalf("%v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

// show reads one property of a unit.
func (s *systemdHost) show(unit, prop string) string {
	s.t.Helper()
	return s.run("systemctl", "show", "--value", "-p", prop, unit)
}

// waitActive waits until unit is active (a Type=notify dockmoat is so once
// its first pass is installed), polling systemd.
func (s *systemdHost) waitActive(unit string) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		state := s.show(unit, "ActiveState")
		if state == "active" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s still %s after 60 s", unit, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rules counts dockmoat's lines in iptables-save and ip6tables-save, and
// fails when there are none in either: every step expects them.
func (s *systemdHost) rules() int {
	s.t.Helper()
	v4 := strings.Count(s.run("iptables-save"), "DOCKMOAT")
	v6 := strings.Count(s.run("ip6tables-save"), "DOCKMOAT")
	if v4 == 0 || v6 == 0 {
		s.t.Fatalf("dockmoat's rules missing: %d lines in iptables-save, %d in ip6tables-save", v4, v6)
	}
	return v4 + v6
}

func (s *systemdHost) bootOrder() {
	s.waitActive("docker")
	s.waitActive("dockmoat")
	if st := s.show("dockmoat-guard", "ActiveState"); st != "active" {
		s.t.Fatalf("guard %s after boot", st)
	}
	guardDone, _ := strconv.ParseUint(s.show("dockmoat-guard", "ExecMainExitTimestampMonotonic"), 10, 64)
	dockerStart, _ := strconv.ParseUint(s.show("docker", "ExecMainStartTimestampMonotonic"), 10, 64)
	if guardDone == 0 || dockerStart == 0 || guardDone > dockerStart {
		s.t.Errorf("guard finished at %d µs, dockerd started at %d µs: the guard must finish first", guardDone, dockerStart)
	}
	s.t.Logf("guard done %d ms before dockerd started; %d dockmoat rule lines", (dockerStart-guardDone)/1000, s.rules())
}

func (s *systemdHost) stopDocker() {
	before := s.rules()
	s.run("systemctl", "stop", "docker.service")
	if st := s.show("dockmoat", "ActiveState"); st != "inactive" {
		s.t.Errorf("dockmoat %s after `systemctl stop docker`, want inactive (PartOf)", st)
	}
	if st := s.show("docker.socket", "ActiveState"); st != "active" {
		s.t.Fatalf("docker.socket %s: the next step needs it listening", st)
	}
	if after := s.rules(); after != before {
		s.t.Errorf("rules changed while dockmoat stopped: %d lines, had %d", after, before)
	}
}

func (s *systemdHost) socketActivation() {
	if st := s.show("docker", "ActiveState"); st != "inactive" {
		s.t.Fatalf("docker %s before activation: the step proves nothing", st)
	}
	s.run("docker", "version", "--format", "{{.Server.Version}}")
	s.waitActive("dockmoat")
	s.rules()
}

func (s *systemdHost) startDocker() {
	s.run("systemctl", "stop", "docker.service", "docker.socket")
	if st := s.show("dockmoat", "ActiveState"); st != "inactive" {
		s.t.Fatalf("dockmoat %s after stopping Docker: the step proves nothing", st)
	}
	s.run("systemctl", "start", "docker.service")
	s.waitActive("dockmoat")
	s.rules()
}

func (s *systemdHost) watchdog() {
	pid, restarts := s.show("dockmoat", "MainPID"), s.show("dockmoat", "NRestarts")
	before := s.rules()
	s.run("systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", "dockmoat")
	deadline := time.Now().Add(60 * time.Second)
	for s.show("dockmoat", "NRestarts") == restarts {
		if time.Now().After(deadline) {
			s.t.Fatalf("a SIGSTOPped dockmoat (pid %s) was not restarted within 60 s (WatchdogSec=8s)", pid)
		}
		if n := s.rules(); n != before {
			s.t.Errorf("rules changed while the daemon was stopped: %d lines, had %d", n, before)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.waitActive("dockmoat")
	if newPID := s.show("dockmoat", "MainPID"); newPID == pid {
		s.t.Errorf("restarted, but MainPID still %s", pid)
	}
	if !strings.Contains(s.run("journalctl", "--no-pager", "-u", "dockmoat"), "Watchdog timeout") {
		s.t.Error("restarted, but the journal names no watchdog timeout")
	}
	s.rules()
}

func (s *systemdHost) reload() {
	pid := s.show("dockmoat", "MainPID")
	s.run("sh", "-c", "mkdir -p /etc/dockmoat && echo 'defualt_policy: open' >/etc/dockmoat/config.yaml")
	out, err := s.m.Run(s.ctx, "systemctl", "reload", "dockmoat")
	if err == nil {
		s.t.Errorf("reload of an invalid config succeeded: %s", out)
	}
	if st, now := s.show("dockmoat", "ActiveState"), s.show("dockmoat", "MainPID"); st != "active" || now != pid {
		s.t.Errorf("after a failed reload: %s, pid %s (was %s)", st, now, pid)
	}
	s.run("sh", "-c", "echo 'trusted_sources: [192.0.2.0/24]' >/etc/dockmoat/config.yaml")
	s.run("systemctl", "reload", "dockmoat")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.run("journalctl", "--no-pager", "-u", "dockmoat"), "SIGHUP: config reloaded") {
		if time.Now().After(deadline) {
			s.t.Fatal("the daemon did not log the reload within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
