package nftplan

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The shared inputs (rules/rulestest).
var (
	proxySnap   = rulestest.ProxySnap
	goldenInput = rulestest.GoldenInput
)

var hashes = regexp.MustCompile(`dockmoat:[0-9a-f]{16} `)

func TestRender(t *testing.T) {
	cfg, snap := goldenInput()
	// The sets layout (the default) against a golden file; the kernel
	// takes it in TestNFTBackend.
	sets, _ := Render(cfg, snap)
	golden := filepath.Join("testdata", "nft-sets.golden")
	text := hashes.ReplaceAllString(sets.Text(), "dockmoat:H ")
	if *update {
		if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want, err := os.ReadFile(golden); err != nil || string(want) != text {
		t.Errorf("sets layout differs from %s (go test -update to accept; %v):\n%s", golden, err, text)
	}

	// One rule per allow (ipset: off).
	cfg.NoIPSet = true
	rs, res := Render(cfg, snap)
	got := hashes.ReplaceAllString(rs.Text(), "dockmoat:H ")
	want := `table inet dockmoat {
	chain forward {
		type filter hook forward priority filter - 10; policy accept;
		ct state established,related accept comment "dockmoat:H replies and related traffic"
		iifname "br-0123456789ab" meta mark set meta mark | 0x20000000 accept comment "dockmoat:H leaving docker network br-0123456789ab"
		iifname "docker0" meta mark set meta mark | 0x20000000 accept comment "dockmoat:H leaving docker network docker0"
		oifname "br-0123456789ab" goto ingress comment "dockmoat:H entering docker network br-0123456789ab"
		oifname "docker0" goto ingress comment "dockmoat:H entering docker network docker0"
		iifname "br-*" meta mark set meta mark | 0x20000000 accept comment "dockmoat:H leaving a docker network not seen yet br-*"
		oifname "br-*" goto ingress comment "dockmoat:H entering a docker network not seen yet br-*"
		meta mark set meta mark | 0x20000000 comment "dockmoat:H not into a docker network"
	}
	chain ingress {
		ip saddr 10.0.0.0/8 ct status dnat meta mark set meta mark | 0x20000000 accept comment "dockmoat:H trusted source 10.0.0.0/8"
		ip6 saddr fd00::/8 ct status dnat meta mark set meta mark | 0x20000000 accept comment "dockmoat:H trusted source fd00::/8"
		ip saddr 198.51.100.0/24 ip daddr 172.17.0.2 tcp dport 80 ct status dnat ct original proto-dst 8080 meta mark set meta mark | 0x20000000 accept comment "dockmoat:H allow web 8080/tcp from 198.51.100.0/24"
		ip saddr 198.51.100.0/24 ip daddr 172.17.0.2 udp dport 53 ct status dnat ct original ip daddr 192.0.2.1 ct original proto-dst 53 meta mark set meta mark | 0x20000000 accept comment "dockmoat:H allow web 53/udp from 198.51.100.0/24"
		ip6 saddr 2001:db8::/48 ip6 daddr fd00::2 tcp dport 80 ct status dnat ct original proto-dst 8080 meta mark set meta mark | 0x20000000 accept comment "dockmoat:H allow web 8080/tcp from 2001:db8::/48"
		limit rate 10/minute burst 20 packets log prefix "[DOCKMOAT BLOCK] " comment "dockmoat:H log blocked"
		drop comment "dockmoat:H default deny"
	}
	chain input {
		type filter hook input priority filter - 10; policy accept;
		ct state established,related accept comment "dockmoat:H replies and related traffic"
		iifname "lo" meta mark set meta mark | 0x20000000 accept comment "dockmoat:H from the host itself"
		iifname "br-0123456789ab" meta mark set meta mark | 0x20000000 accept comment "dockmoat:H from docker network br-0123456789ab"
		iifname "docker0" meta mark set meta mark | 0x20000000 accept comment "dockmoat:H from docker network docker0"
		ip saddr 10.0.0.0/8 meta mark set meta mark | 0x20000000 accept comment "dockmoat:H trusted source 10.0.0.0/8"
		ip6 saddr fd00::/8 meta mark set meta mark | 0x20000000 accept comment "dockmoat:H trusted source fd00::/8"
		ip saddr 198.51.100.0/24 meta nfproto ipv4 tcp dport 8080 meta mark set meta mark | 0x20000000 accept comment "dockmoat:H allow web 8080/tcp via docker-proxy from 198.51.100.0/24"
		ip saddr 198.51.100.0/24 meta nfproto ipv4 ip daddr 192.0.2.1 udp dport 53 meta mark set meta mark | 0x20000000 accept comment "dockmoat:H allow web 53/udp via docker-proxy from 198.51.100.0/24"
		ip6 saddr 2001:db8::/48 meta nfproto ipv6 tcp dport 8080 meta mark set meta mark | 0x20000000 accept comment "dockmoat:H allow web 8080/tcp via docker-proxy from 2001:db8::/48"
		meta nfproto ipv4 tcp dport 8080 drop comment "dockmoat:H 8080/tcp to web via docker-proxy: not allowed"
		meta nfproto ipv4 ip daddr 192.0.2.1 udp dport 53 drop comment "dockmoat:H 53/udp on 192.0.2.1 to web via docker-proxy: not allowed"
		meta nfproto ipv6 tcp dport 8080 drop comment "dockmoat:H 8080/tcp to web via docker-proxy: not allowed"
	}
}
table inet dockmoat_check {
	chain forward {
		type filter hook forward priority filter - 5; policy accept;
		ct state new ct status dnat meta mark & 0x20000000 == 0 drop comment "dockmoat:H not let through by dockmoat, its table flushed or deleted: drop"
		meta mark set meta mark & 0xdfffffff comment "dockmoat:H clear the mark"
	}
	chain input {
		type filter hook input priority filter - 5; policy accept;
		ct state new meta nfproto ipv4 tcp dport 8080 meta mark & 0x20000000 == 0 drop comment "dockmoat:H 8080/tcp to web via docker-proxy: not let through by dockmoat"
		ct state new meta nfproto ipv4 ip daddr 192.0.2.1 udp dport 53 meta mark & 0x20000000 == 0 drop comment "dockmoat:H 53/udp on 192.0.2.1 to web via docker-proxy: not let through by dockmoat"
		ct state new meta nfproto ipv6 tcp dport 8080 meta mark & 0x20000000 == 0 drop comment "dockmoat:H 8080/tcp to web via docker-proxy: not let through by dockmoat"
		meta mark set meta mark & 0xdfffffff comment "dockmoat:H clear the mark"
	}
}
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if len(res[0].Decisions()) != 2 || len(res[1].Decisions()) != 1 {
		t.Errorf("decisions per family: %d, %d", len(res[0].Decisions()), len(res[1].Decisions()))
	}
	if !strings.HasPrefix(rs.ReplaceScript(), "table inet dockmoat\ndelete table inet dockmoat\ntable inet dockmoat_check\ndelete table inet dockmoat_check\ntable bridge dockmoat\ndelete table bridge dockmoat\ntable inet dockmoat {") {
		t.Error("replace script must create, delete and define in one transaction")
	}
	if p := os.Getenv("DOCKMOAT_NFT_OUT"); p != "" {
		_ = os.WriteFile(p, []byte(rs.ReplaceScript()), 0o644)
	}
}

// The proxy path on the nftables backend: an input base chain with the
// same allows, per family, for every published binding (runs of ports,
// several runs of a protocol as one rule with an anonymous set), only
// when some binding is published.
func TestNFTProxyPath(t *testing.T) {
	cfg := config.Config{TrustedSources: []netip.Prefix{netip.MustParsePrefix("2001:db8:9::/48")}}
	rs, _ := Render(cfg, proxySnap())
	text := rs.Text()
	for _, want := range []string{
		"\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n",
		`iifname "lo" meta mark set meta mark | 0x20000000 accept comment`,
		`iifname "br-*" meta mark set meta mark | 0x20000000 accept comment "dockmoat:`,
		`ip6 saddr 2001:db8:9::/48 meta mark set meta mark | 0x20000000 accept comment`,
		`meta nfproto ipv6 tcp dport { 8080, 9000 } meta mark set meta mark | 0x20000000 accept comment "dockmoat:`,
		`ip6 saddr 2001:db8:1::10/128 meta nfproto ipv6 tcp dport 8083 meta mark set meta mark | 0x20000000 accept comment`,
		`meta nfproto ipv6 tcp dport { 5432, 8080, 8082-8083, 9000 } drop comment "dockmoat:`,
		` 5432,8080,8082:8083,9000/tcp via docker-proxy: not allowed"`,
		// IPv4 is DNATed by Docker here; closed on INPUT for when it is not.
		`meta nfproto ipv4 tcp dport { 5432, 8080, 8082-8083, 9000 } drop comment "dockmoat:`,
		// A protocol's only run stays the rule it was.
		`meta nfproto ipv6 udp dport 5353 drop comment "dockmoat:f2cba3cd3daae1c0 5353/udp to db via docker-proxy: not allowed"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("nft table lacks %q:\n%s", want, text)
		}
	}
	if empty, _ := Render(cfg, rules.Snapshot{}); strings.Contains(empty.Text(), "chain input") {
		t.Error("no proxied binding: no input chain")
	}
}

// TestDisabledBypass: one accept first in each base chain (it ends only
// dockmoat's chain; Docker's rules then decide), the rest unchanged.
func TestDisabledBypass(t *testing.T) {
	on, _ := Render(config.Config{}, proxySnap())
	off, _ := Render(config.Config{Disabled: true}, proxySnap())
	for _, name := range []string{chainMain, "input"} {
		var a, b Chain
		for _, c := range on.Chains {
			if c.Name == name {
				a = c
			}
		}
		for _, c := range off.Chains {
			if c.Name == name {
				b = c
			}
		}
		if len(a.Rules) == 0 || len(b.Rules) != len(a.Rules)+1 {
			t.Fatalf("%s: %d rules enabled, %d disabled", name, len(a.Rules), len(b.Rules))
		}
		if b.Rules[0].Expr != pass || !strings.Contains(b.Rules[0].Desc, "dockmoat enable") {
			t.Errorf("%s: first rule %+v, want the bypass", name, b.Rules[0])
		}
		if !reflect.DeepEqual(b.Rules[1:], a.Rules) {
			t.Errorf("%s: the rest changed", name)
		}
	}
	if strings.Contains(GuardTable(config.Config{Disabled: true}, nil, [2][]policy.PortRun{}).Text(), "disable") {
		t.Error("the boot guard never bypasses")
	}
}

// TestRenderEgress: the nft rendering of ipt's TestRenderEgress.
func TestRenderEgress(t *testing.T) {
	rs, _ := Render(config.Default(), rulestest.EgressSnap())
	text := rs.Text()
	for _, want := range []string{
		`ip saddr 172.17.0.2 iifname "docker0" oifname != "docker0" goto egress comment "dockmoat:`,
		`ip6 saddr fd00::2 iifname "docker0" oifname != "docker0" goto egress comment`,
		`ip saddr 172.17.0.2 iifname "docker0" goto egress comment "dockmoat:` + "",
		`ip saddr 172.17.0.2 ip daddr 192.0.2.53 udp dport 53 meta mark set meta mark | 0x20000000 accept comment`,
		`ip saddr 172.17.0.2 ip daddr 192.0.2.53 tcp dport 53 meta mark set meta mark | 0x20000000 accept comment`,
		`ip saddr 172.17.0.2 ip daddr 10.0.0.0/8 meta l4proto { tcp, udp } th dport 1000-2000 meta mark set meta mark | 0x20000000 accept comment`,
		`ip saddr 172.17.0.2 ip daddr 198.51.100.0/24 meta mark set meta mark | 0x20000000 accept comment`,
		`ip saddr 172.17.0.2 reject comment "dockmoat:`,
		`ip6 saddr fd00::2 ip6 daddr 2001:db8::53 udp dport 53 meta mark set meta mark | 0x20000000 accept comment`,
		`ip6 saddr fd00::2 ip6 daddr 2001:db8::1 udp dport 53 meta mark set meta mark | 0x20000000 accept comment`,
		`ip6 saddr fd00::2 reject comment`,
		`icmpv6 type 135 ip6 hoplimit 255 meta mark set meta mark | 0x20000000 accept comment "dockmoat:`, `icmpv6 type 143 ip6 hoplimit 1 meta mark set meta mark | 0x20000000 accept comment "dockmoat:`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("nft table lacks %q:\n%s", want, text)
		}
	}
	fwd := text[strings.Index(text, "chain forward"):]
	if strings.Index(fwd, "goto egress") > strings.Index(fwd, `iifname "docker0" meta mark`) || strings.Index(fwd, "goto egress") < strings.Index(fwd, "ct state established,related accept") {
		t.Errorf("egress jump must follow replies and precede the leaving-network accept:\n%s", fwd)
	}
	if strings.Contains(text, "172.17.0.3") && strings.Contains(text, "saddr 172.17.0.3") {
		t.Error("a container without egress policy is matched")
	}
}

