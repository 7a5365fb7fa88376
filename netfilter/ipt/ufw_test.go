package ipt

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// ufw's plain rules as `ufw allow` writes them become allows of the
// published host port, for the rule's sources; what a deny before it may
// shadow, ufw limit and matches dockmoat does not read are skipped, and
// said.
func TestUFWInputAllows(t *testing.T) {
	save := `*filter
:ufw-user-input - [0:0]
-A ufw-user-input -p tcp -m tcp --dport 443 -j ACCEPT
-A ufw-user-input -p udp -m udp --dport 443 -j ACCEPT
-A ufw-user-input -s 198.51.100.0/24 -p tcp -m tcp --dport 8080 -j ACCEPT
-A ufw-user-input -p tcp -m multiport --dports 9000:9002,9010 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 22 -j ufw-user-limit-accept
-A ufw-user-input -i wg0 -p tcp -m tcp --dport 3000 -j ACCEPT
-A ufw-user-input -s 203.0.113.7 -j DROP
-A ufw-user-input -p tcp -m tcp --dport 5432 -j ACCEPT
-A ufw-user-input -s 192.0.2.0/24 -p tcp -m tcp --dport 6379 -j ACCEPT
COMMIT
`
	allows, skipped := UFWInputAllows(iptsave.Parse([]byte(save))["filter"], rules.IPv4)
	if len(allows) != 5 {
		t.Fatalf("want 5 allows (443 tcp and udp, 8080 from a range, 9000-9002 and 9010, 6379 from a range), got %+v", allows)
	}
	for _, want := range []string{"ufw limit", "wg0", "comes after '-s 203.0.113.7 -j DROP'"} {
		if !slices.ContainsFunc(skipped, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("skipped lacks %q: %q", want, skipped)
		}
	}
	cfg := config.Default()
	cfg.UFWInput, cfg.Allow = true, allows
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		rulestest.Ctr("web", nil, "172.17.0.2", rulestest.PB(443, 8443, "tcp"), rulestest.PB(8080, 80, "tcp"), rulestest.PB(5432, 5432, "tcp")),
	}}
	open := map[uint16]rules.Decision{}
	for _, d := range policy.Build(cfg, snap, rules.IPv4, policy.Options{}).Decisions() {
		open[d.Binding.HostPort] = d
	}
	if d := open[443]; !d.Open || !d.Sources.Any || !strings.Contains(d.Reason, "ufw rule") {
		t.Errorf("443: %+v", d)
	}
	if d := open[8080]; !d.Open || d.Sources.Any || !slices.Equal(d.Sources.Prefixes, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}) {
		t.Errorf("8080: %+v", d)
	}
	if d := open[5432]; d.Open {
		t.Errorf("5432 follows a deny of a source it would open to: %+v", d)
	}
}

// ufw names its ip6tables chains ufw6-…: the IPv6 route rules and plain
// rules are read and jumped to there.
func TestUFWIPv6Chains(t *testing.T) {
	save := "*filter\n:ufw6-user-input - [0:0]\n-A ufw6-user-input -s 2001:db8::/32 -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT\n"
	allows, skipped := UFWInputAllows(iptsave.Parse([]byte(save))["filter"], rules.IPv6)
	if len(allows) != 1 || len(skipped) != 0 || allows[0].From.Prefixes[0] != netip.MustParsePrefix("2001:db8::/32") {
		t.Errorf("ufw6-user-input: %+v %q", allows, skipped)
	}
	res := policy.Build(config.Default(), rulestest.ProxySnap(), rules.IPv6, policy.Options{})
	rs := iptplan.Render(config.Default(), res, iptplan.RenderOptions{UFWForward: true})
	ing, _ := rs.Chain(iptplan.ChainIngress)
	var lines []string
	for _, r := range ing.Rules {
		lines = append(lines, iptplan.RuleLine(ing.Name, r))
	}
	if all := strings.Join(lines, "\n"); !strings.Contains(all, "-j ufw6-user-forward") || strings.Contains(all, "-j ufw-user-forward") {
		t.Errorf("IPv6 route rules:\n%s", all)
	}
}
