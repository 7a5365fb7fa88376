package integration

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestImageRuntimeArm64 proves the Dockerfile's promise that an arm64
// image needs no emulation: deploy/image/slim.sh, run for arm64 on this
// amd64 machine (in a chroot of the same Debian the image's base is),
// downloads and unpacks the arm64 packages without running any of them.
// No arm64 CPU or emulator is here, so the nearest real proof is the
// ELF headers of what it wrote: every binary and library is AArch64, and
// every library any of them needs, and the loader they ask for, is in
// the tree.
func TestImageRuntimeArm64(t *testing.T) {
	t.Parallel() // beside the bed suites, not before them
	needBeds(t)
	root := t.TempDir()
	rootfs, err := testbed.BaseRootfs(context.Background(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", root, "-xf", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v: %s", rootfs, err, out)
	}
	for _, f := range [][2]string{{"../deploy/image/slim.sh", "slim.sh"}, {"/etc/resolv.conf", "etc/resolv.conf"}} {
		data, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f[1]), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chroot", root, "sh", "/slim.sh", "/slim", "arm64").CombinedOutput(); err != nil {
		t.Fatalf("slim.sh /slim arm64: %v\n%s", err, lastLines(string(out), 30))
	}
	slim := filepath.Join(root, "slim")
	size, elves := checkELFTree(t, slim, elf.EM_AARCH64)
	t.Logf("arm64 runtime: %d ELF files, %.1f MB", elves, float64(size)/1e6)
	for _, p := range []string{"usr/sbin/iptables-nft", "usr/sbin/ip6tables-legacy-restore", "usr/sbin/nft"} {
		if _, err := os.Stat(filepath.Join(slim, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(slim, "usr/lib/*/xtables/libxt_comment.so")); len(matches) == 0 {
		t.Error("no iptables extension modules (libxt_comment.so)")
	}
	if st, err := os.ReadFile(filepath.Join(slim, "var/lib/dpkg/status")); err != nil || !strings.Contains(string(st), "Package: iptables\n") ||
		!strings.Contains(string(st), "Architecture: arm64") {
		t.Errorf("dpkg status does not list the arm64 packages: %v", err)
	}
}

// checkELFTree checks every ELF file under dir: of machine m, its needed
// libraries somewhere in the tree (by file name), its loader at the path
// it asks for. It returns the tree's size and the number of ELF files.
func checkELFTree(t *testing.T, dir string, m elf.Machine) (size int64, elves int) {
	t.Helper()
	have := map[string]bool{}
	type needs struct {
		path, interp string
		libs         []string
	}
	var all []needs
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&os.ModeSymlink != 0 {
			return err
		}
		info, _ := d.Info()
		size += info.Size()
		have[d.Name()] = true
		f, err := elf.Open(p)
		if err != nil {
			return nil // not ELF
		}
		defer f.Close()
		elves++
		if f.Machine != m {
			t.Errorf("%s is %s, want %s", p, f.Machine, m)
		}
		n := needs{path: p}
		n.libs, _ = f.ImportedLibraries()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				_, _ = prog.ReadAt(b, 0)
				n.interp = strings.TrimRight(string(b), "\x00")
			}
		}
		all = append(all, n)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		for _, lib := range n.libs {
			if !have[lib] {
				t.Errorf("%s needs %s, not in the tree", n.path, lib)
			}
		}
		if n.interp != "" {
			if _, err := os.Stat(filepath.Join(dir, n.interp)); err != nil {
				t.Errorf("%s asks for the loader %s: %v", n.path, n.interp, err)
			}
		}
	}
	if elves < 10 {
		t.Errorf("only %d ELF files under %s", elves, dir)
	}
	return size, elves
}
