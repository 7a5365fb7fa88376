package iptplan

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// A limit is refused after the trusted sources and before the allows,
// on the forward path and on the docker-proxy path, per /64 for IPv6.
func TestRenderLimits(t *testing.T) {
	cfg := config.Default()
	cfg.TrustedSources = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	web := rulestest.Dual("web", 8080, map[string]string{"dockmoat.allow": "8080", "dockmoat.limit.8080": "10/minute,burst=5"})
	snap := rules.Snapshot{Containers: []rules.Container{web}}
	v4 := build(cfg, snap, rules.IPv4, opts{Sets: true})
	ing := lines(v4.Ruleset, ChainIngress)
	rulestest.AssertLines(t, "INGRESS", ing[:2], []string{
		`-A DOCKMOAT-INGRESS -s 10.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H trusted source 10.0.0.0/8" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-INGRESS -p tcp -m conntrack --ctstate DNAT --ctorigdstport 8080 -m hashlimit --hashlimit-above 10/min --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-srcmask 32 --hashlimit-htable-expire 30000 --hashlimit-name ` +
			LimitName(v4.Result.Limits[0], rules.IPv4) + ` -m comment --comment "dockmoat:H rate limit 8080/tcp, beyond 10/minute burst 5 per source, of web" -j DROP`,
	})
	if !strings.Contains(ing[2], "--match-set DOCKMOAT-OPEN-V4") {
		t.Errorf("the allows must follow the limit: %s", ing[2])
	}
	// web is IPv4-only: its IPv6 binding is served by docker-proxy.
	v6 := build(cfg, snap, rules.IPv6, opts{Sets: true})
	in := strings.Join(lines(v6.Ruleset, ChainInput), "\n")
	want := `-A DOCKMOAT-INPUT -p tcp -m tcp --dport 8080 -m hashlimit --hashlimit-above 10/min --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-srcmask 64`
	if !strings.Contains(in, want) || !strings.Contains(in, "via docker-proxy, beyond 10/minute burst 5 per source, of web\" -j RETURN") {
		t.Errorf("DOCKMOAT-INPUT lacks the IPv6 limit:\n%s", in)
	}
	if strings.Index(in, "hashlimit") > strings.Index(in, "allow ") && strings.Contains(in, "allow ") {
		t.Errorf("the limit must come before the allows:\n%s", in)
	}
	a, b := v4.Result.Limits[0], v4.Result.Limits[0]
	b.Rate.Burst = 6
	if n := LimitName(a, rules.IPv4); len(n) > 15 || n == LimitName(b, rules.IPv4) || n == LimitName(a, rules.IPv6) {
		t.Errorf("limit names must be short and distinct per setting and family: %s", n)
	}
}
