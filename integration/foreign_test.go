package integration

import (
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestForeignRulesUntouched: a foreign DOCKER-USER rule, a fail2ban-style
// chain, a user chain named DOCKMOAT_LOG and every ufw chain are byte-identical (iptables-save lines)
// before `dockmoat run`, while it runs (after passes that opened and
// closed ports), and after `dockmoat uninstall`.
func TestForeignRulesUntouched(t *testing.T) {
	needBeds(t)
	for _, eng := range engines {
		if eng.Legacy {
			continue // no ufw on the legacy bed
		}
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, eng)
			ctx := e.ctx
			if err := e.bed.SetupUFW(ctx); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"--force", "enable"}, {"deny", "22"}, {"route", "allow", "proto", "tcp", "from", "any", "to", "any", "port", "7000"}} {
				if _, err := e.bed.UFW(ctx, args...); err != nil {
					t.Fatal(err)
				}
			}
			for _, args := range [][]string{
				{"iptables", "-I", "DOCKER-USER", "1", "-s", "192.0.2.99/32", "-m", "comment", "--comment", "admin rule", "-j", "DROP"},
				{"iptables", "-N", "f2b-sshd"},
				{"iptables", "-A", "f2b-sshd", "-s", "192.0.2.98/32", "-j", "REJECT", "--reject-with", "icmp-port-unreachable"},
				{"iptables", "-A", "f2b-sshd", "-j", "RETURN"},
				// Named like ours, created by the user: foreign all the same.
				{"iptables", "-N", "DOCKMOAT_LOG"},
				{"iptables", "-A", "DOCKMOAT_LOG", "-m", "limit", "--limit", "5/min", "-j", "LOG", "--log-prefix", "mine "},
				{"iptables", "-A", "DOCKMOAT_LOG", "-j", "RETURN"},
			} {
				if _, err := e.bed.HostExec(ctx, args...); err != nil {
					t.Fatal(err)
				}
			}
			foreign := func() map[string][]string {
				save, err := e.bed.IptablesSave(ctx)
				if err != nil {
					t.Fatal(err)
				}
				out := map[string][]string{}
				for _, l := range strings.Split(save, "\n") {
					if strings.HasPrefix(l, ":") || !strings.HasPrefix(l, "-A ") {
						continue
					}
					chain := strings.Fields(l)[1]
					if chain == "DOCKER-USER" && strings.Contains(l, "dockmoat:") {
						continue // our hook, the one rule we add there
					}
					if chain == "DOCKER-USER" || chain == "f2b-sshd" || chain == "DOCKMOAT_LOG" || strings.HasPrefix(chain, "ufw") {
						out[chain] = append(out[chain], l)
					}
				}
				return out
			}
			before := foreign()
			if len(before["ufw-user-forward"]) == 0 || len(before["f2b-sshd"]) != 2 || len(before["DOCKMOAT_LOG"]) != 2 {
				t.Fatalf("setup: %v", before)
			}
			same := func(when string) {
				t.Helper()
				now := foreign()
				for chain, rules := range before {
					if !slices.Equal(now[chain], rules) {
						t.Errorf("%s: chain %s changed:\nbefore %q\nnow    %q", when, chain, rules, now[chain])
					}
				}
				if len(now) != len(before) {
					t.Errorf("%s: foreign chains %d → %d", when, len(before), len(now))
				}
			}
			e.startDockmoat(t, "ufw: auto\n")
			c := e.run(t, testbed.Spec{Name: "web1", Labels: map[string]string{"dockmoat.allow": "8081"}, Publish: []string{"8081:80"}, Serve: []string{"80"}})
			e.sync(t)
			same("while running")
			if err := e.bed.Remove(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
			e.sync(t)
			same("after a container left")
			if err := e.dm.Stop(15); err != nil {
				t.Fatal(err)
			}
			if out, err := e.bed.Exec(ctx, dockmoatBin, "uninstall"); err != nil {
				t.Fatalf("uninstall: %v %s", err, out)
			}
			same("after uninstall")
		})
	}
}
