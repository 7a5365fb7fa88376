package nfteval

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

// nft-handmade.json is what nft 1.0.6 printed (`nft -j list ruleset`) for
// a table shaped like Docker's docker-bridges, with one rule per kind of
// match the evaluator reads; each test below names the rule it reaches.
func loadLive(t *testing.T, name string) *nftjson.Ruleset {
	t.Helper()
	data, err := os.ReadFile("../testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	live, err := nftjson.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return live
}

func TestEvalNFTMatches(t *testing.T) {
	live := loadLive(t, "nft-handmade.json")
	base := verdict.Packet{Src: netip.MustParseAddr("203.0.113.50"), Dst: netip.MustParseAddr("172.17.0.3"), Proto: "udp", SPort: 40000, DPort: 9,
		In: "eth0", Out: "docker0", States: []string{"NEW", "DNAT"}, OrigDst: netip.MustParseAddr("203.0.113.1"), OrigDstPort: 9999}
	for _, tc := range []struct {
		name   string
		change func(*verdict.Packet)
		want   verdict.Result
		rule   string
	}{
		{"nothing matches: the last drop", func(*verdict.Packet) {}, verdict.Drop, `comment "hello"`},
		{"address and port", func(p *verdict.Packet) { p.Dst, p.Proto, p.DPort = netip.MustParseAddr("172.17.0.2"), "tcp", 80 }, verdict.Accept, "tcp dport 80 accept"},
		{"concatenated set", func(p *verdict.Packet) {
			p.Dst, p.DPort = netip.MustParseAddr("172.17.0.2"), 80
			p.In = "docker0"
			p.Proto = "tcp"
			p.Flags = "SYN,ACK"
		}, verdict.Accept, "@docker0-ports"},
		{"tcp flags & mask == syn", func(p *verdict.Packet) { p.Proto = "tcp" }, verdict.Drop, "tcp flags & (fin|syn|rst|ack) syn drop"},
		{"prefix", func(p *verdict.Packet) { p.Src = netip.MustParseAddr("10.1.2.3") }, verdict.Accept, "ip saddr 10.0.0.0/8"},
		{"anonymous set with a prefix", func(p *verdict.Packet) { p.Src = netip.MustParseAddr("198.51.100.9") }, verdict.Accept, "198.51.100.0/24"},
		{"source port", func(p *verdict.Packet) { p.Proto, p.SPort, p.Flags = "tcp", 53, "SYN,ACK" }, verdict.Accept, "tcp sport 53"},
		{"fib daddr type local", func(p *verdict.Packet) { p.DstLocal = true }, verdict.Drop, "fib daddr type local"},
		{"ct status dnat, original port", func(p *verdict.Packet) { p.Proto, p.OrigDstPort, p.Flags = "tcp", 8080, "SYN,ACK" }, verdict.Accept, "ct original proto-dst 8080"},
		{"range of ports", func(p *verdict.Packet) { p.DPort = 1500 }, verdict.Drop, "th dport 1000-2000"},
		{"established: accepted early", func(p *verdict.Packet) { p.States = []string{"ESTABLISHED"} }, verdict.Accept, "ct state established,related"},
	} {
		p := base
		tc.change(&p)
		v := Eval(live, "forward", rules.IPv4, p)
		if v.Result != tc.want || !strings.Contains(v.Rule, tc.rule) {
			t.Errorf("%s: got %s by %q, want %s by a rule with %q (path %+v)", tc.name, v.Result, v.Rule, tc.want, tc.rule, v.Path)
		}
	}
	// IPv6 packets do not meet table ip at all: accepted (no base chain).
	p := base
	p.Src, p.Dst = netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("fd00::2")
	if v := Eval(live, "forward", rules.IPv6, p); v.Result != verdict.Accept || len(v.Path) != 0 {
		t.Errorf("IPv6 through table ip: %+v", v)
	}
	// raw PREROUTING (priority raw) drops direct routing to a container.
	p = base
	p.Dst, p.States = netip.MustParseAddr("172.17.0.2"), []string{"NEW"}
	if v := Eval(live, "prerouting", rules.IPv4, p); v.Result != verdict.Drop || !strings.Contains(v.Chain, "raw-PREROUTING") {
		t.Errorf("raw prerouting: %+v", v)
	}
}

// TestNFTDNATFamily: table ip's DNAT is not the IPv6 path (Docker's
// IPv4-only container is reached over IPv6 through docker-proxy).
func TestNFTDNATFamily(t *testing.T) {
	live := loadLive(t, "nft-handmade.json")
	c := rules.Container{Name: "web", Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}}
	b := rules.PortBinding{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}
	isWeb := func(a netip.Addr) bool { return a == c.Endpoints[0].IPv4 }
	if _, ok := (Ruleset{Live: live, Fam: rules.IPv4}).DNAT(b, isWeb); !ok {
		t.Error("IPv4: Docker's DNAT not found")
	}
	if _, ok := (Ruleset{Live: live, Fam: rules.IPv6}).DNAT(b, isWeb); ok {
		t.Error("IPv6: table ip's DNAT taken for the IPv6 path")
	}
}