// TestRenderBridge: a deny container whose veth is known is bound to its
// addresses in table bridge dockmoat; one whose veth is not is left out
// (rules reports it); disable lifts the binding with the rest of egress.
func TestRenderBridge(t *testing.T) {
	snap := rulestest.EgressSnap()
	if rs, _ := Render(config.Default(), snap); len(rs.Bridge) != 0 {
		t.Fatalf("no veth known, yet a bridge table:\n%s", rs.Text())
	}
	snap.Containers[0].Endpoints[0].HostIface = "veth1a2b3c"
	snap.Containers[1].Endpoints[0].HostIface = "veth4d5e6f" // web: no egress policy
	rs, _ := Render(config.Default(), snap)
	text := rs.Text()
	for _, want := range []string{
		"table bridge dockmoat {\n\tchain prerouting {\n\t\ttype filter hook prerouting priority -200; policy accept;\n",
		`iifname "veth1a2b3c" ether type != { ip, ip6, arp } drop comment "dockmoat:`,
		`iifname "veth1a2b3c" ip saddr != { 172.17.0.2 } drop comment "dockmoat:`,
		`iifname "veth1a2b3c" ip6 saddr != { fd00::2, ::, fe80::/10 } drop comment "dockmoat:`,
		`iifname "veth1a2b3c" ip6 saddr != { fd00::2 } meta l4proto != ipv6-icmp drop comment "dockmoat:`,
		`iifname "veth1a2b3c" ip6 saddr != { fd00::2 } icmpv6 type != { 133, 135, 136, 143 } drop comment "dockmoat:`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("want %q in\n%s", want, text)
		}
	}
	if strings.Contains(text, "veth4d5e6f") {
		t.Error("a container without egress policy is bound")
	}
	if n := strings.Count(text, "iifname \"veth"); n != 5 {
		t.Errorf("%d bridge rules, want 5", n)
	}
	if rs, _ := Render(config.Config{Disabled: true}, snap); len(rs.Bridge) != 0 {
		t.Error("disable lifts every egress deny, the binding too")
	}
	// The bridge layer (iptables hosts) writes and deletes its table only.
	only := Ruleset{Bridge: rs.Bridge, BridgeOnly: true}
	if s := only.ReplaceScript(); strings.Contains(s, "inet") || !strings.HasPrefix(s, "table bridge dockmoat\ndelete table bridge dockmoat\ntable bridge dockmoat {") {
		t.Errorf("bridge layer script:\n%s", s)
	}
	if p := os.Getenv("DOCKMOAT_NFT_OUT"); p != "" {
		_ = os.WriteFile(p, []byte(rs.ReplaceScript()), 0o644)
	}
}

