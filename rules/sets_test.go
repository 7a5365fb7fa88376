package rules

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
)

func elems(s Set) []string {
	var out []string
	for _, e := range s.Sorted() {
		out = append(out, e.String())
	}
	return out
}

func TestBuildSets(t *testing.T) {
	cfg := config.Default()
	dual := ctr("dual", map[string]string{LabelAllow: "*"}, "172.17.0.9", pb(7000, 70, "tcp"))
	dual.Ports = append(dual.Ports, PortBinding{HostIP: addr("::"), HostPort: 7000, ContainerPort: 70, Proto: "tcp"})
	dual.Endpoints = append(dual.Endpoints, Endpoint{Network: "other", IPv4: addr("172.18.0.9"), IPv6: addr("fd00::9")})
	snap := Snapshot{Bridges: []string{"docker0"}, Containers: []Container{
		ctr("web", map[string]string{LabelAllow: "8080,53/udp"}, "172.17.0.2", pb(8080, 80, "tcp"), pb(53, 5353, "udp")),
		ctr("db", map[string]string{LabelAllow: "5432", LabelFrom: "198.51.100.0/24,203.0.113.7,2001:db8::/32"}, "172.17.0.3", pb(5432, 5432, "tcp")),
		ctr("closed", nil, "172.17.0.4", pb(9000, 9000, "tcp")),
		// One container port published twice with different policies: a
		// set cannot tell the two apart, so its allow stays a rule.
		ctr("twice", map[string]string{LabelAllow: "8081"}, "172.17.0.5", pb(8081, 80, "tcp"), pb(9091, 80, "tcp")),
		// Published twice, both open to anyone: a set element is exact.
		ctr("both", map[string]string{LabelAllow: "*"}, "172.17.0.6", pb(8082, 80, "tcp"), pb(9092, 80, "tcp")),
		dual,
	}}
	res := Build(cfg, snap, IPv4, Options{Sets: true})
	assertLines(t, "DOCKMOAT-INGRESS", lines(res.Ruleset, ChainIngress), []string{
		`-A DOCKMOAT-INGRESS -m set --match-set DOCKMOAT-OPEN-V4 dst,dst -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H allowed ports: set DOCKMOAT-OPEN-V4" -g DOCKMOAT-PORTS`,
		`-A DOCKMOAT-INGRESS -m set --match-set DOCKMOAT-FROM-V4 dst,dst,src -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H allowed ports by source: set DOCKMOAT-FROM-V4" -g DOCKMOAT-PORTS`,
		`-A DOCKMOAT-INGRESS -d 172.17.0.5/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8081 -m comment --comment "dockmoat:H allow twice 8081/tcp" -j RETURN`,
		`-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:H not allowed" -j DOCKMOAT-DENY`,
	})
	// Published ports of the set elements, consecutive ones as a range;
	// 8081 of "twice" is a rule, and 9091 (closed) is in neither.
	assertLines(t, "DOCKMOAT-PORTS", lines(res.Ruleset, ChainPorts), []string{
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 5432 -m comment --comment "dockmoat:H allowed published ports 5432/tcp" -j RETURN`,
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 7000 -m comment --comment "dockmoat:H allowed published ports 7000/tcp" -j RETURN`,
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 8080 -m comment --comment "dockmoat:H allowed published ports 8080/tcp" -j RETURN`,
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 8082 -m comment --comment "dockmoat:H allowed published ports 8082/tcp" -j RETURN`,
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 9092 -m comment --comment "dockmoat:H allowed published ports 9092/tcp" -j RETURN`,
		`-A DOCKMOAT-PORTS -p udp -m conntrack --ctorigdstport 53 -m comment --comment "dockmoat:H allowed published ports 53/udp" -j RETURN`,
		`-A DOCKMOAT-PORTS -m comment --comment "dockmoat:H published port not allowed for this container" -j DOCKMOAT-DENY`,
	})
	assertLines(t, "DOCKMOAT-DENY", lines(res.Ruleset, ChainDeny), []string{`-A DOCKMOAT-DENY -m comment --comment "dockmoat:H default deny" -j DROP`})
	if len(res.Ruleset.Sets) != 2 {
		t.Fatalf("sets %+v", res.Ruleset.Sets)
	}
	open, from := res.Ruleset.Sets[0], res.Ruleset.Sets[1]
	if open.Name != "DOCKMOAT-OPEN-V4" || from.Name != "DOCKMOAT-FROM-V4" || SetType(open.Kind) != "hash:ip,port" || SetType(from.Kind) != "hash:ip,port,net" {
		t.Errorf("set names/types %s %s", open.Name, from.Name)
	}
	assertLines(t, "OPEN", elems(open), []string{"172.17.0.2,tcp:80", "172.17.0.2,udp:5353", "172.17.0.6,tcp:80", "172.17.0.9,tcp:70", "172.18.0.9,tcp:70"})
	assertLines(t, "FROM", elems(from), []string{"172.17.0.3,tcp:5432,198.51.100.0/24", "172.17.0.3,tcp:5432,203.0.113.7/32"})

	// IPv6: only the v6 address and v6 sources; the v4-only source list of
	// another container opens nothing there.
	res6 := Build(cfg, snap, IPv6, Options{Sets: true})
	assertLines(t, "OPEN6", elems(res6.Ruleset.Sets[0]), []string{"fd00::9,tcp:70"})
	if res6.Ruleset.Sets[0].Name != "DOCKMOAT-OPEN-V6" || len(res6.Ruleset.Sets[1].Elems) != 0 {
		t.Errorf("v6 sets %+v", res6.Ruleset.Sets)
	}

	// Without sets: the same allows as rules, and no sets.
	lin := Build(cfg, snap, IPv4, Options{})
	if len(lin.Ruleset.Sets) != 0 || len(lines(lin.Ruleset, ChainIngress)) != 10 {
		t.Errorf("linear: %d sets, rules:\n%v", len(lin.Ruleset.Sets), lines(lin.Ruleset, ChainIngress))
	}
	if !reflect.DeepEqual(lin.Decisions(), res.Decisions()) || !reflect.DeepEqual(lin.Allows(), res.Allows()) {
		t.Error("sets changed the decisions or the allow list")
	}
}

// Consecutive published ports make one range rule; a port bound on two
// host addresses to two different containers stays a pair of rules.
func TestBuildSetsPortRanges(t *testing.T) {
	var cs []Container
	for i := range 5 {
		cs = append(cs, ctr(fmt.Sprintf("c%d", i), map[string]string{LabelAllow: "*"}, fmt.Sprintf("172.17.0.%d", 10+i), pb(uint16(10000+i), 80, "tcp")))
	}
	a := ctr("a", map[string]string{LabelAllow: "*"}, "172.17.1.1", PortBinding{HostIP: addr("192.0.2.1"), HostPort: 443, ContainerPort: 443, Proto: "tcp"})
	b := ctr("b", map[string]string{LabelAllow: "*"}, "172.17.1.2", PortBinding{HostIP: addr("192.0.2.2"), HostPort: 443, ContainerPort: 443, Proto: "tcp"})
	res := Build(config.Default(), Snapshot{Bridges: []string{"docker0"}, Containers: append(cs, a, b)}, IPv4, Options{Sets: true})
	assertLines(t, "DOCKMOAT-PORTS", lines(res.Ruleset, ChainPorts), []string{
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 10000:10004 -m comment --comment "dockmoat:H allowed published ports 10000:10004/tcp" -j RETURN`,
		`-A DOCKMOAT-PORTS -m comment --comment "dockmoat:H published port not allowed for this container" -j DOCKMOAT-DENY`,
	})
	ing := strings.Join(lines(res.Ruleset, ChainIngress), "\n")
	if !strings.Contains(ing, "-d 172.17.1.1/32") || !strings.Contains(ing, "--ctorigdst 192.0.2.1/32") || !strings.Contains(ing, "-d 172.17.1.2/32") {
		t.Errorf("443 on two host addresses should stay rules:\n%s", ing)
	}
	if len(res.Ruleset.Sets[0].Elems) != 5 {
		t.Errorf("OPEN: %v", elems(res.Ruleset.Sets[0]))
	}
}

