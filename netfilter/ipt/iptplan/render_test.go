package iptplan

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// These tests render policy.Build's policy the way the backend installs
// it and compare the chains rule by rule (hashes blanked).

// lines renders a chain as iptables-restore lines with hashes blanked, so
// expectations read like the rules an admin sees.
// opts are policy.Options plus RenderOptions, as the tests set them.
type opts struct {
	Sets, ProxyAll, UFWForward, InputOnly bool
	Memo                                  *policy.Memo
}

// built is a policy with its rendering.
type built struct {
	policy.Result
	Ruleset
}

func build(cfg config.Config, snap rules.Snapshot, fam rules.Family, o opts) built {
	res := policy.Build(cfg, snap, fam, policy.Options{Sets: o.Sets, ProxyAll: o.ProxyAll, Memo: o.Memo})
	return built{res, Render(cfg, res, RenderOptions{UFWForward: o.UFWForward, InputOnly: o.InputOnly})}
}

// The shared inputs (rules/rulestest).
var (
	addr        = rulestest.Addr
	ctr         = rulestest.Ctr
	pb          = rulestest.PB
	proxySnap   = rulestest.ProxySnap
	assertLines = rulestest.AssertLines
)

func elems(s policy.Set) []string {
	var out []string
	for _, e := range s.Sorted() {
		out = append(out, e.String())
	}
	return out
}

const deny = `-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:H default deny" -j DROP`

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

func sourcesText(s config.Sources) string {
	if s.Any {
		return "any"
	}
	var out []string
	for _, p := range s.Prefixes {
		out = append(out, p.String())
	}
	return strings.Join(out, " ")
}

func lines(rs Ruleset, chain string) []string {
	ch, _ := rs.Chain(chain)
	var out []string
	for _, r := range ch.Rules {
		out = append(out, hashes.ReplaceAllString(RuleLine(chain, r), "dockmoat:H "))
	}
	return out
}

func TestBuildMainChain(t *testing.T) {
	res := build(config.Default(), rules.Snapshot{Bridges: []string{"docker0", "br-0123456789ab", "docker0", "bad name!"}}, rules.IPv4, opts{})
	assertLines(t, "DOCKMOAT", lines(res.Ruleset, ChainMain), []string{
		`-A DOCKMOAT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT -i br-0123456789ab -m comment --comment "dockmoat:H leaving docker network br-0123456789ab" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -i docker0 -m comment --comment "dockmoat:H leaving docker network docker0" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -o br-0123456789ab -m comment --comment "dockmoat:H entering docker network br-0123456789ab" -g DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -o docker0 -m comment --comment "dockmoat:H entering docker network docker0" -g DOCKMOAT-INGRESS`,
		// Networks created while dockmoat is down are closed too.
		`-A DOCKMOAT -i br-+ -m comment --comment "dockmoat:H leaving a docker network not seen yet br-*" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -o br-+ -m comment --comment "dockmoat:H entering a docker network not seen yet br-*" -g DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -m comment --comment "dockmoat:H not into a docker network" -g DOCKMOAT-PASS`,
	})
	assertLines(t, "DOCKMOAT-INGRESS", lines(res.Ruleset, ChainIngress), []string{deny})
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].String(), "bad name!") {
		t.Errorf("want one problem for the invalid bridge name, got %v", res.Problems)
	}
	// With no bridge known, both default patterns are caught.
	res = build(config.Default(), rules.Snapshot{}, rules.IPv4, opts{})
	assertLines(t, "DOCKMOAT (no bridges)", lines(res.Ruleset, ChainMain), []string{
		`-A DOCKMOAT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT -i docker0 -m comment --comment "dockmoat:H leaving a docker network not seen yet docker0" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -i br-+ -m comment --comment "dockmoat:H leaving a docker network not seen yet br-*" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -o docker0 -m comment --comment "dockmoat:H entering a docker network not seen yet docker0" -g DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -o br-+ -m comment --comment "dockmoat:H entering a docker network not seen yet br-*" -g DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -m comment --comment "dockmoat:H not into a docker network" -g DOCKMOAT-PASS`,
	})
}