// TestForeignBridge: the nft rendering of ipt's TestForeignBridge.
func TestForeignBridge(t *testing.T) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Links: []string{"eth0", "br-lan", "br-0123456789ab"}}
	snap.Containers = proxySnap().Containers
	rs, _ := Render(config.Default(), snap)
	text := rs.Text()
	for _, want := range []string{
		`oifname != { "eth0", "br-lan" } ct status dnat goto ingress comment "dockmoat:`,
		`iifname != { "br-lan" } iifname "br-*" meta mark set meta mark | 0x20000000 accept comment "dockmoat:`,
		`oifname != { "br-lan" } oifname "br-*" goto ingress comment "dockmoat:`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("want %s in\n%s", want, text)
		}
	}
	if n := strings.Count(text, "not seen yet"); n != 2 {
		t.Errorf("the input chain has no catch-all for unseen networks:\n%s", text)
	}
	g := GuardTable(config.Default(), []string{"br-lan"}, [2][]policy.PortRun{}).Text()
	for _, want := range []string{`oifname { "br-lan" } accept`, `iifname != { "br-lan" } iifname { "docker0", "br-*" } accept`} {
		if !strings.Contains(g, want) {
			t.Errorf("guard: want %s in\n%s", want, g)
		}
	}
}

// The guard table closes the last pass's published ports on the input
// hook, per family, and has no input chain without them.
func TestGuardTableInput(t *testing.T) {
	pub := [2][]policy.PortRun{{{PortRange: policy.PortRange{Proto: "tcp", Lo: 8080, Hi: 8081}}}, {{PortRange: policy.PortRange{Proto: "udp", Lo: 53, Hi: 53}}}}
	g := GuardTable(config.Default(), nil, pub).Text()
	for _, want := range []string{
		"\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n",
		`iifname { "docker0", "br-*" } accept comment`,
		`meta nfproto ipv4 tcp dport 8080-8081 drop comment "dockmoat:`,
		`meta nfproto ipv6 udp dport 53 drop comment "dockmoat:`,
	} {
		if !strings.Contains(g, want) {
			t.Errorf("guard: want %s in\n%s", want, g)
		}
	}
	if g := GuardTable(config.Default(), nil, [2][]policy.PortRun{}).Text(); strings.Contains(g, "chain input") {
		t.Errorf("no published port, no input chain:\n%s", g)
	}
}

