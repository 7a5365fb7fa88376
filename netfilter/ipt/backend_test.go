package ipt

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptfake"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

func TestFirstSyncInstallsChainsThenHook(t *testing.T) {
	r := newRig(t, config.Default())
	res := r.sync(t)
	if !res.Applied || !res.HookFix {
		t.Fatalf("first pass should apply and hook: %+v", res)
	}
	// One batch for the chains, then one that puts the hook in (deleting
	// copies by rule, never by position), then the input hook (the
	// published port is closed on the docker-proxy path too).
	if r.v4.Restores != 3 || !strings.HasPrefix(r.v4.Batches[1], "*filter\n-I DOCKER-USER 1 ") || !strings.HasPrefix(r.v4.Batches[2], "*filter\n-I INPUT 1 ") {
		t.Errorf("want a chains batch then a hook batch, got %d: %q", r.v4.Restores, r.v4.Batches)
	}
	du := r.v4.Rules("DOCKER-USER")
	if len(du) != 4 || !strings.Contains(du[0], "dockmoat:hook") || !strings.Contains(du[1], "dockmoat:check") || du[2] != foreign || du[3] != "-j RETURN" {
		t.Errorf("DOCKER-USER = %q; want the hook, the check, then the foreign rules unchanged", du)
	}
	ing := strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n")
	if !strings.Contains(ing, "-d 172.17.0.2/32") || !strings.HasSuffix(ing, "-j DROP") {
		t.Errorf("ingress chain:\n%s", ing)
	}
	// The batch that created the chains held the deny and the allow together.
	if b := r.v4.Batches[0]; !strings.Contains(b, "default deny") || !strings.Contains(b, "allow web") {
		t.Errorf("first batch lacks deny or allow:\n%s", b)
	}
	if r.v6.HasChain(iptplan.ChainMain) {
		t.Error("IPv6 has no DOCKER-USER: dockmoat must not create chains there")
	}
	r.inSync(t)
}

func TestSecondPassChangesNothing(t *testing.T) {
	r := newRig(t, config.Default())
	r.sync(t)
	restores, inserts := r.v4.Restores, r.v4.Inserts
	res := r.sync(t)
	if res.Applied || res.HookFix || r.v4.Restores != restores || r.v4.Inserts != inserts {
		t.Errorf("an in-sync pass wrote to the kernel: %+v restores %d→%d", res, restores, r.v4.Restores)
	}
}

func TestContainerChangeRewritesOnlyIngress(t *testing.T) {
	r := newRig(t, config.Default())
	r.sync(t)
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.9")}})
	if res := r.sync(t); len(res.Drift) != 0 {
		t.Errorf("a Docker change is not drift: %v", res.Drift)
	}
	last := r.v4.Batches[len(r.v4.Batches)-1]
	if strings.Contains(last, ":"+iptplan.ChainMain+" ") || !strings.Contains(last, ":"+iptplan.ChainIngress+" ") {
		t.Errorf("batch should replace only %s:\n%s", iptplan.ChainIngress, last)
	}
	ing := strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n")
	if strings.Contains(ing, "172.17.0.2") || !strings.Contains(ing, "172.17.0.9") {
		t.Errorf("stale address kept or new one missing:\n%s", ing)
	}
}

