// Package rulestest holds the snapshots and helpers that the tests of the
// backends (netfilter/ipt, netfilter/nft) share, so both render the same
// inputs. Package rules' own tests keep theirs (they cannot import this).
package rulestest

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// Addr parses an address.
func Addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// Ctr is a container on the default bridge at ip with labels and ports.
func Ctr(name string, labels map[string]string, ip string, ports ...rules.PortBinding) rules.Container {
	return rules.Container{ID: "id-" + name, Name: name, Labels: labels, Ports: ports,
		Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: Addr(ip)}}}
}

// PB is a binding on 0.0.0.0 as Docker reports it, PB6 the same on ::.
func PB(host, ctrPort uint16, proto string) rules.PortBinding {
	return rules.PortBinding{HostIP: Addr("0.0.0.0"), HostPort: host, ContainerPort: ctrPort, Proto: proto}
}

// PB6 is a binding on :: as Docker reports it.
func PB6(host, ctrPort uint16, proto string) rules.PortBinding {
	return rules.PortBinding{HostIP: Addr("::"), HostPort: host, ContainerPort: ctrPort, Proto: proto}
}

// Web is container web (ID "w") at ip on the default bridge, publishing
// 8080 on 0.0.0.0 to its port 80/tcp, labelled open: what the backend
// and loop tests install first.
func Web(ip string) rules.Container {
	return rules.Container{ID: "w", Name: "web", Labels: map[string]string{"dockmoat.allow": "8080"},
		Ports: []rules.PortBinding{PB(8080, 80, "tcp")}, Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: Addr(ip)}}}
}

// Dual publishes port on 0.0.0.0 and :: like `docker run -p 5432:5432`,
// from an IPv4-only container: IPv6 clients meet docker-proxy through
// INPUT.
func Dual(name string, port uint16, labels map[string]string) rules.Container {
	c := Web("172.17.0.5")
	c.ID, c.Name, c.Labels = "id-"+name, name, labels
	c.Ports = []rules.PortBinding{PB(port, 80, "tcp"), PB6(port, 80, "tcp")}
	return c
}

// ProxySnap has containers published on IPv4 and IPv6, most IPv4-only:
// their IPv6 bindings are served by docker-proxy (one is open, one
// restricted to IPv4 sources, one to an IPv6 source, one closed, one
// loopback-only, and one container has an IPv6 address).
func ProxySnap() rules.Snapshot {
	both := func(host, c uint16, proto string) []rules.PortBinding {
		return []rules.PortBinding{PB(host, c, proto), PB6(host, c, proto)}
	}
	v6 := Ctr("dual", map[string]string{"dockmoat.allow": "9000"}, "172.17.0.9", both(9000, 80, "tcp")...)
	v6.Endpoints[0].IPv6 = Addr("fd00::9")
	return rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		Ctr("db", nil, "172.17.0.2", append(both(5432, 5432, "tcp"), both(5353, 53, "udp")...)...),
		Ctr("web", map[string]string{"dockmoat.allow": "8080"}, "172.17.0.3", both(8080, 80, "tcp")...),
		Ctr("v4only", map[string]string{"dockmoat.allow": "8082", "dockmoat.from": "203.0.113.11"}, "172.17.0.4", both(8082, 80, "tcp")...),
		Ctr("v6from", map[string]string{"dockmoat.allow": "8083", "dockmoat.from": "2001:db8:1::10, 203.0.113.11"}, "172.17.0.5", both(8083, 80, "tcp")...),
		Ctr("local", nil, "172.17.0.6", rules.PortBinding{HostIP: Addr("::1"), HostPort: 7000, ContainerPort: 80, Proto: "tcp"}),
		v6,
	}}
}

// AssertLines compares rule lists and reports the caller's line.
func AssertLines(t *testing.T, name string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return
	}
	t.Errorf("%s:\n got:\n  %s\nwant:\n  %s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
}

// EgressSnap has one egress-deny container on docker0, dual-stack, with
// an allow list, and one resolver per family.
func EgressSnap() rules.Snapshot {
	c := Ctr("db", map[string]string{"dockmoat.egress": "deny", "dockmoat.egress.allow": "203.0.113.10:443/tcp,10.0.0.0/8:1000-2000,[2001:db8::1]:53/udp,198.51.100.0/24"}, "172.17.0.2")
	c.Endpoints[0].IPv6 = Addr("fd00::2")
	return rules.Snapshot{Containers: []rules.Container{c, Ctr("web", nil, "172.17.0.3")}, Bridges: []string{"docker0"},
		NetworkBridges: map[string]string{"bridge": "docker0"}, DNS: []netip.Addr{Addr("192.0.2.53"), Addr("2001:db8::53")}}
}

// GoldenInput is the config and snapshot of the golden table: trusted
// sources, logging, a container open to prefixes in both families.
func GoldenInput() (config.Config, rules.Snapshot) {
	cfg := config.Default()
	cfg.LogBlocked = true
	cfg.TrustedSources = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	snap := rules.Snapshot{Bridges: []string{"docker0", "br-0123456789ab"}, Containers: []rules.Container{{Name: "web",
		Labels: map[string]string{"dockmoat.allow": "8080, 53/udp", "dockmoat.from": "198.51.100.0/24, 2001:db8::/48"},
		Ports: []rules.PortBinding{{HostIP: Addr("0.0.0.0"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
			{HostIP: Addr("::"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
			{HostIP: Addr("192.0.2.1"), HostPort: 53, ContainerPort: 53, Proto: "udp"}},
		Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: Addr("172.17.0.2"), IPv6: Addr("fd00::2")}}}}}
	return cfg, snap
}
