package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// The dual-stack part: the passes of the control-plane table with 10,000
// containers that each have an IPv4 and an IPv6 address and publish on
// 0.0.0.0 and :: (so both families are planned and installed), and the
// memory of a process doing it. It runs in a child process of its own
// (this binary, -role=dual, in a fresh namespace), so that the memory is
// that of the passes alone, as in the daemon: the snapshot (dockerwatch
// holds one), the policy and the backend's records.

const dualN = 10000

// dualOut is what the child reports: passes as min/med/max nanoseconds,
// memory in bytes.
type dualOut struct {
	First, Noop, Change, Revoke [3]int64
	RSS, HWM, Heap              uint64
}

func toTriple(s stat) [3]int64 { return [3]int64{int64(s.min), int64(s.med), int64(s.max)} }

func fromTriple(t [3]int64) stat {
	return stat{min: time.Duration(t[0]), med: time.Duration(t[1]), max: time.Duration(t[2])}
}

// dualRole is the child: both families' DOCKER-USER, the passes, and the
// memory measured while the reconciler still holds everything.
func dualRole() {
	for _, tool := range []string{"iptables-nft", "ip6tables-nft"} {
		for _, args := range [][]string{{"-N", "DOCKER-USER"}, {"-A", "FORWARD", "-j", "DOCKER-USER"}} {
			if msg, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
				fail(fmt.Errorf("%s: %v: %s", tool, err, msg))
			}
		}
	}
	var out dualOut
	beforeUninstall = func() {
		// The repetitions' garbage (a fresh reconciler per first pass)
		// goes back to the system first: RSS is then what is held.
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		out.Heap = ms.HeapInuse
		out.RSS, out.HWM = procStatus("VmRSS"), procStatus("VmHWM")
	}
	st, err := cpPasses(snapshotDual(dualN), true)
	if err != nil {
		fail(err)
	}
	out.First, out.Noop, out.Change, out.Revoke = toTriple(st.first), toTriple(st.noop), toTriple(st.change), toTriple(st.revoke)
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

// procStatus reads a "kB" line of /proc/self/status, in bytes.
func procStatus(key string) uint64 {
	data, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(data)) {
		var kb uint64
		if _, err := fmt.Sscanf(line, key+": %d kB", &kb); err == nil {
			return kb * 1024
		}
	}
	return 0
}

func dualFigures(b *strings.Builder) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ns := fmt.Sprintf("dmdual%d", os.Getpid())
	if msg, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, msg)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns, self, "-role=dual", fmt.Sprintf("-reps=%d", *reps))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("dual-stack passes: %w: %s", err, stderr.String())
	}
	var out dualOut
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return fmt.Errorf("dual-stack passes: %w: %q", err, stdout.String())
	}
	mb := func(v uint64) string { return fmt.Sprintf("%.1f MB", float64(v)/1e6) }
	b.WriteString("## Dual-stack: 10,000 containers, both families\n\n")
	fmt.Fprintf(b, "The control-plane passes above (ipsets, a fake Docker source, a real kernel in a fresh namespace) with %d containers that each "+
		"have an IPv4 and an IPv6 address and publish their port on 0.0.0.0 and ::, so that both families are planned and "+
		"installed (iptables-nft and ip6tables-nft, an IPv4 and an IPv6 set). *One change* moves one container's IPv4 address. "+
		"Memory is that of a process of its own doing only this (this binary re-executed), measured after the passes while its "+
		"reconciler holds the snapshot, the policy and the records: resident (after the repetitions' garbage is returned to the system), "+
		"its peak (which includes that garbage: a fresh reconciler per first pass), and the Go heap in use.\n\n", dualN)
	b.WriteString("| N | first pass | no-op pass | one change | sessions cut | RSS | peak RSS | Go heap |\n|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(b, "| %d dual-stack | %s | %s | %s | %s | %s | %s | %s |\n\n", dualN, fromTriple(out.First), fromTriple(out.Noop),
		fromTriple(out.Change), fromTriple(out.Revoke), mb(out.RSS), mb(out.HWM), mb(out.Heap))
	fmt.Fprintln(os.Stderr, "dual-stack done")
	return nil
}