func TestDriftRepaired(t *testing.T) {
	cases := map[string]func(*iptfake.Table){
		"ingress flushed": func(tb *iptfake.Table) { tb.SetChain(iptplan.ChainIngress) },
		"main flushed":    func(tb *iptfake.Table) { tb.SetChain(iptplan.ChainMain) },
		"DOCKER-USER flushed": func(tb *iptfake.Table) {
			tb.SetChain("DOCKER-USER")
		},
		"hook moved below a new rule": func(tb *iptfake.Table) {
			_ = tb.Insert("filter", "DOCKER-USER", 1, "-s", "192.0.2.1/32", "-j", "ACCEPT")
		},
		"hook duplicated": func(tb *iptfake.Table) {
			_ = tb.Insert("filter", "DOCKER-USER", 3, iptplan.HookSpec()...)
		},
		"foreign rule added to our chain": func(tb *iptfake.Table) {
			tb.Append(iptplan.ChainIngress, "-j ACCEPT")
		},
		"rule reordered": func(tb *iptfake.Table) {
			rs := tb.Rules(iptplan.ChainIngress)
			slices.Reverse(rs)
			tb.SetChain(iptplan.ChainIngress, rs...)
		},
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, config.Default())
			r.sync(t)
			want := r.v4.Rules(iptplan.ChainIngress)
			breakIt(r.v4)
			deletes := r.v4.Deletes
			res := r.sync(t)
			if r.v4.Deletes != deletes {
				// A position read before a concurrent writer's insert
				// would name someone else's rule.
				t.Errorf("the repair deleted %d rule(s) one by one; copies of the hook go by rule, in the batch that inserts it", r.v4.Deletes-deletes)
			}
			if len(res.Drift) == 0 {
				t.Errorf("drift not reported")
			}
			t.Logf("drift: %v", res.Drift)
			r.inSync(t)
			if got := r.v4.Rules(iptplan.ChainIngress); !slices.Equal(got, want) {
				t.Errorf("ingress not restored:\n%q\nwant\n%q", got, want)
			}
			du := r.v4.Rules("DOCKER-USER")
			hooks := 0
			for _, l := range du {
				if strings.Contains(l, "dockmoat:hook") {
					hooks++
				}
			}
			if hooks != 1 || !strings.Contains(du[0], "dockmoat:hook") {
				t.Errorf("DOCKER-USER after repair: %q", du)
			}
			if !slices.Contains(du, foreign) && name != "DOCKER-USER flushed" {
				t.Errorf("foreign rule lost: %q", du)
			}
		})
	}
}

func TestRestoreFailureLeavesRulesAndHook(t *testing.T) {
	r := newRig(t, config.Default())
	r.sync(t)
	r.set(rules.Snapshot{Bridges: []string{"docker0"}})
	before := r.v4.Rules(iptplan.ChainIngress)
	r.v4.FailRestore = &netfilter.RestoreError{Cmd: "iptables-restore", Err: errors.New("exit status 1"), Stderr: "line 3 failed"}
	_, err := r.try()
	var re *netfilter.RestoreError
	if !errors.As(err, &re) {
		t.Fatalf("want a RestoreError, got %v", err)
	}
	if got := r.v4.Rules(iptplan.ChainIngress); !slices.Equal(got, before) {
		t.Error("a failed batch changed the chain")
	}
}

func TestUFWAndStaleChains(t *testing.T) {
	r := newRig(t, config.Config{UFW: config.UFWOn})
	res := r.sync(t)
	found := false
	for _, p := range res.Problems {
		found = found || strings.Contains(p.String(), "ufw-user-forward not found")
	}
	if !found {
		t.Errorf("ufw: on without the chain should be reported: %v", res.Problems)
	}
	if strings.Contains(strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n"), "ufw-user-forward") {
		t.Error("jump to a missing ufw chain")
	}
	r.v4.SetChain(iptplan.UFWChain(rules.IPv4), "-p tcp --dport 80 -j ACCEPT")
	// Without sets DOCKMOAT-DENY is one of ours that is no longer wanted;
	// DOCKMOAT_LOG only looks like ours and is someone else's.
	r.v4.SetChain(iptplan.ChainDeny, "-j DROP")
	r.v4.SetChain("DOCKMOAT_LOG", "-j LOG")
	r.v4.SetChain("DOCKMOAT-MINE", "-j RETURN")
	r.sync(t)
	if !strings.Contains(strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n"), "-j ufw-user-forward") {
		t.Error("ufw chain present but not consulted")
	}
	if r.v4.HasChain(iptplan.ChainDeny) {
		t.Error("stale owned chain not removed")
	}
	for _, ch := range []string{"DOCKMOAT_LOG", "DOCKMOAT-MINE"} {
		if !r.v4.HasChain(ch) || len(r.v4.Rules(ch)) != 1 {
			t.Errorf("foreign chain %s changed: %q", ch, r.v4.Rules(ch))
		}
	}
	r.inSync(t)
	// ufw: off ignores an existing chain.
	r.cfg = config.Config{UFW: config.UFWOff}
	r.sync(t)
	if strings.Contains(strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n"), "ufw-user-forward") {
		t.Error("ufw: off still consults ufw")
	}
}

