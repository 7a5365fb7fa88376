package audit

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/setelem"
)

// The corners where a match depends on what the client chooses. Each
// case has its control: the same table without the rule the client
// exploits, where the port is closed, so a test cannot pass on a table
// that is closed for another reason.

// cornerTable is Docker 20.10's filter and nat tables for one container
// 172.17.0.2 publishing hostPort -> ctrPort/proto, with userRules in
// DOCKER-USER before its RETURN, and input rules in INPUT.
func cornerInput(proto string, hostPort, ctrPort uint16, userRules, input string, dnat bool) Input {
	p, hp, cp := proto, itoa(hostPort), itoa(ctrPort)
	save := `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p ` + p + ` -m ` + p + ` --dport ` + cp + ` -j ACCEPT
` + userRules + `-A DOCKER-USER -j RETURN
` + input + `COMMIT
`
	if dnat {
		save += `*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER ! -i docker0 -p ` + p + ` -m ` + p + ` --dport ` + hp + ` -j DNAT --to-destination 172.17.0.2:` + cp + `
COMMIT
`
	}
	snap := rules.Snapshot{Bridges: []string{"docker0"}, NetworkBridges: map[string]string{"bridge": "docker0"},
		Containers: []rules.Container{{Name: "svc", Ports: []rules.PortBinding{{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: hostPort, ContainerPort: ctrPort, Proto: proto}},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}}}}
	return Input{Config: config.Default(), Snapshot: snap,
		Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: save}},
		Ifaces:   []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}}
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

func oneRow(t *testing.T, in Input) report.Row {
	t.Helper()
	rep := Run(in)
	if len(rep.Rows) != 1 {
		t.Fatalf("rows: %+v", rep.Rows)
	}
	return rep.Rows[0]
}

func TestCornerClientSourcePort(t *testing.T) {
	// The after.rules recipe widely pasted for ufw + Docker (shortened):
	// DNS replies let through by source port, then new connections to
	// containers dropped (UDP only below 32768).
	recipe := `-A DOCKER-USER -p udp -m udp --sport 53 --dport 1024:65535 -j RETURN
-A DOCKER-USER -d 172.16.0.0/12 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP
-A DOCKER-USER -d 172.16.0.0/12 -p udp -m udp --dport 0:32767 -j DROP
`
	r := oneRow(t, cornerInput("udp", 5000, 5000, recipe, "", true))
	if r.Exposure != report.Public || !r.Beyond || r.SourcePort != 53 || !strings.Contains(r.Reason, "source port 53") {
		t.Errorf("UDP 5000 behind the recipe: %+v", r)
	}
	// Control: without the source-port rule the recipe closes it.
	control := strings.SplitN(recipe, "\n", 2)[1]
	if r := oneRow(t, cornerInput("udp", 5000, 5000, control, "", true)); r.Exposure != report.Closed || r.SourcePort != 0 {
		t.Errorf("control: %+v", r)
	}
	// A container port below 1024 is not let through by it (dport 1024:65535).
	if r := oneRow(t, cornerInput("udp", 5353, 53, recipe, "", true)); r.Exposure != report.Closed {
		t.Errorf("UDP to container port 53: %+v", r)
	}
}

func TestCornerSYNFlags(t *testing.T) {
	// Drops a bare SYN only: a SYN with PSH (or URG) opens the connection.
	rule := "-A DOCKER-USER -d 172.16.0.0/12 -p tcp -m tcp --tcp-flags ALL SYN -j DROP\n"
	r := oneRow(t, cornerInput("tcp", 8080, 80, rule, "", true))
	if r.Exposure != report.Public || !r.Beyond || !strings.Contains(r.Needs, "flags SYN,PSH") {
		t.Errorf("--tcp-flags ALL SYN: %+v", r)
	}
	// Control: the usual mask (FIN,SYN,RST,ACK) catches both.
	rule = "-A DOCKER-USER -d 172.16.0.0/12 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP\n"
	if r := oneRow(t, cornerInput("tcp", 8080, 80, rule, "", true)); r.Exposure != report.Closed {
		t.Errorf("FIN,SYN,RST,ACK SYN: %+v", r)
	}
	if r := oneRow(t, cornerInput("tcp", 8080, 80, "-A DOCKER-USER -p tcp -m tcp --syn -j DROP\n", "", true)); r.Exposure != report.Closed {
		t.Errorf("--syn: %+v", r)
	}
}

