package rules_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

func egressSnap(cs ...rules.Container) rules.Snapshot {
	return rules.Snapshot{Containers: cs, Bridges: []string{"docker0"}, NetworkBridges: map[string]string{"bridge": "docker0"},
		DNS: []netip.Addr{addr("192.0.2.53"), addr("2001:db8::53"), addr("127.0.0.53")}}
}

func TestEgressPolicy(t *testing.T) {
	deny := ctr("deny", map[string]string{"dockmoat.egress": "deny", "dockmoat.egress.allow": "203.0.113.10:443/tcp, [2001:db8::1]:443"}, "172.17.0.2")
	deny.Endpoints[0].IPv6 = addr("fd00::2")
	open := ctr("open", nil, "172.17.0.3")
	typo := ctr("typo", map[string]string{"dockmoat.egress": "dny"}, "172.17.0.4")
	badList := ctr("badlist", map[string]string{"dockmoat.egress": "deny", "dockmoat.egress.allow": "example.com:443"}, "172.17.0.5")
	useless := ctr("useless", map[string]string{"dockmoat.egress.allow": "10.0.0.0/8"}, "172.17.0.6")
	byCfg := ctr("worker-1", nil, "172.17.0.7")
	liftCfg := ctr("worker-2", map[string]string{"dockmoat.egress": "allow", "dockmoat.egress.allow": "198.51.100.0/24"}, "172.17.0.8")
	cfg := config.Default()
	dest, _ := config.ParseEgressDest("10.0.0.0/8:5432/tcp")
	cfg.Egress.Rules = []config.EgressRule{{Container: "worker-*", Deny: true, Allow: []config.EgressDest{dest}}}
	snap := egressSnap(deny, open, typo, badList, useless, byCfg, liftCfg)

	v4 := policy.Build(cfg, snap, rules.IPv4, policy.Options{})
	got := map[string]rules.Egress{}
	for _, e := range v4.Egress {
		got[e.Container] = e
	}
	if _, ok := got["open"]; ok {
		t.Error("a container without egress policy is listed")
	}
	if _, ok := got["useless"]; ok {
		t.Error("an allow list without deny made the container deny")
	}
	for _, name := range []string{"deny", "typo", "badlist", "worker-1", "worker-2"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s: not deny", name)
		}
	}
	e := got["deny"]
	if len(e.From) != 1 || e.From[0] != (rules.EgressFrom{Bridge: "docker0", Addr: addr("172.17.0.2")}) {
		t.Errorf("deny from: %+v", e.From)
	}
	if len(e.Allow) != 1 || e.Allow[0].String() != "203.0.113.10:443/tcp" {
		t.Errorf("deny allow (rules.IPv4 only): %v", e.Allow)
	}
	if len(e.DNS) != 1 || e.DNS[0] != addr("192.0.2.53") {
		t.Errorf("dns: the family's non-loopback resolvers, got %v", e.DNS)
	}
	for _, tc := range []struct {
		dst   string
		port  uint16
		proto string
		want  bool
	}{
		{"203.0.113.10", 443, "tcp", true},
		{"203.0.113.10", 443, "udp", false},
		{"203.0.113.10", 80, "tcp", false},
		{"192.0.2.53", 53, "udp", true},
		{"192.0.2.53", 53, "tcp", true},
		{"192.0.2.53", 54, "udp", false},
		{"192.0.2.54", 53, "udp", false},
	} {
		if e.Allows(addr(tc.dst), tc.port, tc.proto) != tc.want {
			t.Errorf("deny allows %s %d/%s: want %v", tc.dst, tc.port, tc.proto, tc.want)
		}
	}
	if len(got["badlist"].Allow) != 0 || len(got["typo"].Allow) != 0 {
		t.Error("an invalid label allowed destinations")
	}
	if w := got["worker-2"]; len(w.Allow) != 2 || !strings.Contains(w.Origin, "config egress[0]") {
		t.Errorf("config deny wins over the label's allow, with both lists: %+v", w)
	}
	var problems []string
	for _, p := range v4.Problems {
		problems = append(problems, p.String())
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{"typo: label dockmoat.egress=\"dny\": want deny or allow", "badlist: label dockmoat.egress.allow", "useless: label dockmoat.egress.allow=\"10.0.0.0/8\": has no effect"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "unknown dockmoat label") {
		t.Errorf("egress labels reported as unknown:\n%s", all)
	}

	v6 := policy.Build(cfg, snap, rules.IPv6, policy.Options{Sets: true, Inc: policy.NewIncremental(rules.IPv6)})
	for _, e := range v6.Egress {
		if e.Container != "deny" {
			continue
		}
		if len(e.From) != 1 || e.From[0].Addr != addr("fd00::2") || len(e.Allow) != 1 || len(e.DNS) != 1 || e.DNS[0] != addr("2001:db8::53") {
			t.Errorf("ipv6 egress: %+v", e)
		}
		return
	}
	t.Error("ipv6: deny container missing (incremental path)")
}