// A foreign restore of the filter table (or firewalld's flush) removes
// DOCKER-USER and FORWARD's jump to it, while Docker's DNAT stays in the
// nat table: dockmoat hooks the top of FORWARD, by a pass and by a repair
// without Docker alike, and moves back (hooked first, unhooked after)
// once Docker recreates its chain.
func TestMissingDockerUserHooksForward(t *testing.T) {
	for _, how := range []string{"pass", "repair"} {
		t.Run(how, func(t *testing.T) {
			r := newRig(t, config.Default())
			r.sync(t)
			fix := func() {
				t.Helper()
				if how == "pass" {
					r.sync(t)
					return
				}
				if _, err := r.b.Repair(context.Background()); err != nil {
					t.Fatalf("repair: %v", err)
				}
			}
			restored := r.v4.Rules(iptplan.ChainIngress)
			r.v4.SetChain("FORWARD")
			for _, ch := range []string{"DOCKER-USER", iptplan.ChainMain, iptplan.ChainIngress} {
				r.v4.DeleteChain(ch)
			}
			if ok, _ := r.b.Intact(context.Background()); ok {
				t.Fatal("intact with the hook and chains gone")
			}
			fix()
			if fw := r.v4.Rules("FORWARD"); len(fw) != 2 || !strings.Contains(fw[0], "dockmoat:hook") || !strings.Contains(fw[1], "dockmoat:check") {
				t.Fatalf("FORWARD while DOCKER-USER is missing: %q; want dockmoat's hook and check", fw)
			}
			if got := r.v4.Rules(iptplan.ChainIngress); !slices.Equal(got, restored) {
				t.Errorf("ingress not restored:\n%q\nwant\n%q", got, restored)
			}
			if ok, err := r.b.Intact(context.Background()); !ok || err != nil {
				t.Errorf("not intact with the hook in FORWARD (%v)", err)
			}

			// Docker recreates its chain, then its jump: the hook stays in
			// FORWARD until DOCKER-USER is reached.
			r.v4.SetChain("DOCKER-USER", "-j RETURN")
			fix()
			if fw := r.v4.Rules("FORWARD"); len(fw) != 2 || !strings.Contains(fw[0], "dockmoat:hook") || !strings.Contains(fw[1], "dockmoat:check") {
				t.Fatalf("FORWARD while DOCKER-USER is not yet reached: %q; want dockmoat's hook and check", fw)
			}
			r.v4.SetChain("FORWARD", append(r.v4.Rules("FORWARD"), "-j DOCKER-USER")...)
			if ok, _ := r.b.Intact(context.Background()); ok {
				t.Error("intact with the hook in FORWARD although DOCKER-USER is back")
			}
			fix()
			if fw := r.v4.Rules("FORWARD"); !slices.Equal(fw, []string{"-j DOCKER-USER"}) {
				t.Errorf("FORWARD after DOCKER-USER came back: %q", fw)
			}
			if du := r.v4.Rules("DOCKER-USER"); len(du) != 3 || !strings.Contains(du[0], "dockmoat:hook") || !strings.Contains(du[1], "dockmoat:check") {
				t.Errorf("DOCKER-USER after it came back: %q", du)
			}
			if ok, err := r.b.Intact(context.Background()); !ok || err != nil {
				t.Errorf("not intact after moving back (%v)", err)
			}
			r.inSync(t)
		})
	}
}

func TestUninstallRemovesOnlyOurs(t *testing.T) {
	r := newRig(t, config.Default())
	r.sync(t)
	_ = r.v4.Insert("filter", "DOCKER-USER", 3, iptplan.HookSpec()...) // a duplicate too
	r.v4.SetChain("DOCKMOAT_LOG", "-j LOG")
	if err := r.b.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.v4.Rules("DOCKMOAT_LOG"); !slices.Equal(got, []string{"-j LOG"}) {
		t.Errorf("foreign DOCKMOAT_LOG after uninstall: %q", got)
	}
	r.v4.DeleteChain("DOCKMOAT_LOG")
	if du := r.v4.Rules("DOCKER-USER"); !slices.Equal(du, []string{foreign, "-j RETURN"}) {
		t.Errorf("DOCKER-USER after uninstall: %q", du)
	}
	save, _ := r.v4.Save(context.Background(), "filter")
	if strings.Contains(string(save), "DOCKMOAT") {
		t.Errorf("left behind:\n%s", save)
	}
	if err := r.b.Uninstall(context.Background()); err != nil {
		t.Errorf("second uninstall: %v", err)
	}
}

