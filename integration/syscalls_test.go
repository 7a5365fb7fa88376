package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSyscallsInSystemServiceFilter: the units say
// SystemCallFilter=@system-service, so every system call dockmoat and the
// tools it runs make must be in that set, or it fails with EPERM under
// systemd. No systemd runs here; instead the guard and uninstall, on
// iptables-legacy, iptables-nft (with ipsets) and the nftables backend,
// run under strace in a scratch namespace, and each call they made is
// looked up in the set as systemd-analyze expands it. (The daemon's
// Docker, conntrack and HTTP calls are the same kinds: sockets, netlink,
// epoll, files.)
func TestSyscallsInSystemServiceFilter(t *testing.T) {
	needBeds(t)
	needTools(t, "strace", "systemd-analyze")
	allowed := systemServiceSet(t)
	ns := scratchNetns(t, "dmsc")
	state, trace := t.TempDir(), filepath.Join(t.TempDir(), "trace")
	used := map[string]bool{}
	for _, args := range [][]string{
		{"guard", "--backend", "iptables", "--iptables-mode", "legacy", "--state-dir", state},
		{"uninstall", "--backend", "iptables", "--iptables-mode", "legacy"},
		{"guard", "--backend", "iptables", "--iptables-mode", "nft", "--state-dir", state},
		{"uninstall", "--backend", "iptables", "--iptables-mode", "nft"},
		{"guard", "--backend", "nftables", "--state-dir", state},
		{"uninstall", "--backend", "nftables"},
	} {
		cmd := append([]string{"netns", "exec", ns, "strace", "-f", "-qq", "-o", trace, dockmoatBin}, args...)
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("dockmoat %v: %v\n%s", args, err, out)
		}
		data, err := os.ReadFile(trace)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\d+ +([a-z0-9_]+)\(`).FindAllStringSubmatch(string(data), -1) {
			used[m[1]] = true
		}
	}
	var outside []string
	for name := range used {
		if !allowed[name] {
			outside = append(outside, name)
		}
	}
	slices.Sort(outside)
	t.Logf("%d distinct system calls, all in @system-service but: %v", len(used), outside)
	if len(used) < 30 || len(outside) > 0 {
		t.Errorf("system calls outside @system-service: %v (of %d traced)", outside, len(used))
	}
}

// systemServiceSet is @system-service with its groups expanded, as
// `systemd-analyze syscall-filter` lists them.
func systemServiceSet(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "syscall-filter").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups, cur := map[string][]string{}, ""
	for _, line := range strings.Split(string(out), "\n") {
		switch f := strings.TrimSpace(line); {
		case strings.HasPrefix(line, "@"):
			cur = f
		case f == "" || strings.HasPrefix(f, "#") || cur == "":
		default:
			groups[cur] = append(groups[cur], f)
		}
	}
	set := map[string]bool{}
	var add func(g string)
	add = func(g string) {
		for _, m := range groups[g] {
			if strings.HasPrefix(m, "@") {
				add(m)
			} else {
				set[m] = true
			}
		}
	}
	add("@system-service")
	if len(set) < 100 {
		t.Fatalf("@system-service expands to %d calls: systemd-analyze's listing was not understood", len(set))
	}
	return set
}