func TestBuildIngress(t *testing.T) {
	v6ctr := rules.Container{ID: "id-six", Name: "six", Labels: map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.0/24, 2001:db8::/48"},
		Ports:     []rules.PortBinding{pb(8080, 80, "tcp"), {HostIP: addr("::"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: addr("172.17.0.9"), IPv6: addr("fd00::9")}}}
	cases := []struct {
		name       string
		cfg        config.Config
		containers []rules.Container
		fam        rules.Family
		opt        opts
		want       []string
		open       map[string]string // "ctr hostport/proto" → access text; only these are open
	}{
		{
			name:       "unlabeled ports stay closed",
			containers: []rules.Container{ctr("db", nil, "172.17.0.2", pb(5432, 5432, "tcp"))},
			want:       []string{deny},
		},
		{
			name:       "allow opens exactly the published port, host and container ports differ",
			containers: []rules.Container{ctr("web", map[string]string{"dockmoat.allow": "8080"}, "172.17.0.3", pb(8080, 80, "tcp"), pb(8081, 81, "tcp"))},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.3/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8080 -m comment --comment "dockmoat:H allow web 8080/tcp" -g DOCKMOAT-PASS`,
				deny,
			},
			open: map[string]string{"web 8080/tcp": "any"},
		},
		{
			name: "entry without protocol matches every protocol it is published on; /udp only udp",
			containers: []rules.Container{
				ctr("both", map[string]string{"dockmoat.allow": "9000"}, "172.17.0.4", pb(9000, 9000, "tcp"), pb(9000, 9000, "udp")),
				ctr("dns", map[string]string{"dockmoat.allow": "53/udp"}, "172.17.0.5", pb(53, 53, "tcp"), pb(53, 53, "udp")),
			},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.4/32 -p tcp -m tcp --dport 9000 -m conntrack --ctstate DNAT --ctorigdstport 9000 -m comment --comment "dockmoat:H allow both 9000/tcp" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.4/32 -p udp -m udp --dport 9000 -m conntrack --ctstate DNAT --ctorigdstport 9000 -m comment --comment "dockmoat:H allow both 9000/udp" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.5/32 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT --ctorigdstport 53 -m comment --comment "dockmoat:H allow dns 53/udp" -g DOCKMOAT-PASS`,
				deny,
			},
			open: map[string]string{"both 9000/tcp": "any", "both 9000/udp": "any", "dns 53/udp": "any"},
		},
		{
			name:       "ranges open the ports inside only; * opens all",
			containers: []rules.Container{ctr("r", map[string]string{"dockmoat.allow": "9100-9101"}, "172.17.0.6", pb(9100, 9100, "tcp"), pb(9101, 9101, "tcp"), pb(9102, 9102, "tcp")), ctr("s", map[string]string{"dockmoat.allow": "*"}, "172.17.0.7", pb(1, 2, "sctp"))},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.6/32 -p tcp -m tcp --dport 9100 -m conntrack --ctstate DNAT --ctorigdstport 9100 -m comment --comment "dockmoat:H allow r 9100/tcp" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.6/32 -p tcp -m tcp --dport 9101 -m conntrack --ctstate DNAT --ctorigdstport 9101 -m comment --comment "dockmoat:H allow r 9101/tcp" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.7/32 -p sctp -m sctp --dport 2 -m conntrack --ctstate DNAT --ctorigdstport 1 -m comment --comment "dockmoat:H allow s 1/sctp" -g DOCKMOAT-PASS`,
				deny,
			},
			open: map[string]string{"r 9100/tcp": "any", "r 9101/tcp": "any", "s 1/sctp": "any"},
		},
		{
			name: "from restricts; per-port label overrides from; v6 sources stay out of the v4 table",
			containers: []rules.Container{ctr("api", map[string]string{
				"dockmoat.allow": "443, 8443", "dockmoat.from": "198.51.100.0/24, 203.0.113.7, 2001:db8::/48",
				"dockmoat.allow.8443/tcp": "192.0.2.1",
			}, "172.17.0.8", pb(443, 443, "tcp"), pb(8443, 8443, "tcp"))},
			want: []string{
				`-A DOCKMOAT-INGRESS -s 198.51.100.0/24 -d 172.17.0.8/32 -p tcp -m tcp --dport 443 -m conntrack --ctstate DNAT --ctorigdstport 443 -m comment --comment "dockmoat:H allow api 443/tcp from 198.51.100.0/24" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -s 203.0.113.7/32 -d 172.17.0.8/32 -p tcp -m tcp --dport 443 -m conntrack --ctstate DNAT --ctorigdstport 443 -m comment --comment "dockmoat:H allow api 443/tcp from 203.0.113.7/32" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -s 192.0.2.1/32 -d 172.17.0.8/32 -p tcp -m tcp --dport 8443 -m conntrack --ctstate DNAT --ctorigdstport 8443 -m comment --comment "dockmoat:H allow api 8443/tcp from 192.0.2.1/32" -g DOCKMOAT-PASS`,
				deny,
			},
			open: map[string]string{"api 443/tcp": "198.51.100.0/24 203.0.113.7/32 2001:db8::/48", "api 8443/tcp": "192.0.2.1/32"},
		},
		{
			name: "config rules by glob and compose service; sources are the union with labels",
			cfg: config.Config{Allow: []config.AllowRule{
				{Container: "graf*", Ports: []config.PortSpec{{From: 3000, To: 3000}}, From: config.Sources{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
				{Service: "shop/api", Ports: []config.PortSpec{{All: true}}, From: config.Sources{Any: true}},
			}},
			containers: []rules.Container{
				ctr("grafana-1", map[string]string{"dockmoat.allow": "3000", "dockmoat.from": "198.51.100.1"}, "172.17.0.10", pb(3000, 3000, "tcp")),
				ctr("shop-api-1", map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "api"}, "172.17.0.11", pb(8000, 80, "tcp")),
				ctr("shop-db-1", map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "db"}, "172.17.0.12", pb(5432, 5432, "tcp")),
			},
			want: []string{
				`-A DOCKMOAT-INGRESS -s 192.0.2.0/24 -d 172.17.0.10/32 -p tcp -m tcp --dport 3000 -m conntrack --ctstate DNAT --ctorigdstport 3000 -m comment --comment "dockmoat:H allow grafana-1 3000/tcp from 192.0.2.0/24" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -s 198.51.100.1/32 -d 172.17.0.10/32 -p tcp -m tcp --dport 3000 -m conntrack --ctstate DNAT --ctorigdstport 3000 -m comment --comment "dockmoat:H allow grafana-1 3000/tcp from 198.51.100.1/32" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.11/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8000 -m comment --comment "dockmoat:H allow shop-api-1 8000/tcp" -g DOCKMOAT-PASS`,
				deny,
			},
			open: map[string]string{"grafana-1 3000/tcp": "192.0.2.0/24 198.51.100.1/32", "shop-api-1 8000/tcp": "any"},
		},
		{
			name: "trusted sources first, then ufw, then log, then deny",
			cfg:  config.Config{TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}, LogBlocked: true},
			opt:  opts{UFWForward: true},
			want: []string{
				`-A DOCKMOAT-INGRESS -s 10.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H trusted source 10.0.0.0/8" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:H ufw route rules" -j ufw-user-forward`,
				`-A DOCKMOAT-INGRESS -m limit --limit 10/min --limit-burst 20 -m comment --comment "dockmoat:H log blocked" -j LOG --log-prefix "[DOCKMOAT BLOCK] "`,
				deny,
			},
		},
		{
			name: "loopback binding opens nothing; a specific host address is matched",
			containers: []rules.Container{ctr("local", map[string]string{"dockmoat.allow": "*"}, "172.17.0.13",
				rules.PortBinding{HostIP: addr("127.0.0.1"), HostPort: 9400, ContainerPort: 80, Proto: "tcp"},
				rules.PortBinding{HostIP: addr("192.0.2.10"), HostPort: 9401, ContainerPort: 80, Proto: "tcp"})},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.13/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdst 192.0.2.10/32 --ctorigdstport 9401 -m comment --comment "dockmoat:H allow local 9401/tcp" -g DOCKMOAT-PASS`,
				deny,
			},
			open: map[string]string{"local 9401/tcp": "any"},
		},
		{
			name: "one rule per address of a container on several networks",
			containers: []rules.Container{{ID: "m", Name: "multi", Labels: map[string]string{"dockmoat.allow": "80"}, Ports: []rules.PortBinding{pb(80, 80, "tcp")},
				Endpoints: []rules.Endpoint{{Network: "b", IPv4: addr("172.18.0.2")}, {Network: "a", IPv4: addr("172.17.0.2")}}}},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 80 -m comment --comment "dockmoat:H allow multi 80/tcp" -g DOCKMOAT-PASS`,
				`-A DOCKMOAT-INGRESS -d 172.18.0.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 80 -m comment --comment "dockmoat:H allow multi 80/tcp" -g DOCKMOAT-PASS`,
				deny,
			},
			open: map[string]string{"multi 80/tcp": "any"},
		},
		{
			name:       "any invalid label keeps the whole container closed",
			containers: []rules.Container{ctr("bad", map[string]string{"dockmoat.allow": "8080", "dockmoat.alow": "8081"}, "172.17.0.14", pb(8080, 80, "tcp"), pb(8081, 81, "tcp"))},
			want:       []string{deny},
		},
		{
			name:       "IPv6 table: the :: binding, the v6 address, v6 sources only",
			containers: []rules.Container{v6ctr},
			fam:        rules.IPv6,
			want: []string{
				`-A DOCKMOAT-INGRESS -s 2001:db8::/48 -d fd00::9/128 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8080 -m comment --comment "dockmoat:H allow six 8080/tcp from 2001:db8::/48" -g DOCKMOAT-PASS`,
				deny,
			},
			open: map[string]string{"six 8080/tcp": "198.51.100.0/24 2001:db8::/48"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.UFW == "" {
				cfg.UFW = config.UFWAuto
			}
			fam := tc.fam
			if fam == 0 {
				fam = rules.IPv4
			}
			res := build(cfg, rules.Snapshot{Containers: tc.containers, Bridges: []string{"docker0"}}, fam, tc.opt)
			assertLines(t, tc.name, lines(res.Ruleset, ChainIngress), tc.want)
			got := map[string]string{}
			for _, d := range res.Decisions() {
				if !d.Open {
					continue
				}
				k := d.Container + " " + itoa(d.Binding.HostPort) + "/" + d.Binding.Proto
				got[k] = sourcesText(d.Sources)
			}
			if len(got) != len(tc.open) {
				t.Errorf("open ports: got %v, want %v", got, tc.open)
			}
			for k, v := range tc.open {
				if got[k] != v {
					t.Errorf("open %s: got %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}

func TestHashes(t *testing.T) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		ctr("a", map[string]string{"dockmoat.allow": "80"}, "172.17.0.2", pb(80, 80, "tcp")),
	}}
	r1 := build(config.Default(), snap, rules.IPv4, opts{})
	r2 := build(config.Default(), snap, rules.IPv4, opts{})
	ing1, _ := r1.Ruleset.Chain(ChainIngress)
	ing2, _ := r2.Ruleset.Chain(ChainIngress)
	if strings.Join(ing1.Hashes(), ",") != strings.Join(ing2.Hashes(), ",") {
		t.Fatal("hashes are not deterministic")
	}
	// A new address must change the hash, or a stale rule would look current.
	snap.Containers[0].Endpoints[0].IPv4 = addr("172.17.0.3")
	r3 := build(config.Default(), snap, rules.IPv4, opts{})
	ing3, _ := r3.Ruleset.Chain(ChainIngress)
	if ing3.Rules[0].Hash == ing1.Rules[0].Hash {
		t.Fatal("hash did not change with the container address")
	}
	for _, r := range ing1.Rules {
		if len(r.Comment()) > 256 {
			t.Errorf("comment longer than iptables allows: %q", r.Comment())
		}
	}
}

func TestBuildSets(t *testing.T) {
	cfg := config.Default()
	dual := ctr("dual", map[string]string{rules.LabelAllow: "*"}, "172.17.0.9", pb(7000, 70, "tcp"))
	dual.Ports = append(dual.Ports, rules.PortBinding{HostIP: addr("::"), HostPort: 7000, ContainerPort: 70, Proto: "tcp"})
	dual.Endpoints = append(dual.Endpoints, rules.Endpoint{Network: "other", IPv4: addr("172.18.0.9"), IPv6: addr("fd00::9")})
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		ctr("web", map[string]string{rules.LabelAllow: "8080,53/udp"}, "172.17.0.2", pb(8080, 80, "tcp"), pb(53, 5353, "udp")),
		ctr("db", map[string]string{rules.LabelAllow: "5432", rules.LabelFrom: "198.51.100.0/24,203.0.113.7,2001:db8::/32"}, "172.17.0.3", pb(5432, 5432, "tcp")),
		ctr("closed", nil, "172.17.0.4", pb(9000, 9000, "tcp")),
		// One container port published twice with different policies: a
		// set cannot tell the two apart, so its allow stays a rule.
		ctr("twice", map[string]string{rules.LabelAllow: "8081"}, "172.17.0.5", pb(8081, 80, "tcp"), pb(9091, 80, "tcp")),
		// Published twice, both open to anyone: a set element is exact.
		ctr("both", map[string]string{rules.LabelAllow: "*"}, "172.17.0.6", pb(8082, 80, "tcp"), pb(9092, 80, "tcp")),
		dual,
	}}
	res := build(cfg, snap, rules.IPv4, opts{Sets: true})
	assertLines(t, "DOCKMOAT-INGRESS", lines(res.Ruleset, ChainIngress), []string{
		`-A DOCKMOAT-INGRESS -m set --match-set DOCKMOAT-OPEN-V4 dst,dst -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H allowed ports: set DOCKMOAT-OPEN-V4" -g DOCKMOAT-PORTS`,
		`-A DOCKMOAT-INGRESS -m set --match-set DOCKMOAT-FROM-V4 dst,dst,src -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H allowed ports by source: set DOCKMOAT-FROM-V4" -g DOCKMOAT-PORTS`,
		`-A DOCKMOAT-INGRESS -d 172.17.0.5/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8081 -m comment --comment "dockmoat:H allow twice 8081/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:H not allowed" -j DOCKMOAT-DENY`,
	})
	// Published ports of the set elements, consecutive ones as a range;
	// 8081 of "twice" is a rule, and 9091 (closed) is in neither.
	assertLines(t, "DOCKMOAT-PORTS", lines(res.Ruleset, ChainPorts), []string{
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 5432 -m comment --comment "dockmoat:H allowed published ports 5432/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 7000 -m comment --comment "dockmoat:H allowed published ports 7000/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 8080 -m comment --comment "dockmoat:H allowed published ports 8080/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 8082 -m comment --comment "dockmoat:H allowed published ports 8082/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 9092 -m comment --comment "dockmoat:H allowed published ports 9092/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-PORTS -p udp -m conntrack --ctorigdstport 53 -m comment --comment "dockmoat:H allowed published ports 53/udp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-PORTS -m comment --comment "dockmoat:H published port not allowed for this container" -j DOCKMOAT-DENY`,
	})
	assertLines(t, "DOCKMOAT-DENY", lines(res.Ruleset, ChainDeny), []string{`-A DOCKMOAT-DENY -m comment --comment "dockmoat:H default deny" -j DROP`})
	if len(res.Ruleset.Sets) != 2 {
		t.Fatalf("sets %+v", res.Ruleset.Sets)
	}
	open, from := res.Ruleset.Sets[0], res.Ruleset.Sets[1]
	if SetName(open.Kind, open.Family) != "DOCKMOAT-OPEN-V4" || SetName(from.Kind, from.Family) != "DOCKMOAT-FROM-V4" || SetType(open.Kind) != "hash:ip,port" || SetType(from.Kind) != "hash:ip,port,net" {
		t.Errorf("set names/types %s %s", SetName(open.Kind, open.Family), SetName(from.Kind, from.Family))
	}
	assertLines(t, "OPEN", elems(open), []string{"172.17.0.2,tcp:80", "172.17.0.2,udp:5353", "172.17.0.6,tcp:80", "172.17.0.9,tcp:70", "172.18.0.9,tcp:70"})
	assertLines(t, "FROM", elems(from), []string{"172.17.0.3,tcp:5432,198.51.100.0/24", "172.17.0.3,tcp:5432,203.0.113.7/32"})

	// IPv6: only the v6 address and v6 sources; the v4-only source list of
	// another container opens nothing there.
	res6 := build(cfg, snap, rules.IPv6, opts{Sets: true})
	assertLines(t, "OPEN6", elems(res6.Ruleset.Sets[0]), []string{"fd00::9,tcp:70"})
	if SetName(res6.Ruleset.Sets[0].Kind, res6.Ruleset.Sets[0].Family) != "DOCKMOAT-OPEN-V6" || res6.Ruleset.Sets[1].Len() != 0 {
		t.Errorf("v6 sets %+v", res6.Ruleset.Sets)
	}

	// Without sets: the same allows as rules, and no sets.
	lin := build(cfg, snap, rules.IPv4, opts{})
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
	var cs []rules.Container
	for i := range 5 {
		cs = append(cs, ctr(fmt.Sprintf("c%d", i), map[string]string{rules.LabelAllow: "*"}, fmt.Sprintf("172.17.0.%d", 10+i), pb(uint16(10000+i), 80, "tcp")))
	}
	a := ctr("a", map[string]string{rules.LabelAllow: "*"}, "172.17.1.1", rules.PortBinding{HostIP: addr("192.0.2.1"), HostPort: 443, ContainerPort: 443, Proto: "tcp"})
	b := ctr("b", map[string]string{rules.LabelAllow: "*"}, "172.17.1.2", rules.PortBinding{HostIP: addr("192.0.2.2"), HostPort: 443, ContainerPort: 443, Proto: "tcp"})
	res := build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: append(cs, a, b)}, rules.IPv4, opts{Sets: true})
	assertLines(t, "DOCKMOAT-PORTS", lines(res.Ruleset, ChainPorts), []string{
		`-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 10000:10004 -m comment --comment "dockmoat:H allowed published ports 10000:10004/tcp" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-PORTS -m comment --comment "dockmoat:H published port not allowed for this container" -j DOCKMOAT-DENY`,
	})
	ing := strings.Join(lines(res.Ruleset, ChainIngress), "\n")
	if !strings.Contains(ing, "-d 172.17.1.1/32") || !strings.Contains(ing, "--ctorigdst 192.0.2.1/32") || !strings.Contains(ing, "-d 172.17.1.2/32") {
		t.Errorf("443 on two host addresses should stay rules:\n%s", ing)
	}
	if res.Ruleset.Sets[0].Len() != 5 {
		t.Errorf("OPEN: %v", elems(res.Ruleset.Sets[0]))
	}
}

// A container port published twice, the closed binding sorting first: the
// allowed one must still open (as an exact rule), not vanish with the group.
func TestBuildSetsMixedClosedFirst(t *testing.T) {
	c := ctr("twice", map[string]string{rules.LabelAllow: "8080"}, "172.17.0.5", pb(8000, 80, "tcp"), pb(8080, 80, "tcp"))
	res := build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{c}}, rules.IPv4, opts{Sets: true})
	ing := strings.Join(lines(res.Ruleset, ChainIngress), "\n")
	if !strings.Contains(ing, "--ctorigdstport 8080") || strings.Contains(ing, "--ctorigdstport 8000") || res.Ruleset.Sets[0].Len() != 0 {
		t.Errorf("want one exact rule for 8080 and no set element:\n%s\n%v", ing, res.Ruleset.Sets)
	}
}

func TestProxyPathIPv6(t *testing.T) {
	cfg := config.Config{TrustedSources: []netip.Prefix{netip.MustParsePrefix("2001:db8:9::/48"), netip.MustParsePrefix("10.0.0.0/8")}}
	res := build(cfg, proxySnap(), rules.IPv6, opts{})
	assertLines(t, ChainInput, lines(res.Ruleset, ChainInput), []string{
		`-A DOCKMOAT-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT-INPUT -i lo -m comment --comment "dockmoat:H from the host itself" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-INPUT -i docker0 -m comment --comment "dockmoat:H from docker network docker0" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-INPUT -s 2001:db8:9::/48 -m comment --comment "dockmoat:H trusted source 2001:db8:9::/48" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-INPUT -s 2001:db8:1::10/128 -p tcp -m tcp --dport 8083 -m comment --comment "dockmoat:H allow v6from 8083/tcp via docker-proxy from 2001:db8:1::10/128" -g DOCKMOAT-PASS`,
		// The runs of a protocol in one rule each way (multiport). dual
		// has an IPv6 address (Docker DNATs it): closed here too, for
		// when that DNAT is gone.
		`-A DOCKMOAT-INPUT -p tcp -m multiport --dports 8080,9000 -m comment --comment "dockmoat:H allow 8080,9000/tcp via docker-proxy" -g DOCKMOAT-PASS`,
		// v4only is open to an IPv4 source only: closed to every IPv6
		// client; 8082 and 8083 are one run.
		`-A DOCKMOAT-INPUT -p tcp -m multiport --dports 5432,8080,8082:8083,9000 -m comment --comment "dockmoat:H 5432,8080,8082:8083,9000/tcp via docker-proxy: not allowed" -j DROP`,
		// A protocol's only run is the rule it always was.
		`-A DOCKMOAT-INPUT -p udp -m udp --dport 5353 -m comment --comment "dockmoat:H 5353/udp to db via docker-proxy: not allowed" -j DROP`,
	})
	if len(res.Proxied) != 5 {
		t.Errorf("want 5 proxied bindings (dual has rules.IPv6, local is loopback), got %v", res.Proxied)
	}
	// The DNAT path is unchanged: the chains of the FORWARD side are there.
	if _, ok := res.Ruleset.Chain(ChainIngress); !ok {
		t.Error("INGRESS missing")
	}
	// IPv4: every container has an IPv4 address, Docker DNATs them all,
	// none is served by docker-proxy now; the input chain still closes
	// every binding but the loopback one, for when Docker's DNAT is gone.
	v4 := build(cfg, proxySnap(), rules.IPv4, opts{Sets: true})
	if len(v4.Proxied) != 0 {
		t.Errorf("IPv4: no proxied binding expected, got %v", v4.Proxied)
	}
	check := lines(v4.Ruleset, ChainInputCheck)
	assertLines(t, ChainInputCheck, check, []string{
		`-A DOCKMOAT-INPUT-CHECK -p tcp -m multiport --dports 5432,8080,8082:8083,9000 -m mark ! --mark 0x20000000/0x20000000 -m comment --comment "dockmoat:H 5432,8080,8082:8083,9000/tcp via docker-proxy: not let through by dockmoat" -j DROP`,
		`-A DOCKMOAT-INPUT-CHECK -p udp -m udp --dport 5353 -m mark ! --mark 0x20000000/0x20000000 -m comment --comment "dockmoat:H 5353/udp to db via docker-proxy: not let through by dockmoat" -j DROP`,
		`-A DOCKMOAT-INPUT-CHECK -m comment --comment "dockmoat:H clear the mark" -j MARK --set-xmark 0x0/0x20000000`,
	})
}

// Ten ports published together are one run, whatever the number of
// containers; a gap starts a new run, in the same rule; a port open to
// everyone is let through before the drop. Past 15 ports (a range counts
// two), multiport takes a second rule.
func TestProxyPathRuns(t *testing.T) {
	var cs []rules.Container
	for i := range 10 {
		lbl := map[string]string{}
		if i == 3 {
			lbl[rules.LabelAllow] = "*"
		}
		cs = append(cs, ctr(fmt.Sprintf("c%d", i), lbl, fmt.Sprintf("172.17.0.%d", 10+i), pb(uint16(7000+i), 80, "tcp")))
	}
	cs = append(cs, ctr("gap", nil, "172.17.0.30", pb(7011, 80, "tcp")))
	res := build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: cs}, rules.IPv4, opts{Sets: true})
	got := lines(res.Ruleset, ChainInput)
	assertLines(t, ChainInput, got[len(got)-2:], []string{
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 7003 -m comment --comment "dockmoat:H allow 7003/tcp to c3 via docker-proxy" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-INPUT -p tcp -m multiport --dports 7000:7009,7011 -m comment --comment "dockmoat:H 7000:7009,7011/tcp via docker-proxy: not allowed" -j DROP`,
	})
	for i := range 15 { // 15 more runs: 7013, 7015, …, 7041
		cs = append(cs, ctr(fmt.Sprintf("far%d", i), nil, fmt.Sprintf("172.17.1.%d", i), pb(uint16(7013+2*i), 80, "tcp")))
	}
	res = build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: cs}, rules.IPv4, opts{Sets: true})
	got = lines(res.Ruleset, ChainInput)
	assertLines(t, ChainInput, got[len(got)-2:], []string{
		`-A DOCKMOAT-INPUT -p tcp -m multiport --dports 7000:7009,7011,7013,7015,7017,7019,7021,7023,7025,7027,7029,7031,7033,7035 -m comment --comment "dockmoat:H 7000:7009,7011,7013,7015,7017,7019,7021,7023 and 6 more/tcp via docker-proxy: not allowed" -j DROP`,
		`-A DOCKMOAT-INPUT -p tcp -m multiport --dports 7037,7039,7041 -m comment --comment "dockmoat:H 7037,7039,7041/tcp via docker-proxy: not allowed" -j DROP`,
	})
}