// TestEvalNFTLimit: "limit rate over" does not match a first packet; a
// plain limit does.
func TestEvalNFTLimit(t *testing.T) {
	live, err := nftjson.Parse([]byte(`{"nftables": [
{"chain": {"family": "inet", "table": "t", "name": "f", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
{"rule": {"family": "inet", "table": "t", "chain": "f", "expr": [{"limit": {"rate": 10, "per": "second", "inv": true}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "t", "chain": "f", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 81}}, {"limit": {"rate": 10, "per": "second"}}, {"drop": null}]}}
]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := verdict.Packet{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("172.17.0.2"), Proto: "tcp", DPort: 80, States: []string{"NEW"}}
	if v := Eval(live, "forward", rules.IPv4, p); v.Result != verdict.Accept {
		t.Errorf("limit rate over: %+v", v)
	}
	p.DPort = 81
	if v := Eval(live, "forward", rules.IPv4, p); v.Result != verdict.Drop {
		t.Errorf("limit rate: %+v", v)
	}
}

// A meter (`update @s { ip saddr limit rate over … } drop`, dockmoat's
// rate limits) does not stop a first packet; one without "over" lets it
// go on to the verdict.
func TestEvalNFTMeter(t *testing.T) {
	live, err := nftjson.Parse([]byte(`{"nftables": [
{"chain": {"family": "inet", "table": "t", "name": "f", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
{"rule": {"family": "inet", "table": "t", "chain": "f", "expr": [{"set": {"op": "update", "elem": {"payload": {"protocol": "ip", "field": "saddr"}}, "set": "@lim", "stmt": [{"limit": {"rate": 5, "burst": 3, "per": "minute", "inv": true}}]}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "t", "chain": "f", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 81}}, {"set": {"op": "update", "elem": {"payload": {"protocol": "ip", "field": "saddr"}}, "set": "@lim2", "stmt": [{"limit": {"rate": 5, "per": "minute"}}]}}, {"drop": null}]}}
]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := verdict.Packet{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("172.17.0.2"), Proto: "tcp", DPort: 80, States: []string{"NEW"}}
	if v := Eval(live, "forward", rules.IPv4, p); v.Result != verdict.Accept {
		t.Errorf("meter with limit rate over: %+v", v)
	}
	p.DPort = 81
	if v := Eval(live, "forward", rules.IPv4, p); v.Result != verdict.Drop {
		t.Errorf("meter with limit rate: %+v", v)
	}
}

// TestEvalNFTMetaProtocol: meta protocol is the layer-3 protocol, meta
// l4proto the transport.
func TestEvalNFTMetaProtocol(t *testing.T) {
	live, err := nftjson.Parse([]byte(`{"nftables": [
{"chain": {"family": "inet", "table": "t", "name": "f", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
{"rule": {"family": "inet", "table": "t", "chain": "f", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "protocol"}}, "right": "ip6"}}, {"drop": null}]}}
]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := verdict.Packet{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("172.17.0.2"), Proto: "tcp", DPort: 80, States: []string{"NEW"}}
	if v := Eval(live, "forward", rules.IPv4, p); v.Result != verdict.Accept {
		t.Errorf("IPv4 packet, meta protocol ip6 drop: %+v", v)
	}
	p.Src, p.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fd00::2")
	if v := Eval(live, "forward", rules.IPv6, p); v.Result != verdict.Drop {
		t.Errorf("IPv6 packet, meta protocol ip6 drop: %+v", v)
	}
}

// The pass mark on nftables: dockmoat's table marks what it lets
// through, the check table (a later base chain) drops a new DNATed
// connection without the mark and clears it. With the deciding chain
// flushed, the check drops; a mark bit of someone else's is not known.
func TestEvalNFTPassMark(t *testing.T) {
	rule := func(table, chain, expr string) string {
		return `{"rule":{"family":"inet","table":"` + table + `","chain":"` + chain + `","expr":` + expr + `}}`
	}
	base := func(table, chain string, prio int) string {
		return fmt.Sprintf(`{"chain":{"family":"inet","table":%q,"name":%q,"type":"filter","hook":"forward","prio":%d,"policy":"accept"}}`, table, chain, prio)
	}
	markAccept := `[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"198.51.100.1"}},` +
		`{"mangle":{"key":{"meta":{"key":"mark"}},"value":{"|":[{"meta":{"key":"mark"}},536870912]}}},{"accept":null}]`
	check := `[{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}},` +
		`{"match":{"op":"==","left":{"&":[{"meta":{"key":"mark"}},536870912]},"right":0}},{"drop":null}]`
	clear := `[{"mangle":{"key":{"meta":{"key":"mark"}},"value":{"&":[{"meta":{"key":"mark"}},3758096383]}}}]`
	ruleset := func(forward ...string) *nftjson.Ruleset {
		parts := []string{`{"table":{"family":"inet","name":"dockmoat"}}`, `{"table":{"family":"inet","name":"dockmoat_check"}}`,
			base("dockmoat", "forward", -10), base("dockmoat_check", "forward", -5),
			rule("dockmoat_check", "forward", check), rule("dockmoat_check", "forward", clear)}
		for _, f := range forward {
			parts = append(parts, rule("dockmoat", "forward", f))
		}
		live, err := nftjson.Parse([]byte(`{"nftables":[` + strings.Join(parts, ",") + `]}`))
		if err != nil {
			t.Fatal(err)
		}
		return live
	}
	drop := `[{"drop":null}]`
	intact := ruleset(markAccept, drop)
	if v := Eval(intact, "forward", rules.IPv4, pkt("198.51.100.1")); v.Result != verdict.Accept {
		t.Errorf("allowed, intact: %+v", v)
	}
	if v := Eval(intact, "forward", rules.IPv4, pkt("203.0.113.9")); v.Result != verdict.Drop || !strings.Contains(v.Chain, "dockmoat") {
		t.Errorf("refused, intact: %+v", v)
	}
	flushed := ruleset()
	if v := Eval(flushed, "forward", rules.IPv4, pkt("198.51.100.1")); v.Result != verdict.Drop || !strings.Contains(v.Chain, "dockmoat_check") {
		t.Errorf("forward flushed: %+v", v)
	}
	foreign := `[{"match":{"op":"==","left":{"&":[{"meta":{"key":"mark"}},16384]},"right":16384}},{"drop":null}]`
	if v := Eval(ruleset(foreign, markAccept), "forward", rules.IPv4, pkt("198.51.100.1")); v.Result != verdict.Unknown {
		t.Errorf("someone else's mark bit is not known: %+v", v)
	}
}

// pkt is a DNATed first packet from src to 172.17.0.2:80 (8080 on the host).
func pkt(src string) verdict.Packet {
	return verdict.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("172.17.0.2"), Proto: "tcp", SPort: 40000, DPort: 80,
		In: "eth0", Out: "docker0", States: []string{"NEW", "DNAT"}, OrigDst: netip.MustParseAddr("203.0.113.1"), OrigDstPort: 8080}
}

// The ban table as nft 1.0.6 listed it (testdata/nft-ban.json: the
// script the backend writes, then `nft add element … ban4 { 203.0.113.7
// timeout 10m, 198.51.100.0/24 }` and ban6 { 2001:db8:bad::/48 }): a
// banned source is dropped by it, elements with a timeout and prefixes
// alike; another goes on (the hook's policy accepts).
func TestEvalNFTBanTable(t *testing.T) {
	live := loadLive(t, "nft-ban.json")
	for _, c := range []struct {
		src  string
		want verdict.Result
	}{{"203.0.113.7", verdict.Drop}, {"198.51.100.9", verdict.Drop}, {"192.0.2.1", verdict.Accept}, {"2001:db8:bad::1", verdict.Drop}, {"2001:db8:1::1", verdict.Accept}} {
		p := pkt(c.src)
		fam := rules.IPv4
		if p.Src.Is6() {
			fam, p.Dst, p.OrigDst = rules.IPv6, netip.MustParseAddr("fd00::2"), netip.MustParseAddr("2001:db8::1")
		}
		if v := Eval(live, "forward", fam, p); v.Result != c.want {
			t.Errorf("%s: %s (%s %s), want %s", c.src, v.Result, v.Chain, v.Rule, c.want)
		}
	}
}

// TestEvalNFTProxyRuns: the proxy path as nft 1.0.6 listed dockmoat's
// table (nftplan's testdata), where several runs of a protocol are one
// rule with an anonymous set of ports: an allowed port in the set is let
// through, a published one not allowed is dropped by the set's drop
// rule, and a port nobody published is not dockmoat's.
func TestEvalNFTProxyRuns(t *testing.T) {
	data, err := os.ReadFile("../../netfilter/nft/nftplan/testdata/listing.json")
	if err != nil {
		t.Fatal(err)
	}
	live, err := nftjson.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		port uint16
		want verdict.Result
		rule string
	}{
		{9000, verdict.Accept, "tcp dport { 8080, 9000 }"},
		{5432, verdict.Drop, "tcp dport { 5432, 8080, 8082-8083, 9000 } drop"},
		{8083, verdict.Drop, "tcp dport { 5432, 8080, 8082-8083, 9000 } drop"},
		{8081, verdict.Accept, ""},
	} {
		p := verdict.Packet{Src: netip.MustParseAddr("2001:db8:77::1"), Dst: netip.MustParseAddr("2001:db8::1"), Proto: "tcp",
			SPort: 40000, DPort: tc.port, In: "eth0", States: []string{"NEW"}, DstLocal: true}
		v := Eval(live, "input", rules.IPv6, p)
		var path []string
		for _, st := range v.Path {
			path = append(path, st.Rule)
		}
		if v.Result != tc.want || !strings.Contains(strings.Join(path, "\n"), tc.rule) {
			t.Errorf("port %d: got %s by %q, want %s through a rule with %q; path:\n%s", tc.port, v.Result, v.Rule, tc.want, tc.rule, strings.Join(path, "\n"))
		}
	}
}