func TestCornerRecent(t *testing.T) {
	// Port knocking: a client remembered by -m recent gets in.
	knock := `-A DOCKER-USER -p tcp -m recent --rcheck --seconds 30 --name knock -j RETURN
-A DOCKER-USER -d 172.16.0.0/12 -j DROP
`
	r := oneRow(t, cornerInput("tcp", 8080, 80, knock, "", true))
	if r.Exposure != report.Public || !r.Beyond || !strings.Contains(r.Needs, "-m recent") {
		t.Errorf("knock: %+v", r)
	}
	// A rate limit (drop when remembered) leaves it open for a fresh client.
	limit := "-A DOCKER-USER -p tcp -m recent --update --seconds 60 --hitcount 4 --name rl -j DROP\n"
	if r := oneRow(t, cornerInput("tcp", 8080, 80, limit, "", true)); r.Exposure != report.Public || r.Needs != "" {
		t.Errorf("rate limit: %+v", r)
	}
	// Control: the drop alone.
	if r := oneRow(t, cornerInput("tcp", 8080, 80, "-A DOCKER-USER -d 172.16.0.0/12 -j DROP\n", "", true)); r.Exposure != report.Closed {
		t.Errorf("control: %+v", r)
	}
}

func TestCornerSrcRange(t *testing.T) {
	rules := `-A DOCKER-USER -m iprange --src-range 198.51.100.1-198.51.100.50 -j RETURN
-A DOCKER-USER -d 172.16.0.0/12 -j DROP
`
	r := oneRow(t, cornerInput("tcp", 8080, 80, rules, "", true))
	if r.Exposure != report.Restricted || !r.Beyond || len(r.Sources) != 1 || r.Sources[0] != "198.51.100.1-198.51.100.50" {
		t.Errorf("src-range: %+v", r)
	}
}

func TestCornerDstTypeUnicast(t *testing.T) {
	// No DNAT (docker-proxy on the host): the packet is for the host's
	// own address. IPv4 calls it LOCAL, not UNICAST: this drop does not
	// apply.
	input := "-A INPUT -p tcp -m addrtype --dst-type UNICAST -j DROP\n"
	if r := oneRow(t, cornerInput("tcp", 8080, 80, "", input, false)); r.Exposure != report.Public {
		t.Errorf("dst-type UNICAST on IPv4 INPUT: %+v", r)
	}
	// Control: LOCAL does apply.
	local := "-A INPUT -p tcp -m addrtype --dst-type LOCAL -j DROP\n"
	if r := oneRow(t, cornerInput("tcp", 8080, 80, "", local, false)); r.Exposure != report.Closed {
		t.Errorf("dst-type LOCAL on IPv4 INPUT: %+v", r)
	}
}

func TestCornerLoopbackBound(t *testing.T) {
	lo := func(userRules, raw string) Input {
		in := cornerInput("tcp", 8083, 80, userRules, "", true)
		in.Snapshot.Containers[0].Ports[0].HostIP = netip.MustParseAddr("127.0.0.1")
		in.Families[0].Save += raw
		return in
	}
	// Docker 20.10 alone: a neighbour's packet for 127.0.0.1:8083 is
	// DNATed and Docker's FORWARD rules accept it.
	r := oneRow(t, lo("", ""))
	if r.Exposure != report.Restricted || !r.Beyond || r.Intended || !strings.Contains(r.Reason, "same link") {
		t.Errorf("Docker 20.10, loopback-bound: %+v", r)
	}
	// Docker 28's raw drop.
	raw := `*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8083 -j DROP
COMMIT
`
	if r := oneRow(t, lo("", raw)); r.Exposure != report.Local || r.Beyond {
		t.Errorf("with Docker 28's raw drop: %+v", r)
	}
	// dockmoat's default deny (its policy never opens a loopback binding).
	if r := oneRow(t, lo("-A DOCKER-USER -o docker0 -m conntrack --ctstate DNAT -j DROP\n", "")); r.Exposure != report.Local || r.Beyond {
		t.Errorf("dropped on FORWARD: %+v", r)
	}
	// No DNAT for it (docker-proxy only): the kernel refuses 127/8 from outside.
	in := lo("", "")
	in.Families[0].Save = strings.Split(in.Families[0].Save, "*nat")[0]
	if r := oneRow(t, in); r.Exposure != report.Local {
		t.Errorf("no DNAT: %+v", r)
	}
}