func TestEgressDNSOverride(t *testing.T) {
	cfg := config.Default()
	cfg.Egress.DNS = []netip.Addr{addr("198.51.100.53")}
	snap := egressSnap(ctr("d", map[string]string{"dockmoat.egress": "deny"}, "172.17.0.2"))
	res := policy.Build(cfg, snap, rules.IPv4, policy.Options{})
	if len(res.Egress) != 1 || len(res.Egress[0].DNS) != 1 || res.Egress[0].DNS[0] != addr("198.51.100.53") {
		t.Errorf("egress_dns replaces the host's resolvers: %+v", res.Egress)
	}
	if got := rules.DNSFromHost(config.Default(), snap); len(got) != 1 || got[0] != addr("127.0.0.53") {
		t.Errorf("DNSFromHost: %v", got)
	}
}

// TestEgressInterface: a deny container's addresses carry the host end of
// its veth; on a real host (Links known) a deny container whose veth was
// not found is a problem that says what is then not refused.
func TestEgressInterface(t *testing.T) {
	db := rules.Container{ID: "id-db", Name: "db", Labels: map[string]string{rules.LabelEgress: "deny"},
		Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: addr("172.17.0.2"), IPv6: addr("fd00::2"), HostIface: "veth1a2b3c"}}}
	snap := egressSnap(db)
	res := policy.Build(config.Default(), snap, rules.IPv4, policy.Options{})
	if len(res.Egress) != 1 || len(res.Egress[0].From) != 1 || res.Egress[0].From[0].Iface != "veth1a2b3c" {
		t.Fatalf("egress %+v", res.Egress)
	}
	if len(res.Problems) != 0 {
		t.Errorf("problems %v", res.Problems)
	}
	snap.Links = []string{"eth0", "docker0"}
	snap.Containers[0].Endpoints = []rules.Endpoint{{Network: "bridge", IPv4: addr("172.17.0.2"), IPv6: addr("fd00::2")}}
	snap.Containers[0].Sandbox = "/run/docker/netns/0123"
	res = policy.Build(config.Default(), snap, rules.IPv4, policy.Options{})
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].String(), "another address is not refused") || res.Problems[0].Container != "db" {
		t.Errorf("problems %v", res.Problems)
	}
	if r6 := policy.Build(config.Default(), snap, rules.IPv6, policy.Options{}); len(r6.Problems) != 0 {
		t.Errorf("reported twice: %v", r6.Problems)
	}
	// While Docker starts it (dockerwatch/starting.go) its veth is not
	// known yet: its egress is refused by address, and nothing reported.
	snap.Containers[0].Starting = true
	res = policy.Build(config.Default(), snap, rules.IPv4, policy.Options{})
	if len(res.Problems) != 0 || len(res.Egress) != 1 || len(res.Egress[0].From) != 1 {
		t.Errorf("starting: problems %v, egress %+v", res.Problems, res.Egress)
	}
}
