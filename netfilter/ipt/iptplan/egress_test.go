package iptplan

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// TestRenderEgress: a deny container's new connections that leave its
// network (and those to the host) go to DOCKMOAT-EGRESS, after replies
// and before the "leaving docker network" return; there its resolvers
// and allowed destinations return and the rest is rejected.
func TestRenderEgress(t *testing.T) {
	cfg := config.Default()
	cfg.LogBlocked = true
	res := build(cfg, rulestest.EgressSnap(), rules.IPv4, opts{Sets: true})
	main := lines(res.Ruleset, ChainMain)
	assertLines(t, "DOCKMOAT head", main[:3], []string{
		`-A DOCKMOAT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT -s 172.17.0.2/32 -i docker0 ! -o docker0 -m comment --comment "dockmoat:H egress of db: leaving docker network docker0" -g DOCKMOAT-EGRESS`,
		`-A DOCKMOAT -i docker0 -m comment --comment "dockmoat:H leaving docker network docker0" -g DOCKMOAT-PASS`,
	})
	assertLines(t, "DOCKMOAT-EGRESS", lines(res.Ruleset, ChainEgress), []string{
		`-A DOCKMOAT-EGRESS -s 172.17.0.2/32 -d 192.0.2.53/32 -p udp -m udp --dport 53 -m comment --comment "dockmoat:H egress of db: dns resolver 192.0.2.53:53/udp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-EGRESS -s 172.17.0.2/32 -d 192.0.2.53/32 -p tcp -m tcp --dport 53 -m comment --comment "dockmoat:H egress of db: dns resolver 192.0.2.53:53/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-EGRESS -s 172.17.0.2/32 -d 203.0.113.10/32 -p tcp -m tcp --dport 443 -m comment --comment "dockmoat:H egress of db: allowed 203.0.113.10:443/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-EGRESS -s 172.17.0.2/32 -d 10.0.0.0/8 -p tcp -m tcp --dport 1000:2000 -m comment --comment "dockmoat:H egress of db: allowed 10.0.0.0/8:1000-2000" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-EGRESS -s 172.17.0.2/32 -d 10.0.0.0/8 -p udp -m udp --dport 1000:2000 -m comment --comment "dockmoat:H egress of db: allowed 10.0.0.0/8:1000-2000" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-EGRESS -s 172.17.0.2/32 -d 198.51.100.0/24 -m comment --comment "dockmoat:H egress of db: allowed 198.51.100.0/24" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-EGRESS -s 172.17.0.2/32 -m limit --limit 10/min --limit-burst 20 -m comment --comment "dockmoat:H egress of db: log refused" -j LOG --log-prefix "[DOCKMOAT EGRESS] "`,
		`-A DOCKMOAT-EGRESS -s 172.17.0.2/32 -m comment --comment "dockmoat:H egress of db: refused" -j REJECT`,
	})
	in := lines(res.Ruleset, ChainInput)
	assertLines(t, "DOCKMOAT-INPUT head", in[:3], []string{
		`-A DOCKMOAT-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT-INPUT -i lo -m comment --comment "dockmoat:H from the host itself" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-INPUT -s 172.17.0.2/32 -i docker0 -m comment --comment "dockmoat:H egress of db: to the host" -g DOCKMOAT-EGRESS`,
	})
	for _, l := range in {
		if l == `-A DOCKMOAT-INPUT -s 172.17.0.3/32 -i docker0 -m comment --comment "dockmoat:H egress of web: to the host" -g DOCKMOAT-EGRESS` {
			t.Error("a container without egress policy is sent to the egress chain")
		}
	}

	v6 := build(cfg, rulestest.EgressSnap(), rules.IPv6, opts{Sets: true})
	eg := lines(v6.Ruleset, ChainEgress)
	nd := len(rules.NeighbourDiscovery)
	assertLines(t, "DOCKMOAT-EGRESS ipv6", []string{eg[1], eg[nd+2], eg[len(eg)-1]}, []string{
		`-A DOCKMOAT-EGRESS -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-eq 255 -m comment --comment "dockmoat:H neighbour discovery: icmpv6 type neighbour-solicitation on the link" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-EGRESS -s fd00::2/128 -d 2001:db8::1/128 -p udp -m udp --dport 53 -m comment --comment "dockmoat:H egress of db: allowed _2001:db8::1_:53/udp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-EGRESS -s fd00::2/128 -m comment --comment "dockmoat:H egress of db: refused" -j REJECT`,
	})

	// Without deny containers there is no egress chain, and no input
	// chain unless docker-proxy serves something.
	none := build(cfg, rules.Snapshot{Bridges: []string{"docker0"}}, rules.IPv4, opts{})
	if _, ok := none.Ruleset.Chain(ChainEgress); ok {
		t.Error("egress chain without a deny container")
	}
	if _, ok := none.Ruleset.Chain(ChainInput); ok {
		t.Error("input chain without a reason")
	}
	if !IsOwnedChain(ChainEgress) {
		t.Error("DOCKMOAT-EGRESS is not owned: it would never be removed")
	}
}

// A deny container's new connection that dockmoat's chains did not mark
// (DOCKMOAT-EGRESS or DOCKMOAT flushed) is refused by the checks, out of
// its network and to the host; the checks then clear the mark.
func TestEgressChecks(t *testing.T) {
	res := build(config.Default(), rulestest.EgressSnap(), rules.IPv4, opts{Sets: true})
	assertLines(t, "DOCKMOAT-CHECK", lines(res.Ruleset, ChainCheck), []string{
		`-A DOCKMOAT-CHECK -m conntrack --ctstate DNAT -m mark ! --mark 0x20000000/0x20000000 -m comment --comment "dockmoat:H not let through by dockmoat, its chains flushed or unhooked: drop" -j DROP`,
		`-A DOCKMOAT-CHECK -s 172.17.0.2/32 -i docker0 ! -o docker0 -m mark ! --mark 0x20000000/0x20000000 -m comment --comment "dockmoat:H egress of db: not let through by dockmoat" -j REJECT`,
		`-A DOCKMOAT-CHECK -m comment --comment "dockmoat:H clear the mark" -j MARK --set-xmark 0x0/0x20000000`,
	})
	in := lines(res.Ruleset, ChainInputCheck)
	if len(in) != 2 || !strings.Contains(in[0], "-s 172.17.0.2/32 -i docker0 -m mark ! --mark 0x20000000/0x20000000") || !strings.HasSuffix(in[0], "-j REJECT") {
		t.Errorf("DOCKMOAT-INPUT-CHECK:\n%s", strings.Join(in, "\n"))
	}
}
