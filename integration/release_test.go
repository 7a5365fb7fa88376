package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRelease runs `make release` as a maintainer would (offline but for
// the Go module proxy) and checks what a stranger downloads: a static
// binary per architecture that reports its version, a .deb per
// architecture holding the binary, both units (pointing at /usr/bin) and
// the example config, an RPM per architecture with the same files and its
// own lifecycle scripts (read with Debian's rpm), and SHA256SUMS that
// verify.
func TestRelease(t *testing.T) {
	t.Parallel() // beside the bed suites, not before them
	needTools(t, "make", "file", "dpkg-deb", "sha256sum", "lintian", "rpm")
	dir := t.TempDir()
	out, err := exec.Command("make", "-C", "..", "release", "RELEASE_DIR="+dir, "VERSION=v1.2.3").CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"SHA256SUMS", "dockmoat-1.2.3-1.aarch64.rpm", "dockmoat-1.2.3-1.x86_64.rpm", "dockmoat-linux-amd64", "dockmoat-linux-arm64",
		"dockmoat_1.2.3_amd64.deb", "dockmoat_1.2.3_arm64.deb"}
	if !slices.Equal(names, want) {
		t.Fatalf("release files %v, want %v", names, want)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	if sums := run("sha256sum", "-c", "SHA256SUMS"); strings.Count(sums, ": OK") != 6 {
		t.Errorf("SHA256SUMS:\n%s", sums)
	}
	for arch, machine := range map[string]string{"amd64": "x86-64", "arm64": "ARM aarch64"} {
		info := run("file", "dockmoat-linux-"+arch)
		if !strings.Contains(info, machine) || !strings.Contains(info, "statically linked") {
			t.Errorf("file dockmoat-linux-%s: %s", arch, info)
		}
		deb := "dockmoat_1.2.3_" + arch + ".deb"
		list := run("dpkg-deb", "-c", deb)
		for _, path := range []string{"./usr/bin/dockmoat", "./usr/lib/systemd/system/dockmoat.service",
			"./usr/lib/systemd/system/dockmoat-guard.service", "./usr/share/doc/dockmoat/examples/config.yaml",
			"./usr/share/doc/dockmoat/copyright", "./usr/share/man/man8/dockmoat.8.gz", "./usr/share/man/man5/dockmoat.yaml.5.gz", "./usr/share/bash-completion/completions/dockmoat",
			"./usr/share/zsh/vendor-completions/_dockmoat", "./usr/share/fish/vendor_completions.d/dockmoat.fish"} {
			if !strings.Contains(list, path) {
				t.Errorf("%s lacks %s:\n%s", deb, path, list)
			}
		}
		// Debian's lintian: no error and no warning (overrides carry their
		// reasons, deploy/debian/lintian-overrides).
		lint, _ := exec.Command("lintian", "--tag-display-limit", "0", filepath.Join(dir, deb)).CombinedOutput()
		for _, l := range strings.Split(strings.TrimSpace(string(lint)), "\n") {
			if l != "" && !strings.Contains(l, "root privileges") {
				t.Errorf("lintian %s: %s", deb, l)
			}
		}
		if f := run("dpkg-deb", "-f", deb, "Architecture", "Version"); f != "Architecture: "+arch+"\nVersion: 1.2.3\n" {
			t.Errorf("%s control: %q", deb, f)
		}
		checkRPM(t, run, arch)
		unit := filepath.Join(t.TempDir(), arch)
		run("dpkg-deb", "-x", deb, unit)
		data, err := os.ReadFile(filepath.Join(unit, "usr/lib/systemd/system/dockmoat.service"))
		if err != nil || !strings.Contains(string(data), "ExecStart=/usr/bin/dockmoat run") {
			t.Errorf("packaged unit: %v\n%s", err, data)
		}
	}
	if v := run("./dockmoat-linux-amd64", "version"); v != "dockmoat v1.2.3\n" {
		t.Errorf("version: %q", v)
	}
	// Reproducible: a second release of the same commit, byte for byte.
	again := t.TempDir()
	if out, err := exec.Command("make", "-C", "..", "release", "RELEASE_DIR="+again, "VERSION=v1.2.3").CombinedOutput(); err != nil {
		t.Fatalf("make release again: %v\n%s", err, out)
	}
	first, _ := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	second, _ := os.ReadFile(filepath.Join(again, "SHA256SUMS"))
	if len(first) == 0 || string(first) != string(second) {
		t.Errorf("two releases of one commit differ:\n%s\n%s", first, second)
	}
}

// checkRPM reads an architecture's RPM with rpm: its files, architecture
// and version, and the scriptlets that give it the .deb's lifecycle
// (install does not enforce, upgrade restarts, erase takes the rules out).
func checkRPM(t *testing.T, run func(string, ...string) string, arch string) {
	t.Helper()
	rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
	pkg := "dockmoat-1.2.3-1." + rpmArch + ".rpm"
	list := run("rpm", "-qlp", pkg)
	for _, path := range []string{"/usr/bin/dockmoat", "/usr/lib/systemd/system/dockmoat.service",
		"/usr/lib/systemd/system/dockmoat-guard.service", "/usr/share/doc/dockmoat/examples/config.yaml",
		"/usr/share/man/man8/dockmoat.8.gz", "/usr/share/zsh/site-functions/_dockmoat"} {
		if !strings.Contains(list, path+"\n") {
			t.Errorf("%s lacks %s:\n%s", pkg, path, list)
		}
	}
	if strings.Contains(list, "lintian") {
		t.Errorf("%s carries Debian's lintian overrides:\n%s", pkg, list)
	}
	if q := run("rpm", "-qp", "--qf", "%{ARCH} %{VERSION} %{BUILDHOST}", pkg); q != rpmArch+" 1.2.3 dockmoat-build" {
		t.Errorf("%s header: %q", pkg, q)
	}
	scripts := run("rpm", "-qp", "--scripts", pkg)
	for _, want := range []string{"postinstall scriptlet", "systemctl daemon-reload", "preuninstall scriptlet",
		"disable --now dockmoat.service dockmoat-guard.service", "dockmoat uninstall", "postuninstall scriptlet", "try-restart dockmoat.service"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("%s scriptlets lack %q:\n%s", pkg, want, scripts)
		}
	}
	if strings.Contains(scripts, "systemctl enable") || strings.Contains(scripts, "systemctl start") {
		t.Errorf("%s: installing must not enforce:\n%s", pkg, scripts)
	}
}