func TestProxyAllAndInputOnly(t *testing.T) {
	// Docker 20.10 without --ip6tables: no rules.IPv6 DNAT at all, so even the
	// container with an rules.IPv6 address is served by docker-proxy.
	res := build(config.Default(), proxySnap(), rules.IPv6, opts{ProxyAll: true, InputOnly: true})
	var names []string
	for _, ch := range res.Ruleset.Chains {
		names = append(names, ch.Name)
	}
	if !slices.Equal(names, []string{ChainInput, ChainInputCheck, ChainPass}) || len(res.Ruleset.Sets) != 0 {
		t.Fatalf("InputOnly: want DOCKMOAT-INPUT with its check and the pass chain alone, got %v", names)
	}
	got := lines(res.Ruleset, ChainInput)
	for _, want := range []string{
		`-A DOCKMOAT-INPUT -p tcp -m multiport --dports 8080,9000 -m comment --comment "dockmoat:H allow 8080,9000/tcp via docker-proxy" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT-INPUT -p tcp -m multiport --dports 5432,8080,8082:8083,9000 -m comment --comment "dockmoat:H 5432,8080,8082:8083,9000/tcp via docker-proxy: not allowed" -j DROP`,
	} {
		if !contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	// Nothing proxied: no chain at all (and so no hook).
	empty := build(config.Default(), rules.Snapshot{}, rules.IPv6, opts{InputOnly: true})
	if len(empty.Ruleset.Chains) != 0 {
		t.Errorf("nothing proxied: want no chain, got %v", empty.Ruleset.Chains)
	}
	// A bound host address is matched exactly.
	c := ctr("bound", nil, "172.17.0.7", rules.PortBinding{HostIP: addr("2001:db8:1::1"), HostPort: 443, ContainerPort: 443, Proto: "tcp"})
	b := build(config.Default(), rules.Snapshot{Containers: []rules.Container{c}}, rules.IPv6, opts{})
	if !contains(lines(b.Ruleset, ChainInput), `-A DOCKMOAT-INPUT -d 2001:db8:1::1/128 -p tcp -m tcp --dport 443 -m comment --comment "dockmoat:H 443/tcp on 2001:db8:1::1 to bound via docker-proxy: not allowed" -j DROP`) {
		t.Errorf("bound address: %s", lines(b.Ruleset, ChainInput))
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// TestDisabledBypass: `dockmoat disable` puts one RETURN first in each
// hooked chain and leaves the rest as it was, so enabling only removes it.
func TestDisabledBypass(t *testing.T) {
	snap := proxySnap()
	on := build(config.Default(), snap, rules.IPv6, opts{})
	off := config.Default()
	off.Disabled = true
	got := build(off, snap, rules.IPv6, opts{})
	// DOCKMOAT lets everything through the pass mark (the check then
	// lets it be); DOCKMOAT-INPUT returns.
	bypass := `-m comment --comment "dockmoat:H ` + rules.DisabledDesc + `" `
	for chain, verdict := range map[string]string{ChainMain: "-g " + ChainPass, ChainInput: "-g " + ChainPass} {
		before, after := lines(on.Ruleset, chain), lines(got.Ruleset, chain)
		if len(before) == 0 {
			t.Fatalf("%s: the snapshot should need this chain", chain)
		}
		assertLines(t, chain+" disabled", after, append([]string{"-A " + chain + " " + bypass + verdict}, before...))
	}
	assertLines(t, "INGRESS unchanged", lines(got.Ruleset, ChainIngress), lines(on.Ruleset, ChainIngress))
	if g := GuardRuleset(off, rules.IPv4, nil); strings.Contains(fmt.Sprint(g), "disabled") {
		t.Error("the boot guard never bypasses")
	}
}

// The host's own br-lan is exempted from the catch-all by name: into it is
// the host's business, from it into Docker's networks is outside traffic;
// Docker's own br-<id> names (known or not) and other links are not. A
// DNATed connection into any interface but the host's own (not a bridge
// port) meets the ingress policy: a network with a bridge name of its own,
// created while dockmoat was stopped, is closed.
func TestForeignBridge(t *testing.T) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Links: []string{"lo", "eth0", "docker0", "br-lan", "br-0123456789ab"}}
	res := build(config.Default(), snap, rules.IPv4, opts{})
	assertLines(t, "DOCKMOAT", lines(res.Ruleset, ChainMain), []string{
		`-A DOCKMOAT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT -i docker0 -m comment --comment "dockmoat:H leaving docker network docker0" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -o docker0 -m comment --comment "dockmoat:H entering docker network docker0" -g DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -o br-lan -m comment --comment "dockmoat:H into host bridge br-lan: not a docker network" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -i br-lan -o br-+ -m comment --comment "dockmoat:H from host bridge br-lan into docker networks br-*" -g DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -o eth0 -m comment --comment "dockmoat:H into host interface eth0" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -o lo -m comment --comment "dockmoat:H into host interface lo" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H published port into a new interface" -g DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -i br-+ -m comment --comment "dockmoat:H leaving a docker network not seen yet br-*" -g DOCKMOAT-PASS`,
		`-A DOCKMOAT -o br-+ -m comment --comment "dockmoat:H entering a docker network not seen yet br-*" -g DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -m comment --comment "dockmoat:H not into a docker network" -g DOCKMOAT-PASS`,
	})
	g := strings.Join(lines(GuardRuleset(config.Default(), rules.IPv4, res.Foreign), ChainMain), "\n")
	for _, want := range []string{
		`-A DOCKMOAT -o br-lan -m comment --comment "dockmoat:H into host bridge br-lan: not a docker network" -j RETURN
-A DOCKMOAT -i br-lan -o docker0 -m comment --comment "dockmoat:H from host bridge br-lan into docker networks docker0" -j DOCKMOAT-INGRESS
-A DOCKMOAT -i br-lan -o br-+ -m comment --comment "dockmoat:H from host bridge br-lan into docker networks br-*" -j DOCKMOAT-INGRESS
-A DOCKMOAT -i br-lan -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H guard: published ports, from host bridge br-lan" -j DOCKMOAT-INGRESS
-A DOCKMOAT -i docker0 -m comment --comment "dockmoat:H guard: leaving docker network docker0" -j RETURN`,
	} {
		if !strings.Contains(g, want) {
			t.Errorf("guard: want, before the catch-all,\n%s\ngot\n%s", want, g)
		}
	}
	if g := GuardRuleset(config.Default(), rules.IPv4, nil); strings.Contains(fmt.Sprint(g), "own bridge") {
		t.Error("no foreign bridge, no exemption")
	}
}

// The guard closes the last pass's published ports on the docker-proxy
// path: the host itself, docker0 and trusted sources pass, every other
// port of the host is never matched; with a host bridge of its own, br-*
// is not taken for Docker's.
func TestGuardInput(t *testing.T) {
	cfg := config.Config{TrustedSources: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")}}
	runs := []policy.PortRun{
		{PortRange: policy.PortRange{Proto: "tcp", Lo: 8080, Hi: 8082}},
		{HostIP: addr("192.0.2.1"), PortRange: policy.PortRange{Proto: "udp", Lo: 53, Hi: 53}},
	}
	ch, ok := GuardInput(cfg, rules.IPv4, []string{"br-lan"}, runs)
	if !ok {
		t.Fatal("no chain")
	}
	got := lines(Ruleset{Chains: []OwnedChain{ch}}, ChainInput)
	assertLines(t, ChainInput, got, []string{
		`-A DOCKMOAT-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT-INPUT -i lo -m comment --comment "dockmoat:H from the host itself" -j RETURN`,
		`-A DOCKMOAT-INPUT -i docker0 -m comment --comment "dockmoat:H guard: from docker network docker0" -j RETURN`,
		`-A DOCKMOAT-INPUT -s 198.51.100.0/24 -m comment --comment "dockmoat:H trusted source 198.51.100.0/24" -j RETURN`,
		`-A DOCKMOAT-INPUT -p tcp -m tcp --dport 8080:8082 -m comment --comment "dockmoat:H guard: 8080:8082/tcp via docker-proxy, until dockmoat run" -j DROP`,
		`-A DOCKMOAT-INPUT -d 192.0.2.1/32 -p udp -m udp --dport 53 -m comment --comment "dockmoat:H guard: 53/udp on 192.0.2.1 via docker-proxy, until dockmoat run" -j DROP`,
	})
	if ch, _ := GuardInput(cfg, rules.IPv4, nil, runs); !strings.Contains(fmt.Sprint(ch.Rules), "br-+") {
		t.Errorf("no host bridge of its own: br-* is Docker's: %v", ch.Rules)
	}
	if _, ok := GuardInput(cfg, rules.IPv6, nil, nil); ok {
		t.Error("no published port: no chain (and no jump in INPUT)")
	}
}

// Observe mode: a refused DNATed connection and a refused docker-proxy
// binding are marked in conntrack and let through (to the pass chain, so
// the check lets them be); enforcing renders no such rule.
func TestRenderObserve(t *testing.T) {
	cfg := config.Default()
	cfg.Observe = true
	res := policy.Build(cfg, rulestest.ProxySnap(), rules.IPv4, policy.Options{})
	rs := Render(cfg, res, RenderOptions{})
	var lines []string
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			lines = append(lines, RuleLine(ch.Name, r))
		}
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{"-A DOCKMOAT-INGRESS -m conntrack --ctstate DNAT -m comment", "-j CONNMARK --set-xmark 0x20000000/0x20000000", "-A DOCKMOAT-INPUT -p tcp"} {
		if !strings.Contains(all, want) {
			t.Errorf("observe rules lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "via docker-proxy: not allowed") {
		t.Errorf("observe drops a docker-proxy binding:\n%s", all)
	}
	cfg.Observe = false
	if rs := Render(cfg, res, RenderOptions{}); strings.Contains(fmt.Sprint(rs), "CONNMARK") {
		t.Error("enforcing renders observe rules")
	}
}

// deny_sources come before every allow, trusted sources included: a DNAT
// drop at the top of INGRESS, and on the docker-proxy path an unmarked
// return that DOCKMOAT-INPUT-CHECK drops on a published port.
func TestRenderDenySources(t *testing.T) {
	cfg := config.Default()
	cfg.TrustedSources = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	cfg.DenySources = []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	rs := Render(cfg, policy.Build(cfg, rulestest.ProxySnap(), rules.IPv4, policy.Options{}), RenderOptions{})
	ing, _ := rs.Chain(ChainIngress)
	in, _ := rs.Chain(ChainInput)
	first := RuleLine(ing.Name, ing.Rules[0])
	if !strings.Contains(first, "-s 198.51.100.7/32 -m conntrack --ctstate DNAT") || !strings.HasSuffix(first, "-j DROP") {
		t.Errorf("INGRESS does not start with the deny: %s", first)
	}
	var lines []string
	for _, r := range in.Rules {
		lines = append(lines, RuleLine(in.Name, r))
	}
	all := strings.Join(lines, "\n")
	deny, trusted := strings.Index(all, "-s 198.51.100.7/32"), strings.Index(all, "trusted source")
	if deny < 0 || trusted < 0 || deny > trusted || strings.Contains(all, "2001:db8::/32") {
		t.Errorf("DOCKMOAT-INPUT: the IPv4 deny must come before the trusted source, the IPv6 one not at all:\n%s", all)
	}
}

// iface:NAME matches the interface a connection arrived on, on both paths:
// an allow stays a rule (a set element carries no interface), a glob's *
// is iptables' +, and deny and trusted interfaces sit with their sources.
func TestRenderIfaceSources(t *testing.T) {
	cfg := config.Default()
	cfg.TrustedIfaces, cfg.DenyIfaces = []string{"tailscale0"}, []string{"eth9"}
	web := rulestest.Dual("vpn", 8080, map[string]string{rules.LabelAllow: "8080", rules.LabelFrom: "iface:wg*, 198.51.100.0/24"})
	snap := rulestest.ProxySnap()
	snap.Containers = append(snap.Containers, web)
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		res := policy.Build(cfg, snap, fam, policy.Options{Sets: true})
		rs := Render(cfg, res, RenderOptions{})
		var all []string
		for _, ch := range rs.Chains {
			for _, r := range ch.Rules {
				all = append(all, RuleLine(ch.Name, r))
			}
		}
		text := strings.Join(all, "\n")
		for _, want := range []string{"-i eth9 -m conntrack --ctstate DNAT", "deny interface eth9", "-i tailscale0 -m conntrack --ctstate DNAT", "trusted interface tailscale0"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: no %q:\n%s", fam, want, text)
			}
		}
		if strings.Contains(text, "iface:") && !strings.Contains(text, "from iface:wg*") || strings.Contains(text, "-s iface") {
			t.Errorf("%s: an interface rendered as an address:\n%s", fam, text)
		}
		if fam == rules.IPv4 && !strings.Contains(text, "-A DOCKMOAT-INGRESS -i wg+ -d ") {
			t.Errorf("IPv4: the DNAT path has no allow from wg+:\n%s", text)
		}
		if fam == rules.IPv6 && !strings.Contains(text, "-A DOCKMOAT-INPUT -i wg+ -p tcp -m tcp --dport 8080") {
			t.Errorf("IPv6: the docker-proxy path has no allow from wg+:\n%s", text)
		}
		var linear []string
		for _, a := range res.Linear {
			if a.Container == "vpn" {
				linear = append(linear, a.Source)
			}
		}
		if fam == rules.IPv4 && strings.Join(linear, " ") != "198.51.100.0/24 iface:wg*" {
			t.Errorf("vpn's allows are not all rules: %q", linear)
		}
	}
}

// The boot guard's ingress refuses the deny sources and interfaces and
// lets the trusted ones through to Docker (RETURN: no pass mark at boot),
// before its default deny.
func TestGuardIngressSources(t *testing.T) {
	cfg := config.Default()
	cfg.TrustedSources, cfg.TrustedIfaces = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []string{"wg*"}
	cfg.DenySources, cfg.DenyIfaces = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, []string{"eth9"}
	assertLines(t, "guard INGRESS", lines(GuardRuleset(cfg, rules.IPv4, nil), ChainIngress), []string{
		`-A DOCKMOAT-INGRESS -s 10.9.0.0/16 -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H deny source 10.9.0.0/16" -j DROP`,
		`-A DOCKMOAT-INGRESS -i eth9 -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H deny interface eth9" -j DROP`,
		`-A DOCKMOAT-INGRESS -s 10.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H trusted source 10.0.0.0/8" -j RETURN`,
		`-A DOCKMOAT-INGRESS -i wg+ -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H trusted interface wg*" -j RETURN`,
		`-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:H guard: default deny until dockmoat run" -j DROP`,
	})
}
