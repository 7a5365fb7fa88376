package rules

import (
	"net/netip"
	"testing"

	"github.com/dockmoat/dockmoat/config"
)

// pb6 builds a binding on :: like Docker reports the IPv6 half of -p.
func pb6(host, ctrPort uint16, proto string) PortBinding {
	return PortBinding{HostIP: addr("::"), HostPort: host, ContainerPort: ctrPort, Proto: proto}
}

func proxySnap() Snapshot {
	both := func(host, c uint16, proto string) []PortBinding {
		return []PortBinding{pb(host, c, proto), pb6(host, c, proto)}
	}
	v6 := ctr("dual", map[string]string{"dockmoat.allow": "9000"}, "172.17.0.9", both(9000, 80, "tcp")...)
	v6.Endpoints[0].IPv6 = addr("fd00::9")
	return Snapshot{Bridges: []string{"docker0"}, Containers: []Container{
		ctr("db", nil, "172.17.0.2", append(both(5432, 5432, "tcp"), both(5353, 53, "udp")...)...),
		ctr("web", map[string]string{"dockmoat.allow": "8080"}, "172.17.0.3", both(8080, 80, "tcp")...),
		ctr("v4only", map[string]string{"dockmoat.allow": "8082", "dockmoat.from": "203.0.113.11"}, "172.17.0.4", both(8082, 80, "tcp")...),
		ctr("v6from", map[string]string{"dockmoat.allow": "8083", "dockmoat.from": "2001:db8:1::10, 203.0.113.11"}, "172.17.0.5", both(8083, 80, "tcp")...),
		ctr("local", nil, "172.17.0.6", PortBinding{HostIP: addr("::1"), HostPort: 7000, ContainerPort: 80, Proto: "tcp"}),
		v6,
	}}
}

func TestProxyPathIPv6(t *testing.T) {
	cfg := config.Config{TrustedSources: []netip.Prefix{netip.MustParsePrefix("2001:db8:9::/48"), netip.MustParsePrefix("10.0.0.0/8")}}
	res := Build(cfg, proxySnap(), IPv6, Options{})
	assertLines(t, ChainInput, lines(res.Ruleset, ChainInput), []string{
		`-A DOCKMOAT-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT-INPUT -i lo -m comment --comment "dockmoat:H from the host itself" -j RETURN`,
		`-A DOCKMOAT-INPUT -i docker0 -m comment --comment "dockmoat:H from docker network docker0" -j RETURN`,
		`-A DOCKMOAT-INPUT -i br-+ -m comment --comment "dockmoat:H from a docker network not seen yet br-*" -j RETURN`,
		`-A DOCKMOAT-INPUT -s 2001:db8:9::/48 -m comment --comment "dockmoat:H trusted source 2001:db8:9::/48" -j RETURN`,
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 8080 -m comment --comment "dockmoat:H allow web 8080/tcp via docker-proxy" -j RETURN`,
		`-A DOCKMOAT-INPUT -s 2001:db8:1::10/128 -p tcp -m tcp --dport 8083 -m comment --comment "dockmoat:H allow v6from 8083/tcp via docker-proxy from 2001:db8:1::10/128" -j RETURN`,
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 5432 -m comment --comment "dockmoat:H db 5432/tcp via docker-proxy: not allowed" -j DROP`,
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 8080 -m comment --comment "dockmoat:H web 8080/tcp via docker-proxy: not allowed" -j DROP`,
		// Open to an IPv4 source only: closed to every IPv6 client.
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 8082 -m comment --comment "dockmoat:H v4only 8082/tcp via docker-proxy: not allowed" -j DROP`,
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 8083 -m comment --comment "dockmoat:H v6from 8083/tcp via docker-proxy: not allowed" -j DROP`,
		`-A DOCKMOAT-INPUT -p udp -m udp --dport 5353 -m comment --comment "dockmoat:H db 5353/udp via docker-proxy: not allowed" -j DROP`,
	})
	if len(res.Proxied) != 5 {
		t.Errorf("want 5 proxied bindings (dual has IPv6, local is loopback), got %v", res.Proxied)
	}
	// The DNAT path is unchanged: the chains of the FORWARD side are there.
	if _, ok := res.Ruleset.Chain(ChainIngress); !ok {
		t.Error("INGRESS missing")
	}
	// IPv4: every container has an IPv4 address, Docker DNATs them all.
	if v4 := Build(cfg, proxySnap(), IPv4, Options{Sets: true}); len(v4.Proxied) != 0 || hasChain(v4.Ruleset, ChainInput) {
		t.Errorf("IPv4: no proxied binding expected, got %v", v4.Proxied)
	}
}

func TestProxyAllAndInputOnly(t *testing.T) {
	// Docker 20.10 without --ip6tables: no IPv6 DNAT at all, so even the
	// container with an IPv6 address is served by docker-proxy.
	res := Build(config.Default(), proxySnap(), IPv6, Options{ProxyAll: true, InputOnly: true})
	if len(res.Ruleset.Chains) != 1 || res.Ruleset.Chains[0].Name != ChainInput || len(res.Ruleset.Sets) != 0 {
		t.Fatalf("InputOnly: want DOCKMOAT-INPUT alone, got %v", res.Ruleset.Chains)
	}
	got := lines(res.Ruleset, ChainInput)
	for _, want := range []string{
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 9000 -m comment --comment "dockmoat:H allow dual 9000/tcp via docker-proxy" -j RETURN`,
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 9000 -m comment --comment "dockmoat:H dual 9000/tcp via docker-proxy: not allowed" -j DROP`,
	} {
		if !contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	// Nothing proxied: no chain at all (and so no hook).
	empty := Build(config.Default(), Snapshot{}, IPv6, Options{InputOnly: true})
	if len(empty.Ruleset.Chains) != 0 {
		t.Errorf("nothing proxied: want no chain, got %v", empty.Ruleset.Chains)
	}
	// A bound host address is matched exactly.
	c := ctr("bound", nil, "172.17.0.7", PortBinding{HostIP: addr("2001:db8:1::1"), HostPort: 443, ContainerPort: 443, Proto: "tcp"})
	b := Build(config.Default(), Snapshot{Containers: []Container{c}}, IPv6, Options{})
	if !contains(lines(b.Ruleset, ChainInput), `-A DOCKMOAT-INPUT -d 2001:db8:1::1/128 -p tcp -m tcp --dport 443 -m comment --comment "dockmoat:H bound 443/tcp via docker-proxy: not allowed" -j DROP`) {
		t.Errorf("bound address: %s", lines(b.Ruleset, ChainInput))
	}
}

func hasChain(rs Ruleset, name string) bool { _, ok := rs.Chain(name); return ok }

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
