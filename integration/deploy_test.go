package integration

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestSystemdUnitsVerify runs `systemd-analyze verify` on the units in
// deploy/. verify insists that ExecStart's binary exists, so it runs in a
// private mount namespace where /usr/local/bin is a tmpfs holding the
// freshly built dockmoat: the machine's own /usr/local/bin is untouched.
func TestSystemdUnitsVerify(t *testing.T) {
	needBeds(t)
	needTools(t, "systemd-analyze")
	units, err := filepath.Glob("../deploy/*.service")
	if err != nil || len(units) != 2 {
		t.Fatalf("want 2 units in deploy/, got %v %v", units, err)
	}
	for i, u := range units {
		units[i], _ = filepath.Abs(u)
	}
	script := `mount -t tmpfs none /usr/local/bin && cp "$0" /usr/local/bin/dockmoat && exec systemd-analyze verify "$@"`
	out, err := exec.Command("unshare", append([]string{"-m", "sh", "-c", script, dockmoatBin}, units...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure scores (0 safest, 10 worst): the guard runs as root before
	// Docker and must be as hardened as the daemon (it was 6.6 against
	// 4.2 before; 3.0 and 2.9 with the system-call filter).
	for _, u := range units {
		out, err := exec.Command("systemd-analyze", "security", "--offline=yes", u).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", u, err, out)
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("%s: exposure %.1f", filepath.Base(u), score)
		if score > 3.5 {
			t.Errorf("%s: exposure %.1f, want ≤ 3.5", filepath.Base(u), score)
		}
	}
}

// TestComposeFile checks deploy/compose.yaml has the settings the sidecar
// needs (the image test runs the container with the same settings).
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			NetworkMode string            `yaml:"network_mode"`
			CapAdd      []string          `yaml:"cap_add"`
			CapDrop     []string          `yaml:"cap_drop"`
			ReadOnly    bool              `yaml:"read_only"`
			Tmpfs       []string          `yaml:"tmpfs"`
			SecurityOpt []string          `yaml:"security_opt"`
			Restart     string            `yaml:"restart"`
			Volumes     []string          `yaml:"volumes"`
			Labels      map[string]string `yaml:"labels"`
			Ports       []string          `yaml:"ports"`
			MemLimit    string            `yaml:"mem_limit"`
			Logging     struct {
				Options map[string]string `yaml:"options"`
			} `yaml:"logging"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	d, ok := c.Services["dockmoat"]
	if !ok {
		t.Fatal("no dockmoat service")
	}
	if d.NetworkMode != "host" || !slices.Contains(d.CapAdd, "NET_ADMIN") || !slices.Contains(d.CapAdd, "NET_RAW") ||
		d.Restart != "unless-stopped" || !slices.Contains(d.Volumes, "/var/run/docker.sock:/var/run/docker.sock:ro") ||
		!slices.ContainsFunc(d.Volumes, func(v string) bool { return strings.HasPrefix(v, "/etc/dockmoat:") }) ||
		!slices.Contains(d.Volumes, "/var/lib/dockmoat:/var/lib/dockmoat") {
		t.Errorf("dockmoat service settings: %+v", d)
	}
	// Hardening, mirrored by runSidecar so the image test runs with it.
	if !slices.Equal(d.CapDrop, []string{"ALL"}) || !d.ReadOnly || !slices.Equal(d.Tmpfs, []string{"/run", "/tmp"}) ||
		!slices.Equal(d.SecurityOpt, []string{"no-new-privileges:true"}) {
		t.Errorf("dockmoat service hardening: %+v", d)
	}
	if len(c.Services) != 1 {
		t.Errorf("deploy/compose.yaml starts more than dockmoat: %v", slices.Collect(maps.Keys(c.Services)))
	}
	if d.MemLimit == "" || d.Logging.Options["max-size"] == "" {
		t.Errorf("dockmoat service without a memory limit or log rotation: %+v", d)
	}
	data, err = os.ReadFile("../examples/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if c.Services["web"].Labels["dockmoat.allow"] == "" || len(c.Services["db"].Labels) != 0 || len(c.Services["db"].Ports) == 0 {
		t.Error("the example should open web with a label and leave the published db closed")
	}
}

// TestComposeSocketProxy: the proxied compose file gives dockmoat no
// Docker socket, the proxy's address, the same hardening, and a proxy
// that takes read requests only, on loopback.
func TestComposeSocketProxy(t *testing.T) {
	data, err := os.ReadFile("../deploy/compose.socket-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			CapDrop     []string          `yaml:"cap_drop"`
			ReadOnly    bool              `yaml:"read_only"`
			SecurityOpt []string          `yaml:"security_opt"`
			Volumes     []string          `yaml:"volumes"`
			Ports       []string          `yaml:"ports"`
			Environment map[string]any    `yaml:"environment"`
			Labels      map[string]string `yaml:"labels"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	d, p := c.Services["dockmoat"], c.Services["docker-proxy-ro"]
	if slices.ContainsFunc(d.Volumes, func(v string) bool { return strings.Contains(v, "docker.sock") }) ||
		d.Environment["DOCKER_HOST"] != "tcp://127.0.0.1:2375" || !slices.Equal(d.CapDrop, []string{"ALL"}) || !d.ReadOnly ||
		!slices.Equal(d.SecurityOpt, []string{"no-new-privileges:true"}) {
		t.Errorf("dockmoat service: %+v", d)
	}
	if p.Environment["POST"] != 0 || p.Environment["CONTAINERS"] != 1 || p.Environment["EVENTS"] != 1 ||
		!slices.Equal(p.Ports, []string{"127.0.0.1:2375:2375"}) {
		t.Errorf("proxy service: %+v", p)
	}
}

// TestDepsKeepUsersDocker runs the dependency step of `make demo` and
// `make test` (dry run) the way a host with Docker CE looks: a dockerd on
// the PATH and no docker.io package. apt must not be asked for Docker;
// the control without that dockerd shows the same step would ask for it.
func TestDepsKeepUsersDocker(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "dockerd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	deps := func(path string) string {
		cmd := exec.Command("bash", "../hack/deps.sh", "--dry-run")
		cmd.Env = append(os.Environ(), "PATH="+path, "DEPS_IGNORE_DPKG=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("deps.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := deps(bin); strings.Contains(out, "docker.io") || !strings.Contains(out, "will install") {
		t.Errorf("with a dockerd on the PATH, deps still asks for docker.io (or for nothing):\n%s", out)
	}
	if out := deps(t.TempDir()); !strings.Contains(out, "docker.io") {
		t.Errorf("control: without any dockerd, deps should ask for docker.io:\n%s", out)
	}
}

// TestReloadChecksConfig runs dockmoat.service's ExecReload lines as
// systemd would (in order, the first failure ends the reload) against a
// stand-in main process, in a mount namespace where the unit's paths hold
// this build and a test config: an invalid file fails the reload and the
// daemon gets no SIGHUP; a valid one reaches it. check-config runs as an
// unprivileged user (nobody) here: it needs no root, Docker or firewall.
func TestReloadChecksConfig(t *testing.T) {
	needBeds(t)
	unit, err := os.ReadFile("../deploy/dockmoat.service")
	if err != nil {
		t.Fatal(err)
	}
	var reload []string
	for _, l := range strings.Split(string(unit), "\n") {
		if c, ok := strings.CutPrefix(l, "ExecReload="); ok {
			reload = append(reload, c)
		}
	}
	if len(reload) != 2 || !strings.Contains(reload[0], "check-config") {
		t.Fatalf("want check-config, then the signal: %q", reload)
	}
	for _, c := range []struct {
		name, config string
		ok           bool
	}{
		{"invalid", "allow:\n  - container: web\n    port: [\"80\"]\n", false},
		{"valid", "allow:\n  - container: web\n    ports: [\"80\"]\n", true},
	} {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(c.config), 0o644); err != nil {
			t.Fatal(err)
		}
		// The stand-in daemon: a sleep that a SIGHUP ends (even when the
		// suite runs under nohup, whose ignored SIGHUP a child inherits).
		main := exec.Command("env", "--default-signal=HUP", "sleep", "60")
		if err := main.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, l := range reload {
			l = strings.ReplaceAll(l, "$MAINPID", strconv.Itoa(main.Process.Pid))
			if strings.Contains(l, "check-config") {
				l = "setpriv --reuid=65534 --regid=65534 --clear-groups " + l
			}
			lines = append(lines, l)
		}
		script := `mount -t tmpfs none /usr/local/bin && cp "$0" /usr/local/bin/dockmoat && mkdir -p /etc/dockmoat && ` +
			`mount --bind "$1" /etc/dockmoat && ` + strings.Join(lines, " && ")
		out, err := exec.Command("unshare", "-m", "sh", "-c", script, dockmoatBin, dir).CombinedOutput()
		hup := make(chan error, 1)
		go func() { hup <- main.Wait() }()
		select {
		case <-hup:
			if !c.ok {
				t.Errorf("%s config: the daemon got the signal", c.name)
			}
		case <-time.After(time.Second):
			_ = main.Process.Kill()
			<-hup
			if c.ok {
				t.Errorf("%s config: the daemon got no signal", c.name)
			}
		}
		if (err == nil) != c.ok {
			t.Errorf("%s config: reload error %v\n%s", c.name, err, out)
		}
		if !c.ok && !strings.Contains(string(out), `line 3: unknown key "port" in allow[0]: did you mean "ports"?`) {
			t.Errorf("the failed reload does not say why:\n%s", out)
		}
		t.Logf("%s config: reload %v: %s", c.name, err, strings.TrimSpace(string(out)))
	}
}

// TestAlertRules checks the shipped alert rules with promtool (make
// engines unpacks it from Debian's prometheus package): they load, and
// their unit tests (deploy/prometheus/dockmoat-alerts.test.yaml) fire
// each alert when it should and not before.
func TestAlertRules(t *testing.T) {
	dir := os.Getenv("DOCKMOAT_ENGINES")
	if dir == "" {
		dir = "/var/cache/dockmoat"
	}
	promtool := filepath.Join(dir, "tools", "promtool")
	if _, err := os.Stat(promtool); err != nil {
		if required() {
			t.Fatalf("promtool missing (make engines unpacks it): %v", err)
		}
		t.Skipf("promtool missing: %v", err)
	}
	for _, args := range [][]string{{"check", "rules", "dockmoat-alerts.yaml"}, {"test", "rules", "dockmoat-alerts.test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../deploy/prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}
