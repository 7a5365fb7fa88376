package rules

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
)

var hashes = regexp.MustCompile(`dockmoat:[0-9a-f]{16} `)

// lines renders a chain as iptables-restore lines with hashes blanked, so
// expectations read like the rules an admin sees.
func lines(rs Ruleset, chain string) []string {
	ch, _ := rs.Chain(chain)
	var out []string
	for _, r := range ch.Rules {
		out = append(out, hashes.ReplaceAllString(RuleLine(chain, r), "dockmoat:H "))
	}
	return out
}

// assertLines compares rule lists and reports the caller's line.
func assertLines(t *testing.T, name string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return
	}
	t.Errorf("%s: rules differ\n--- got\n%s\n--- want\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func ctr(name string, labels map[string]string, ip string, ports ...PortBinding) Container {
	return Container{ID: "id-" + name, Name: name, Labels: labels, Ports: ports,
		Endpoints: []Endpoint{{Network: "bridge", IPv4: addr(ip)}}}
}

// pb builds a binding on 0.0.0.0 like Docker reports it.
func pb(host, ctrPort uint16, proto string) PortBinding {
	return PortBinding{HostIP: addr("0.0.0.0"), HostPort: host, ContainerPort: ctrPort, Proto: proto}
}

const deny = `-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:H default deny" -j DROP`

func TestBuildMainChain(t *testing.T) {
	res := Build(config.Default(), Snapshot{Bridges: []string{"docker0", "br-0123456789ab", "docker0", "bad name!"}}, IPv4, Options{})
	assertLines(t, "DOCKMOAT", lines(res.Ruleset, ChainMain), []string{
		`-A DOCKMOAT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT -i br-0123456789ab -m comment --comment "dockmoat:H leaving docker network br-0123456789ab" -j RETURN`,
		`-A DOCKMOAT -i docker0 -m comment --comment "dockmoat:H leaving docker network docker0" -j RETURN`,
		`-A DOCKMOAT -o br-0123456789ab -m comment --comment "dockmoat:H entering docker network br-0123456789ab" -j DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -o docker0 -m comment --comment "dockmoat:H entering docker network docker0" -j DOCKMOAT-INGRESS`,
		// Networks created while dockmoat is down are closed too.
		`-A DOCKMOAT -i br-+ -m comment --comment "dockmoat:H leaving a docker network not seen yet br-*" -j RETURN`,
		`-A DOCKMOAT -o br-+ -m comment --comment "dockmoat:H entering a docker network not seen yet br-*" -j DOCKMOAT-INGRESS`,
	})
	assertLines(t, "DOCKMOAT-INGRESS", lines(res.Ruleset, ChainIngress), []string{deny})
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].String(), "bad name!") {
		t.Errorf("want one problem for the invalid bridge name, got %v", res.Problems)
	}
	// With no bridge known, both default patterns are caught.
	res = Build(config.Default(), Snapshot{}, IPv4, Options{})
	assertLines(t, "DOCKMOAT (no bridges)", lines(res.Ruleset, ChainMain), []string{
		`-A DOCKMOAT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "dockmoat:H replies and related traffic" -j RETURN`,
		`-A DOCKMOAT -i docker0 -m comment --comment "dockmoat:H leaving a docker network not seen yet docker0" -j RETURN`,
		`-A DOCKMOAT -i br-+ -m comment --comment "dockmoat:H leaving a docker network not seen yet br-*" -j RETURN`,
		`-A DOCKMOAT -o docker0 -m comment --comment "dockmoat:H entering a docker network not seen yet docker0" -j DOCKMOAT-INGRESS`,
		`-A DOCKMOAT -o br-+ -m comment --comment "dockmoat:H entering a docker network not seen yet br-*" -j DOCKMOAT-INGRESS`,
	})
}

