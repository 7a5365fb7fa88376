package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestDebLifecycle installs, upgrades, removes and purges the .deb with
// dpkg in a Debian root (the debootstrap host TestSystemdSequence boots),
// chrooted inside a network namespace of its own, so that the maintainer
// scripts' firewall work touches only that namespace. After each step it
// checks the files and the rules: install enforces nothing; an upgrade
// keeps the rules a running dockmoat had installed (here the guard's) and
// swaps the binary; remove takes every rule out and leaves the state and
// the administrator's config; purge removes the state.
func TestDebLifecycle(t *testing.T) {
	t.Parallel() // beside the bed suites, not before them
	needTools(t, "dpkg-deb")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	debs := t.TempDir()
	for _, v := range []string{"v1.2.3", "v1.2.4"} {
		cmd := exec.Command("make", "-C", "..", "release", "RELEASE_DIR="+filepath.Join(debs, v), "VERSION="+v)
		cmd.Env = append(os.Environ(), "ARCHES=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make release %s: %v\n%s", v, err, out)
		}
	}
	tarball, err := testbed.HostRootfs(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if out, err := exec.CommandContext(ctx, "tar", "-C", root, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpacking the Debian root: %v\n%s", err, out)
	}
	ns := fmt.Sprintf("dmpkg%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	in := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, "chroot", root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DOCKER_HOST=unix:///nonexistent.sock"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := in(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	deb := func(v string) string {
		src := filepath.Join(debs, "v"+v, "dockmoat_"+v+"_amd64.deb")
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "tmp", filepath.Base(src)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return "/tmp/" + filepath.Base(src)
	}
	exists := func(path string) bool { _, err := os.Stat(filepath.Join(root, path)); return err == nil }
	rules := func() int {
		t.Helper()
		return strings.Count(must("iptables-save"), "DOCKMOAT")
	}

	must("dpkg", "-i", deb("1.2.3"))
	if v := must("dockmoat", "version"); v != "dockmoat v1.2.3\n" || !exists("usr/lib/systemd/system/dockmoat.service") || !exists("usr/lib/systemd/system/dockmoat-guard.service") {
		t.Fatalf("installed: version %q, units there: %v", v, exists("usr/lib/systemd/system/dockmoat.service"))
	}
	for _, f := range []string{"usr/share/man/man8/dockmoat.8.gz", "usr/share/bash-completion/completions/dockmoat", "usr/share/doc/dockmoat/copyright"} {
		if !exists(f) {
			t.Errorf("installed: %s missing", f)
		}
	}
	if n := rules(); n != 0 {
		t.Errorf("install enforced something: %d DOCKMOAT lines in iptables-save", n)
	}
	// As if the daemon or the guard ran: rules, state and a config.
	must("dockmoat", "guard")
	must("mkdir", "-p", "/var/lib/dockmoat", "/etc/dockmoat")
	must("sh", "-c", "echo {} >/etc/dockmoat/config.yaml && touch /var/lib/dockmoat/disabled.test")
	before := rules()
	if before == 0 {
		t.Fatal("the guard installed nothing: the checks below prove nothing")
	}

	must("dpkg", "-i", deb("1.2.4"))
	if v := must("dockmoat", "version"); v != "dockmoat v1.2.4\n" {
		t.Errorf("upgraded binary: %q", v)
	}
	if n := rules(); n != before {
		t.Errorf("upgrade changed the rules: %d DOCKMOAT lines, had %d", n, before)
	}

	out := must("dpkg", "-r", "dockmoat")
	t.Logf("dpkg -r: %s", strings.TrimSpace(out))
	if n := rules(); n != 0 {
		t.Errorf("remove left %d DOCKMOAT lines in iptables-save", n)
	}
	if exists("usr/bin/dockmoat") || !exists("var/lib/dockmoat/disabled.test") || !exists("etc/dockmoat/config.yaml") {
		t.Errorf("after remove: binary %v, state %v, config %v", exists("usr/bin/dockmoat"), exists("var/lib/dockmoat"), exists("etc/dockmoat/config.yaml"))
	}

	must("dpkg", "-P", "dockmoat")
	if exists("var/lib/dockmoat") || !exists("etc/dockmoat/config.yaml") {
		t.Errorf("after purge: state %v (want gone), config %v (want kept)", exists("var/lib/dockmoat"), exists("etc/dockmoat/config.yaml"))
	}
}