// Observe mode: what the policy refuses (DNAT and docker-proxy paths) is
// marked in its connection and let through; nothing else changes.
func TestRenderObserve(t *testing.T) {
	cfg, snap := goldenInput()
	snap.Containers = append(snap.Containers, proxySnap().Containers...)
	enforce, _ := Render(cfg, snap)
	cfg.Observe = true
	observe, _ := Render(cfg, snap)
	text := observe.Text()
	if n := strings.Count(text, "ct mark set ct mark | 0x20000000 meta mark set meta mark | 0x20000000 accept"); n < 2 ||
		!strings.Contains(text, "ct status dnat ct mark set") {
		t.Fatalf("observe rules missing (%d):\n%s", n, text)
	}
	if strings.Contains(enforce.Text(), "ct mark") || strings.Contains(text, "via docker-proxy: not allowed") {
		t.Errorf("enforce must not mark, observe must not drop published ports:\n%s", text)
	}
}

// iface:NAME is iifname on both paths, quoted, its * nft's own glob; deny
// and trusted interfaces sit with their sources.
func TestRenderIfaceSources(t *testing.T) {
	cfg, snap := goldenInput()
	cfg.TrustedIfaces, cfg.DenyIfaces = []string{"tailscale0"}, []string{"eth9"}
	snap.Containers = append(snap.Containers, rulestest.Dual("vpn", 9090, map[string]string{"dockmoat.allow": "9090", "dockmoat.from": "iface:wg*"}))
	rs, _ := RenderWith(cfg, snap, false)
	text := rs.Text()
	for _, want := range []string{
		`iifname "eth9" ct status dnat drop`, `iifname "eth9" return`,
		`iifname "tailscale0" ct status dnat meta mark set`, `iifname "tailscale0" meta mark set`,
		`iifname "wg*" ip daddr `, `iifname "wg*" meta nfproto ipv6 tcp dport 9090`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "saddr iface") {
		t.Errorf("an interface rendered as an address:\n%s", text)
	}
	if *update {
		_ = os.WriteFile(filepath.Join(os.TempDir(), "nft-iface.nft"), []byte(rs.ReplaceScript()), 0o644)
	}
}
