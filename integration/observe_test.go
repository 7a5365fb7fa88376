package integration

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// observeEnforce follows the README's quick start (observe, status,
// suggest, check-config, reload, plan, enforce, audit) and proves the safe
// path onto a server from outside: with
// `run --observe` an unlabeled port answers (the positive control of the
// closed assertions before and after) and is counted with its source;
// `suggest` names that source; the suggestion, added to the config and
// applied with `dockmoat enforce`, keeps the observed source working and
// closes the port to another, with no connection of the observed source
// refused during the switch (five workers dialling, one every 20 ms).
// With v6 the same holds for IPv6 clients.
func observeEnforce(t *testing.T, e *env, port int, v6 bool) {
	name := "observe-probe"
	c := e.run(t, testbed.Spec{Name: name, Publish: []string{strconv.Itoa(port) + ":80", strconv.Itoa(port) + ":53/udp"}, Serve: []string{"80/echo", "53/udp"}})
	e.serverUp(t, c, "tcp", 80)
	e.sync(t)
	seen := []check{out("tcp", A, port, true, name), out("udp", A, port, true, name)}
	other := []check{out("tcp", B, port, false, ""), out("udp", B, port, false, "")}
	if v6 {
		seen = append(seen, out6("tcp", A6, port, true, name), out6("udp", A6, port, true, name))
		other = append(other, out6("tcp", B6, port, false, ""), out6("udp", B6, port, false, ""))
	}
	e.expect(t, closedOf(seen)...)
	dm := func(args ...string) string { t.Helper(); return e.dockmoat(t, args...) }
	base, err := os.ReadFile(e.dm.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { e.reload(t, string(base)) }()

	restart(t, e, "--observe")
	defer func() { e.dm.Args = nil }()
	e.expect(t, seen...)
	if plan := dm("plan", "--config", e.dm.Config); !strings.Contains(plan, "OBSERVE MODE") {
		t.Errorf("plan does not say it observes:\n%s", plan)
	}
	if st, _ := e.bed.Exec(e.ctx, dockmoatBin, "status", "--state-dir", e.dm.StateDir()); !strings.Contains(st, "OBSERVING") {
		t.Errorf("status does not say it observes:\n%s", st)
	}
	if _, body := e.scrape(t, testbed.MetricsAddr, "/metrics"); !strings.Contains(body, `dockmoat_mode{mode="observe"} 1`) {
		t.Error(`metrics lack dockmoat_mode{mode="observe"} 1`)
	}
	suggestion := waitSuggestion(t, e, v6)
	t.Logf("suggestion:\n%s", suggestion)
	if strings.Contains(suggestion, B.String()) {
		t.Errorf("suggestion names a source that never connected:\n%s", suggestion)
	}

	cfg := string(base)
	if strings.TrimSpace(cfg) == "{}" {
		cfg = ""
	}
	if err := os.WriteFile(e.dm.Config+".new", []byte(cfg+suggestion), 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, err := e.bed.Exec(e.ctx, dockmoatBin, "check-config", e.dm.Config+".new"); err != nil {
		t.Fatalf("check-config refuses the suggestion: %v\n%s", err, msg)
	}
	e.reload(t, cfg+suggestion)
	p := e.startProber(seen[:1], 5)
	start := time.Now()
	dm("enforce")
	e.sync(t)
	time.Sleep(500 * time.Millisecond)
	attempts, _, misses := p.finish()
	t.Logf("enforce applied in %v; %d connection(s) of the observed source during the switch, %d refused", time.Since(start).Round(time.Millisecond), sum(attempts), sum(misses))
	if sum(misses) > 0 || sum(attempts) < 10 {
		t.Errorf("the observed source was refused %d time(s) in %d attempts during the switch to enforce", sum(misses), sum(attempts))
	}
	e.expect(t, append(seen, other...)...)
	if rep, _ := e.bed.Exec(e.ctx, dockmoatBin, "audit", "--config", e.dm.Config); !strings.Contains(rep, name) || strings.Contains(rep, "OBSERVING") {
		t.Errorf("audit after enforce:\n%s", rep)
	}
	if !strings.Contains(e.dm.Logs(), "observe: the policy refuses this source") {
		t.Error("the daemon did not log the observed source")
	}
}

// restart stops the bed's dockmoat and starts it with args.
func restart(t *testing.T, e *env, args ...string) {
	t.Helper()
	if err := e.dm.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.dm.Args = args
	if err := e.dm.Start(); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
}

// waitSuggestion asks `dockmoat suggest` until it names the observed
// client (and its IPv6 address with v6), for at most 15 s.
func waitSuggestion(t *testing.T, e *env, v6 bool) string {
	t.Helper()
	var s string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		msg, err := e.bed.Exec(e.ctx, dockmoatBin, "suggest", "--state-dir", e.dm.StateDir())
		if err == nil {
			s = msg
			if strings.Contains(s, `"`+A.String()+`"`) && (!v6 || strings.Contains(s, `"`+A6.String()+`"`)) {
				return s
			}
		}
	}
	t.Fatalf("suggest never named the observed client:\n%s", s)
	return ""
}

// closedOf turns open checks into closed ones on the same path.
func closedOf(cs []check) []check {
	out := make([]check, len(cs))
	for i, c := range cs {
		c.open, c.who = false, ""
		out[i] = c
	}
	return out
}

// ban adds (or with del, removes) a source to the bed's ban set the way
// a user, fail2ban or CrowdSec would: ipset on the iptables backend, nft
// on Docker's nftables backend.
func ban(t *testing.T, e *env, nftables bool, src netip.Addr, del bool) {
	t.Helper()
	set, op := "dockmoat-ban4", "add"
	if src.Is6() {
		set = "dockmoat-ban6"
	}
	if del {
		op = "del"
	}
	args := []string{"ipset", op, set, src.String()}
	if nftables {
		set = map[bool]string{false: "ban4", true: "ban6"}[src.Is6()]
		op = map[bool]string{false: "add", true: "delete"}[del]
		args = []string{"nft", op, "element", "inet", "dockmoat_ban", set, "{ " + src.String() + " }"}
	} else if !del {
		args = append(args, "timeout", "600")
	}
	if out, err := e.bed.HostExec(e.ctx, args...); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// bannedEverywhere: a source in the ban set reaches no published port,
// DNAT path (TCP and UDP), across a daemon restart, until unbanned; the
// same source reaches the port before the ban and after (the positive
// controls), and another source throughout.
func bannedEverywhere(t *testing.T, e *env, nftables bool, port int) {
	name := "banprobe"
	e.run(t, testbed.Spec{Name: name, Labels: map[string]string{"dockmoat.allow": strconv.Itoa(port)},
		Publish: []string{strconv.Itoa(port) + ":80", strconv.Itoa(port) + ":53/udp"}, Serve: []string{"80", "53/udp"}})
	e.sync(t)
	open := []check{out("tcp", A, port, true, name), out("tcp", B, port, true, name), out("udp", B, port, true, name)}
	e.expect(t, open...)
	ban(t, e, nftables, B, false)
	banned := []check{out("tcp", A, port, true, name), out("tcp", B, port, false, ""), out("udp", B, port, false, "")}
	e.expect(t, banned...)
	if plan, _ := e.bed.Exec(e.ctx, dockmoatBin, "plan", "--config", e.dm.Config, "--state-dir", e.dm.StateDir()); !strings.Contains(plan, "banned from every published port") || !strings.Contains(plan, B.String()) {
		t.Errorf("plan does not show the ban:\n%s", plan)
	}
	restart(t, e)
	e.expect(t, banned...)
	ban(t, e, nftables, B, true)
	e.expect(t, open...)
}