func TestGuardThenRun(t *testing.T) {
	// After a reboot: empty table, no Docker chains yet.
	v4 := iptfake.New()
	r := bareRig(v4)
	done, err := r.b.Guard(context.Background(), config.Default(), netfilter.Boot{})
	if err != nil {
		t.Fatal(err)
	}
	if fw := v4.Rules("FORWARD"); len(fw) != 1 || fw[0] != "-j DOCKER-USER" {
		t.Errorf("FORWARD: %q", fw)
	}
	if du := v4.Rules("DOCKER-USER"); len(du) != 1 || !strings.Contains(du[0], "dockmoat:hook") {
		t.Errorf("DOCKER-USER: %q", du)
	}
	ing := strings.Join(v4.Rules(iptplan.ChainIngress), "\n")
	if strings.Contains(ing, "RETURN") || !strings.HasSuffix(ing, "-j DROP") {
		t.Errorf("guard must open nothing:\n%s", ing)
	}
	t.Log(done)
	// A second guard (or one after run) leaves things alone.
	restores := v4.Restores
	if _, err := r.b.Guard(context.Background(), config.Default(), netfilter.Boot{}); err != nil || v4.Restores != restores {
		t.Errorf("second guard rewrote rules: %v", err)
	}
	// run's first pass replaces the guard with the exact ruleset.
	if _, err := r.try(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(v4.Rules(iptplan.ChainIngress), "\n"), "allow web 8080/tcp") {
		t.Error("run did not replace the guard ruleset")
	}
}

// With the last pass's published ports, the guard closes them on INPUT
// too (the docker-proxy path at boot), and run's first pass takes that
// chain over with its check.
func TestGuardClosesLastPortsOnInput(t *testing.T) {
	v4 := iptfake.New()
	r := bareRig(v4)
	boot := netfilter.Boot{Published: [2][]policy.PortRun{{{PortRange: policy.PortRange{Proto: "tcp", Lo: 8080, Hi: 8081}}}}}
	if _, err := r.b.Guard(context.Background(), config.Default(), boot); err != nil {
		t.Fatal(err)
	}
	if in := v4.Rules("INPUT"); len(in) != 1 || !strings.Contains(in[0], "dockmoat:input") {
		t.Errorf("INPUT: %q", in)
	}
	got := strings.Join(v4.Rules(iptplan.ChainInput), "\n")
	if !strings.Contains(got, "--dport 8080:8081") || !strings.HasSuffix(got, "-j DROP") || strings.Contains(got, "PASS") {
		t.Errorf("guard's DOCKMOAT-INPUT:\n%s", got)
	}
	if _, err := r.try(); err != nil {
		t.Fatal(err)
	}
	if in := v4.Rules("INPUT"); len(in) != 2 || !strings.Contains(in[1], "dockmoat:input-check") {
		t.Errorf("INPUT after run: %q", in)
	}
	if got := strings.Join(v4.Rules(iptplan.ChainInput), "\n"); !strings.Contains(got, "allow 8080/tcp to web via docker-proxy") {
		t.Errorf("run did not replace the guard's input chain:\n%s", got)
	}
}

// A late guard leaves alone a dockmoat hooked in FORWARD (DOCKER-USER
// gone): the coarse guard ruleset must not replace the exact one.
func TestGuardLeavesForwardHook(t *testing.T) {
	v4 := iptfake.New("DOCKER", "DOCKER-USER")
	v4.Append("FORWARD", "-j DOCKER-USER")
	r := bareRig(v4)
	if _, err := r.try(); err != nil {
		t.Fatal(err)
	}
	v4.SetChain("FORWARD")
	v4.DeleteChain("DOCKER-USER")
	if _, err := r.try(); err != nil {
		t.Fatal(err)
	}
	restores := v4.Restores
	if _, err := r.b.Guard(context.Background(), config.Default(), netfilter.Boot{}); err != nil || v4.Restores != restores {
		t.Errorf("a guard rewrote the rules of a dockmoat hooked in FORWARD (%v)", err)
	}
	if !strings.Contains(strings.Join(v4.Rules(iptplan.ChainIngress), "\n"), "allow web 8080/tcp") {
		t.Error("the exact ruleset was replaced")
	}
}