func TestBuildIngress(t *testing.T) {
	v6ctr := Container{ID: "id-six", Name: "six", Labels: map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.0/24, 2001:db8::/48"},
		Ports:     []PortBinding{pb(8080, 80, "tcp"), {HostIP: addr("::"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		Endpoints: []Endpoint{{Network: "bridge", IPv4: addr("172.17.0.9"), IPv6: addr("fd00::9")}}}
	cases := []struct {
		name       string
		cfg        config.Config
		containers []Container
		fam        Family
		opt        Options
		want       []string
		open       map[string]string // "ctr hostport/proto" → access text; only these are open
	}{
		{
			name:       "unlabeled ports stay closed",
			containers: []Container{ctr("db", nil, "172.17.0.2", pb(5432, 5432, "tcp"))},
			want:       []string{deny},
		},
		{
			name:       "allow opens exactly the published port, host and container ports differ",
			containers: []Container{ctr("web", map[string]string{"dockmoat.allow": "8080"}, "172.17.0.3", pb(8080, 80, "tcp"), pb(8081, 81, "tcp"))},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.3/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8080 -m comment --comment "dockmoat:H allow web 8080/tcp" -j RETURN`,
				deny,
			},
			open: map[string]string{"web 8080/tcp": "any"},
		},
		{
			name: "entry without protocol matches every protocol it is published on; /udp only udp",
			containers: []Container{
				ctr("both", map[string]string{"dockmoat.allow": "9000"}, "172.17.0.4", pb(9000, 9000, "tcp"), pb(9000, 9000, "udp")),
				ctr("dns", map[string]string{"dockmoat.allow": "53/udp"}, "172.17.0.5", pb(53, 53, "tcp"), pb(53, 53, "udp")),
			},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.4/32 -p tcp -m tcp --dport 9000 -m conntrack --ctstate DNAT --ctorigdstport 9000 -m comment --comment "dockmoat:H allow both 9000/tcp" -j RETURN`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.4/32 -p udp -m udp --dport 9000 -m conntrack --ctstate DNAT --ctorigdstport 9000 -m comment --comment "dockmoat:H allow both 9000/udp" -j RETURN`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.5/32 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT --ctorigdstport 53 -m comment --comment "dockmoat:H allow dns 53/udp" -j RETURN`,
				deny,
			},
			open: map[string]string{"both 9000/tcp": "any", "both 9000/udp": "any", "dns 53/udp": "any"},
		},
		{
			name:       "ranges open the ports inside only; * opens all",
			containers: []Container{ctr("r", map[string]string{"dockmoat.allow": "9100-9101"}, "172.17.0.6", pb(9100, 9100, "tcp"), pb(9101, 9101, "tcp"), pb(9102, 9102, "tcp")), ctr("s", map[string]string{"dockmoat.allow": "*"}, "172.17.0.7", pb(1, 2, "sctp"))},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.6/32 -p tcp -m tcp --dport 9100 -m conntrack --ctstate DNAT --ctorigdstport 9100 -m comment --comment "dockmoat:H allow r 9100/tcp" -j RETURN`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.6/32 -p tcp -m tcp --dport 9101 -m conntrack --ctstate DNAT --ctorigdstport 9101 -m comment --comment "dockmoat:H allow r 9101/tcp" -j RETURN`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.7/32 -p sctp -m sctp --dport 2 -m conntrack --ctstate DNAT --ctorigdstport 1 -m comment --comment "dockmoat:H allow s 1/sctp" -j RETURN`,
				deny,
			},
			open: map[string]string{"r 9100/tcp": "any", "r 9101/tcp": "any", "s 1/sctp": "any"},
		},
		{
			name: "from restricts; per-port label overrides from; v6 sources stay out of the v4 table",
			containers: []Container{ctr("api", map[string]string{
				"dockmoat.allow": "443, 8443", "dockmoat.from": "198.51.100.0/24, 203.0.113.7, 2001:db8::/48",
				"dockmoat.allow.8443/tcp": "192.0.2.1",
			}, "172.17.0.8", pb(443, 443, "tcp"), pb(8443, 8443, "tcp"))},
			want: []string{
				`-A DOCKMOAT-INGRESS -s 198.51.100.0/24 -d 172.17.0.8/32 -p tcp -m tcp --dport 443 -m conntrack --ctstate DNAT --ctorigdstport 443 -m comment --comment "dockmoat:H allow api 443/tcp from 198.51.100.0/24" -j RETURN`,
				`-A DOCKMOAT-INGRESS -s 203.0.113.7/32 -d 172.17.0.8/32 -p tcp -m tcp --dport 443 -m conntrack --ctstate DNAT --ctorigdstport 443 -m comment --comment "dockmoat:H allow api 443/tcp from 203.0.113.7/32" -j RETURN`,
				`-A DOCKMOAT-INGRESS -s 192.0.2.1/32 -d 172.17.0.8/32 -p tcp -m tcp --dport 8443 -m conntrack --ctstate DNAT --ctorigdstport 8443 -m comment --comment "dockmoat:H allow api 8443/tcp from 192.0.2.1/32" -j RETURN`,
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
			containers: []Container{
				ctr("grafana-1", map[string]string{"dockmoat.allow": "3000", "dockmoat.from": "198.51.100.1"}, "172.17.0.10", pb(3000, 3000, "tcp")),
				ctr("shop-api-1", map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "api"}, "172.17.0.11", pb(8000, 80, "tcp")),
				ctr("shop-db-1", map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "db"}, "172.17.0.12", pb(5432, 5432, "tcp")),
			},
			want: []string{
				`-A DOCKMOAT-INGRESS -s 192.0.2.0/24 -d 172.17.0.10/32 -p tcp -m tcp --dport 3000 -m conntrack --ctstate DNAT --ctorigdstport 3000 -m comment --comment "dockmoat:H allow grafana-1 3000/tcp from 192.0.2.0/24" -j RETURN`,
				`-A DOCKMOAT-INGRESS -s 198.51.100.1/32 -d 172.17.0.10/32 -p tcp -m tcp --dport 3000 -m conntrack --ctstate DNAT --ctorigdstport 3000 -m comment --comment "dockmoat:H allow grafana-1 3000/tcp from 198.51.100.1/32" -j RETURN`,
				`-A DOCKMOAT-INGRESS -d 172.17.0.11/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8000 -m comment --comment "dockmoat:H allow shop-api-1 8000/tcp" -j RETURN`,
				deny,
			},
			open: map[string]string{"grafana-1 3000/tcp": "192.0.2.0/24 198.51.100.1/32", "shop-api-1 8000/tcp": "any"},
		},
		{
			name: "trusted sources first, then ufw, then log, then deny",
			cfg:  config.Config{TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}, LogBlocked: true},
			opt:  Options{UFWForward: true},
			want: []string{
				`-A DOCKMOAT-INGRESS -s 10.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment "dockmoat:H trusted source 10.0.0.0/8" -j RETURN`,
				`-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:H ufw route rules" -j ufw-user-forward`,
				`-A DOCKMOAT-INGRESS -m limit --limit 10/min --limit-burst 20 -m comment --comment "dockmoat:H log blocked" -j LOG --log-prefix "[DOCKMOAT BLOCK] "`,
				deny,
			},
		},
		{
			name: "loopback binding opens nothing; a specific host address is matched",
			containers: []Container{ctr("local", map[string]string{"dockmoat.allow": "*"}, "172.17.0.13",
				PortBinding{HostIP: addr("127.0.0.1"), HostPort: 9400, ContainerPort: 80, Proto: "tcp"},
				PortBinding{HostIP: addr("192.0.2.10"), HostPort: 9401, ContainerPort: 80, Proto: "tcp"})},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.13/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdst 192.0.2.10/32 --ctorigdstport 9401 -m comment --comment "dockmoat:H allow local 9401/tcp" -j RETURN`,
				deny,
			},
			open: map[string]string{"local 9401/tcp": "any"},
		},
		{
			name: "one rule per address of a container on several networks",
			containers: []Container{{ID: "m", Name: "multi", Labels: map[string]string{"dockmoat.allow": "80"}, Ports: []PortBinding{pb(80, 80, "tcp")},
				Endpoints: []Endpoint{{Network: "b", IPv4: addr("172.18.0.2")}, {Network: "a", IPv4: addr("172.17.0.2")}}}},
			want: []string{
				`-A DOCKMOAT-INGRESS -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 80 -m comment --comment "dockmoat:H allow multi 80/tcp" -j RETURN`,
				`-A DOCKMOAT-INGRESS -d 172.18.0.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 80 -m comment --comment "dockmoat:H allow multi 80/tcp" -j RETURN`,
				deny,
			},
			open: map[string]string{"multi 80/tcp": "any"},
		},
		{
			name:       "any invalid label keeps the whole container closed",
			containers: []Container{ctr("bad", map[string]string{"dockmoat.allow": "8080", "dockmoat.alow": "8081"}, "172.17.0.14", pb(8080, 80, "tcp"), pb(8081, 81, "tcp"))},
			want:       []string{deny},
		},
		{
			name:       "IPv6 table: the :: binding, the v6 address, v6 sources only",
			containers: []Container{v6ctr},
			fam:        IPv6,
			want: []string{
				`-A DOCKMOAT-INGRESS -s 2001:db8::/48 -d fd00::9/128 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8080 -m comment --comment "dockmoat:H allow six 8080/tcp from 2001:db8::/48" -j RETURN`,
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
				fam = IPv4
			}
			res := Build(cfg, Snapshot{Containers: tc.containers, Bridges: []string{"docker0"}}, fam, tc.opt)
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

func TestProblems(t *testing.T) {
	cases := []struct {
		labels map[string]string
		ports  []PortBinding
		fatal  bool
		want   []string // substrings of the one problem
	}{
		{map[string]string{"dockmoat.allow": "80800"}, nil, true, []string{"container c", "dockmoat.allow", "80800", "1 to 65535", "stay closed"}},
		{map[string]string{"dockmoat.allow": "80/icmp"}, nil, true, []string{"protocol \"icmp\""}},
		{map[string]string{"dockmoat.allow": "90-80"}, nil, true, []string{"below its start"}},
		{map[string]string{"dockmoat.allow": ""}, nil, true, []string{"no ports listed"}},
		{map[string]string{"dockmoat.allow": "80", "dockmoat.from": "10.0.0.300/8"}, nil, true, []string{"dockmoat.from", "not a valid CIDR"}},
		{map[string]string{"dockmoat.from": "10.0.0.0/8"}, nil, true, []string{"dockmoat.allow is not set"}},
		{map[string]string{"dockmoat.allow.http": "any"}, nil, true, []string{"dockmoat.allow.http", "must name one port"}},
		{map[string]string{"dockmoat.allow.80": ""}, nil, true, []string{"no sources listed"}},
		{map[string]string{"dockmoat.enable": "true"}, nil, true, []string{"unknown dockmoat label"}},
		// Wrong letter case must not drop a restriction (the port would open to anyone).
		{map[string]string{"dockmoat.allow": "8080", "Dockmoat.from": "198.51.100.3/32"}, []PortBinding{pb(8080, 80, "tcp")}, true, []string{"Dockmoat.from", "case-sensitive", "did you mean dockmoat.from?", "stay closed"}},
		{map[string]string{"DOCKMOAT.ALLOW": "8080"}, []PortBinding{pb(8080, 80, "tcp")}, true, []string{"did you mean dockmoat.allow?"}},
		{map[string]string{"dockmoat.Allow.8080": "198.51.100.3"}, []PortBinding{pb(8080, 80, "tcp")}, true, []string{"did you mean dockmoat.allow.8080?"}},
		{map[string]string{"dockmoat.allow": "80"}, []PortBinding{pb(8080, 80, "tcp")}, false, []string{"not published", "did you mean 8080"}},
	}
	for _, tc := range cases {
		c := ctr("c", tc.labels, "172.17.0.2", tc.ports...)
		res := Build(config.Default(), Snapshot{Containers: []Container{c}}, IPv4, Options{})
		if len(res.Problems) != 1 {
			t.Errorf("labels %v: want 1 problem, got %v", tc.labels, res.Problems)
			continue
		}
		p := res.Problems[0]
		if p.Fatal != tc.fatal {
			t.Errorf("labels %v: fatal=%v, want %v", tc.labels, p.Fatal, tc.fatal)
		}
		for _, w := range tc.want {
			if !strings.Contains(p.String(), w) {
				t.Errorf("labels %v: problem %q lacks %q", tc.labels, p.String(), w)
			}
		}
	}
}

func TestHashes(t *testing.T) {
	snap := Snapshot{Bridges: []string{"docker0"}, Containers: []Container{
		ctr("a", map[string]string{"dockmoat.allow": "80"}, "172.17.0.2", pb(80, 80, "tcp")),
	}}
	r1 := Build(config.Default(), snap, IPv4, Options{})
	r2 := Build(config.Default(), snap, IPv4, Options{})
	ing1, _ := r1.Ruleset.Chain(ChainIngress)
	ing2, _ := r2.Ruleset.Chain(ChainIngress)
	if strings.Join(ing1.Hashes(), ",") != strings.Join(ing2.Hashes(), ",") {
		t.Fatal("hashes are not deterministic")
	}
	// A new address must change the hash, or a stale rule would look current.
	snap.Containers[0].Endpoints[0].IPv4 = addr("172.17.0.3")
	r3 := Build(config.Default(), snap, IPv4, Options{})
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

// One container whose allows cannot all be installed is closed and
// reported; the others are decided as usual.
func TestContainerTooLargeClosed(t *testing.T) {
	var srcs []string
	for i := range 40 {
		srcs = append(srcs, fmt.Sprintf("198.51.%d.0/24", i))
	}
	huge := ctr("huge", map[string]string{"dockmoat.allow": "20000-21999", "dockmoat.from": strings.Join(srcs, ",")}, "172.17.0.9")
	for p := uint16(20000); p < 22000; p++ {
		huge.Ports = append(huge.Ports, pb(p, p, "tcp"))
	}
	ok := ctr("ok", map[string]string{"dockmoat.allow": "80"}, "172.17.0.2", pb(80, 80, "tcp"))
	for _, opt := range []Options{{}, {Sets: true}, {Sets: true, Inc: NewIncremental(IPv4)}} {
		res := Build(config.Default(), Snapshot{Containers: []Container{huge, ok}}, IPv4, opt)
		open := map[string]int{}
		for _, d := range res.Decisions() {
			if d.Open {
				open[d.Container]++
			}
		}
		if open["huge"] != 0 || open["ok"] != 1 {
			t.Errorf("opt %+v: open ports per container %v; want huge closed, ok open", opt, open)
		}
		if len(res.Problems) != 1 || !res.Problems[0].Fatal || !strings.Contains(res.Problems[0].String(), "80000 entries") {
			t.Errorf("opt %+v: problems %v", opt, res.Problems)
		}
	}
}
