package audit

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/rules"
)

// nft-handmade.json is what nft 1.0.6 printed (`nft -j list ruleset`) for
// a table shaped like Docker's docker-bridges, with one rule per kind of
// match the evaluator reads; each test below names the rule it reaches.
func loadLive(t *testing.T, name string) *nft.Live {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	live, err := nft.ParseRuleset(data)
	if err != nil {
		t.Fatal(err)
	}
	return live
}

func TestEvalNFTMatches(t *testing.T) {
	live := loadLive(t, "nft-handmade.json")
	base := Packet{Src: netip.MustParseAddr("203.0.113.50"), Dst: netip.MustParseAddr("172.17.0.3"), Proto: "udp", SPort: 40000, DPort: 9,
		In: "eth0", Out: "docker0", States: []string{"NEW", "DNAT"}, OrigDst: netip.MustParseAddr("203.0.113.1"), OrigDstPort: 9999}
	for _, tc := range []struct {
		name   string
		change func(*Packet)
		want   Result
		rule   string
	}{
		{"nothing matches: the last drop", func(*Packet) {}, Drop, `comment "hello"`},
		{"address and port", func(p *Packet) { p.Dst, p.Proto, p.DPort = netip.MustParseAddr("172.17.0.2"), "tcp", 80 }, Accept, "tcp dport 80 accept"},
		{"concatenated set", func(p *Packet) {
			p.Dst, p.DPort = netip.MustParseAddr("172.17.0.2"), 80
			p.In = "docker0"
			p.Proto = "tcp"
			p.Flags = "SYN,ACK"
		}, Accept, "@docker0-ports"},
		{"tcp flags & mask == syn", func(p *Packet) { p.Proto = "tcp" }, Drop, "tcp flags & (fin|syn|rst|ack) syn drop"},
		{"prefix", func(p *Packet) { p.Src = netip.MustParseAddr("10.1.2.3") }, Accept, "ip saddr 10.0.0.0/8"},
		{"anonymous set with a prefix", func(p *Packet) { p.Src = netip.MustParseAddr("198.51.100.9") }, Accept, "198.51.100.0/24"},
		{"source port", func(p *Packet) { p.Proto, p.SPort, p.Flags = "tcp", 53, "SYN,ACK" }, Accept, "tcp sport 53"},
		{"fib daddr type local", func(p *Packet) { p.DstLocal = true }, Drop, "fib daddr type local"},
		{"ct status dnat, original port", func(p *Packet) { p.Proto, p.OrigDstPort, p.Flags = "tcp", 8080, "SYN,ACK" }, Accept, "ct original proto-dst 8080"},
		{"range of ports", func(p *Packet) { p.DPort = 1500 }, Drop, "th dport 1000-2000"},
		{"established: accepted early", func(p *Packet) { p.States = []string{"ESTABLISHED"} }, Accept, "ct state established,related"},
	} {
		p := base
		tc.change(&p)
		v := EvalNFT(live, "forward", rules.IPv4, p)
		if v.Result != tc.want || !strings.Contains(v.Rule, tc.rule) {
			t.Errorf("%s: got %s by %q, want %s by a rule with %q (path %+v)", tc.name, v.Result, v.Rule, tc.want, tc.rule, v.Path)
		}
	}
	// IPv6 packets do not meet table ip at all: accepted (no base chain).
	p := base
	p.Src, p.Dst = netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("fd00::2")
	if v := EvalNFT(live, "forward", rules.IPv6, p); v.Result != Accept || len(v.Path) != 0 {
		t.Errorf("IPv6 through table ip: %+v", v)
	}
	// raw PREROUTING (priority raw) drops direct routing to a container.
	p = base
	p.Dst, p.States = netip.MustParseAddr("172.17.0.2"), []string{"NEW"}
	if v := EvalNFT(live, "prerouting", rules.IPv4, p); v.Result != Drop || !strings.Contains(v.Chain, "raw-PREROUTING") {
		t.Errorf("raw prerouting: %+v", v)
	}
}

// TestRunNFT: the report from a whole nftables ruleset, through the same
// rows, reasons and explain as iptables.
func TestRunNFT(t *testing.T) {
	live := loadLive(t, "nft-handmade.json")
	snap := rules.Snapshot{Bridges: []string{"docker0"}, NetworkBridges: map[string]string{"bridge": "docker0"},
		Containers: []rules.Container{{Name: "web", Ports: []rules.PortBinding{{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}}}}
	target, _ := ParseTarget("8080/tcp")
	rep := Run(Input{Config: config.Default(), Snapshot: snap, NFT: live, Explain: &target,
		Ifaces: []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}})
	if len(rep.Rows) != 1 {
		t.Fatalf("rows %+v", rep.Rows)
	}
	r := rep.Rows[0]
	if r.Exposure != Public || !r.Beyond || !strings.Contains(r.Reason, "no dockmoat protection installed") {
		t.Errorf("row %+v", r)
	}
	// 10.0.0.0/8 and the anonymous set's addresses are source classes.
	if len(r.Paths) < 3 || r.Paths[0].Source != "anyone" || !strings.Contains(r.Fix, "not protecting this host") {
		t.Errorf("paths %+v fix %q", r.Paths, r.Fix)
	}
	last := r.Paths[0].Steps[len(r.Paths[0].Steps)-1]
	if last.Chain != "ip docker-bridges/filter-forward-in__docker0" || !strings.Contains(last.Rule, "tcp dport 80 accept") {
		t.Errorf("last step %+v", last)
	}
}