// A source list of 0.0.0.0/0 is anyone: hash:ip,port,net takes no /0.
func TestBuildSetsZeroPrefix(t *testing.T) {
	snap := Snapshot{Bridges: []string{"docker0"}, Containers: []Container{
		ctr("a", map[string]string{LabelAllow: "80", LabelFrom: "0.0.0.0/0"}, "172.17.0.2", pb(80, 80, "tcp")),
	}}
	res := Build(config.Default(), snap, IPv4, Options{Sets: true})
	assertLines(t, "OPEN", elems(res.Ruleset.Sets[0]), []string{"172.17.0.2,tcp:80"})
	assertLines(t, "FROM", elems(res.Ruleset.Sets[1]), nil)
}

// The memo changes no result, follows changed containers, and forgets
// everything when the configuration changes.
func TestMemoSameResult(t *testing.T) {
	snap := Snapshot{Bridges: []string{"docker0"}, Containers: []Container{
		ctr("web", map[string]string{LabelAllow: "8080"}, "172.17.0.2", pb(8080, 80, "tcp")),
		ctr("db", map[string]string{LabelAllow: "5432", LabelFrom: "198.51.100.0/24"}, "172.17.0.3", pb(5432, 5432, "tcp")),
		ctr("bad", map[string]string{LabelAllow: "nope"}, "172.17.0.4", pb(1, 1, "tcp")),
	}}
	memo := NewMemo()
	cfg := config.Default()
	check := func(step string) {
		t.Helper()
		want := Build(cfg, snap, IPv4, Options{Sets: true})
		got := Build(cfg, snap, IPv4, Options{Sets: true, Memo: memo})
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: memo result differs\n got %+v\nwant %+v", step, got, want)
		}
	}
	check("first")
	check("unchanged")
	snap.Containers[0].Endpoints[0].IPv4 = addr("172.17.0.20") // recreated
	check("new address")
	snap.Containers[1].Labels[LabelFrom] = "203.0.113.0/24" // same map, edited in place
	check("label edited in place")
	snap.Containers[2].Labels = map[string]string{LabelAllow: "1"}
	check("label fixed")
	snap.Containers = snap.Containers[1:]
	check("container gone")
	if len(memo.entries) != 2 {
		t.Errorf("memo keeps %d entries, want 2", len(memo.entries))
	}
	cfg.TrustedSources = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cfg.Allow = []config.AllowRule{{Container: "db", Ports: nil}}
	check("config changed")
}

// A container port published twice, the closed binding sorting first: the
// allowed one must still open (as an exact rule), not vanish with the group.
func TestBuildSetsMixedClosedFirst(t *testing.T) {
	c := ctr("twice", map[string]string{LabelAllow: "8080"}, "172.17.0.5", pb(8000, 80, "tcp"), pb(8080, 80, "tcp"))
	res := Build(config.Default(), Snapshot{Bridges: []string{"docker0"}, Containers: []Container{c}}, IPv4, Options{Sets: true})
	ing := strings.Join(lines(res.Ruleset, ChainIngress), "\n")
	if !strings.Contains(ing, "--ctorigdstport 8080") || strings.Contains(ing, "--ctorigdstport 8000") || len(res.Ruleset.Sets[0].Elems) != 0 {
		t.Errorf("want one exact rule for 8080 and no set element:\n%s\n%v", ing, res.Ruleset.Sets)
	}
}