func TestExplain(t *testing.T) {
	recipe := `-A DOCKER-USER -p udp -m udp --sport 53 --dport 1024:65535 -j RETURN
-A DOCKER-USER -d 172.16.0.0/12 -p udp -m udp --dport 0:32767 -j DROP
`
	in := cornerInput("udp", 5000, 5000, recipe, "", true)
	target, err := report.ParseTarget("5000/udp")
	if err != nil {
		t.Fatal(err)
	}
	in.Explain = &target
	r := oneRow(t, in)
	if !strings.Contains(r.Reason, "rule '-p udp -m udp --sport 53 --dport 1024:65535 -j RETURN' in DOCKER-USER lets it through") {
		t.Errorf("reason does not name the rule: %s", r.Reason)
	}
	if len(r.Paths) != 1 || r.Paths[0].Source != "anyone" || r.Paths[0].Result != "accept" || r.Paths[0].Needs != "source port 53" {
		t.Fatalf("paths: %+v", r.Paths)
	}
	var chains []string
	for _, s := range r.Paths[0].Steps {
		chains = append(chains, s.Chain)
	}
	if got := strings.Join(chains, " "); got != "FORWARD DOCKER-USER FORWARD DOCKER" {
		t.Errorf("path chains %q, want FORWARD DOCKER-USER FORWARD DOCKER: %+v", got, r.Paths[0].Steps)
	}
	if !strings.Contains(r.Fix, "--sport 53") || !strings.Contains(r.Fix, "DOCKER-USER") {
		t.Errorf("fix: %q", r.Fix)
	}
	var b strings.Builder
	if err := report.WriteExplain(&b, []report.Row{r}); err != nil || !strings.Contains(b.String(), "from anyone, sending source port 53: accept") {
		t.Errorf("table:\n%s", b.String())
	}
	// Without --explain: no paths.
	in.Explain = nil
	if r := oneRow(t, in); r.Paths != nil || r.Fix != "" {
		t.Errorf("paths without --explain: %+v", r)
	}
	for _, bad := range []string{"", "0", "80/icmp", "host:80/tcp", "70000"} {
		if _, err := report.ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
	if tg, err := report.ParseTarget("[2001:db8::1]:8080/tcp"); err != nil || tg.Port != 8080 || tg.HostIP.String() != "2001:db8::1" {
		t.Errorf("v6 target: %+v %v", tg, err)
	}
}

// TestExplainPlainDocker: nothing but Docker; the fix is to run dockmoat,
// not Docker's own RETURN in DOCKER-USER.
func TestExplainPlainDocker(t *testing.T) {
	in := cornerInput("tcp", 8080, 80, "", "", true)
	target, _ := report.ParseTarget("8080")
	in.Explain = &target
	r := oneRow(t, in)
	if r.Exposure != report.Public || !strings.HasPrefix(r.Fix, "dockmoat is not protecting this host") {
		t.Errorf("plain Docker: %+v", r)
	}
}

// TestCornerLoopbackFromASourceClass: a neighbour in a source range the
// rules let through reaches a loopback-bound port even when "anyone" is
// dropped.
func TestCornerLoopbackFromASourceClass(t *testing.T) {
	in := cornerInput("tcp", 8083, 80, `-A DOCKER-USER -p tcp -m iprange --src-range 203.0.113.8-203.0.113.12 -j RETURN
-A DOCKER-USER -o docker0 -p tcp -j DROP
`, "", true)
	in.Snapshot.Containers[0].Ports[0].HostIP = netip.MustParseAddr("127.0.0.1")
	r := oneRow(t, in)
	if r.Exposure != report.Restricted || len(r.Sources) != 1 || r.Sources[0] != "203.0.113.8-203.0.113.12 on the same link" {
		t.Errorf("loopback from a range: %+v", r)
	}
}

// TestExplainGoldenIPT: `--explain` on the iptables-save the test bed
// printed (TestAudit, Docker 29 with ufw, dockmoat running) for a closed,
// an open and a restricted port, compared with
// testdata/explain-iptables-docker29.golden (-update rewrites it). The
// ipsets, read over netlink in the bed, are the ones the policy wants.
func TestExplainGoldenIPT(t *testing.T) {
	save, err := os.ReadFile("testdata/iptables-docker29-dockmoat.save")
	if err != nil {
		t.Fatal(err)
	}
	ctr := func(name, ip string, labels map[string]string, ports ...rules.PortBinding) rules.Container {
		return rules.Container{Name: name, Labels: labels, Ports: ports, Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr(ip)}}}
	}
	pb := func(host, c uint16, proto, ip string) rules.PortBinding {
		return rules.PortBinding{HostIP: netip.MustParseAddr(ip), HostPort: host, ContainerPort: c, Proto: proto}
	}
	snap := rules.Snapshot{Bridges: []string{"docker0"}, NetworkBridges: map[string]string{"bridge": "docker0"}, Containers: []rules.Container{
		ctr("pub", "172.30.0.2", nil, pb(8080, 80, "tcp", "0.0.0.0")),
		ctr("lbl", "172.30.0.3", map[string]string{"dockmoat.allow": "8081"}, pb(8081, 80, "tcp", "0.0.0.0")),
		ctr("rst", "172.30.0.4", map[string]string{"dockmoat.allow": "8082", "dockmoat.from": "203.0.113.10"}, pb(8082, 80, "tcp", "0.0.0.0")),
		ctr("dns", "172.30.0.5", map[string]string{"dockmoat.allow": "8053/udp"}, pb(8053, 53, "udp", "0.0.0.0"), pb(8054, 54, "udp", "0.0.0.0")),
		ctr("loc", "172.30.0.6", map[string]string{"dockmoat.allow": "*"}, pb(8083, 80, "tcp", "127.0.0.1")),
		ctr("ufwr", "172.30.0.7", nil, pb(8084, 7000, "tcp", "0.0.0.0")),
		ctr("hiudp", "172.30.0.8", nil, pb(8090, 5000, "udp", "0.0.0.0")),
	}}
	cfg := config.Default()
	sets := map[string][]setelem.Elem{}
	for _, s := range policy.Build(cfg, snap, rules.IPv4, policy.Options{Sets: true}).Sets {
		sets[iptplan.SetName(s.Kind, s.Family)] = s.Sorted()
	}
	var b strings.Builder
	for _, target := range []string{"8080/tcp", "8081/tcp", "8082/tcp"} {
		tg, _ := report.ParseTarget(target)
		rep := Run(Input{Config: cfg, Snapshot: snap, Explain: &tg,
			Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: string(save), Sets: sets}},
			Ifaces:   []Iface{{Name: "dmvh", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}})
		if !rep.Protected {
			t.Errorf("the bed's ruleset should be dockmoat's, intact: %v", rep.Findings)
		}
		fmt.Fprintf(&b, "$ dockmoat audit --explain %s\n", target)
		var rows []report.Row
		for _, r := range rep.Rows {
			if tg.Names(r) {
				rows = append(rows, r)
			}
		}
		if len(rows) != 1 {
			t.Fatalf("%s: rows %+v", target, rows)
		}
		if err := report.WriteExplain(&b, rows); err != nil {
			t.Fatal(err)
		}
		b.WriteString("\n")
	}
	golden := "testdata/explain-iptables-docker29.golden"
	if *update {
		_ = os.WriteFile(golden, []byte(b.String()), 0o644)
	}
	want, _ := os.ReadFile(golden)
	if b.String() != string(want) {
		t.Errorf("explain differs from %s:\n%s", golden, b.String())
	}
}
