package ipteval

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/setelem"
)

// docker20UFW is a Docker 20.10 filter table with ufw's forward chains,
// shortened (package audit's tests read it too).
func docker20UFW(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../testdata/docker20-ufw.save")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func pkt(src string) verdict.Packet {
	return verdict.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("172.17.0.2"), Proto: "tcp", SPort: 40000, DPort: 80,
		In: "eth0", Out: "docker0", States: []string{"NEW", "DNAT"}, OrigDst: netip.MustParseAddr("203.0.113.1"), OrigDstPort: 8080}
}

func TestEvalDockerAcceptsBeforeUFW(t *testing.T) {
	tb := iptsave.Parse([]byte(docker20UFW(t)))["filter"]
	v := Eval(tb, "FORWARD", pkt("198.51.100.1"))
	if v.Result != verdict.Accept || v.Chain != "DOCKER" {
		t.Fatalf("want Docker's ACCEPT, got %+v", v)
	}
}

func TestEvalMatches(t *testing.T) {
	cases := []struct {
		rule string
		want matchResult
	}{
		{"-s 198.51.100.0/24 -j DROP", matchYes},
		{"! -s 198.51.100.0/24 -j DROP", matchNo},
		{"-i eth+ -o docker0 -j DROP", matchYes},
		{"! -i docker0 -j DROP", matchYes},
		{"-p udp -j DROP", matchNo},
		{"-p tcp -m tcp --dport 70:90 -j DROP", matchYes},
		{"-p tcp -m multiport --dports 22,443,79:81 -j DROP", matchYes},
		{"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", matchNo},
		{"-m conntrack --ctstate NEW -j ACCEPT", matchYes},
		{"-m conntrack --ctstate DNAT --ctorigdstport 8080 --ctorigdst 203.0.113.1 -j RETURN", matchYes},
		{"-m conntrack --ctorigdstport 8081 -j RETURN", matchNo},
		{"-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT", matchYes},
		{"-p tcp -m tcp ! --syn -j DROP", matchNo},
		{"-m addrtype --dst-type LOCAL -j DROP", matchNo},
		{"-m recent --update --seconds 30 --hitcount 6 --name x --rsource -j DROP", matchNo},
		{`-m comment --comment "a b" -m limit --limit 3/min -j LOG --log-prefix "[x] "`, matchYes},
		{"-m set --match-set blocked src -j DROP", matchUnknown},
		{"-m mark --mark 0x1 -j ACCEPT", matchUnknown},
		{"-m iprange --src-range 198.51.100.0-198.51.100.9 -j DROP", matchYes},
		// dockmoat's own sets are read, so they evaluate.
		{"-m set --match-set OPEN dst,dst -m conntrack --ctstate DNAT -j RETURN", matchYes},
		{"-m set --match-set OTHERPORT dst,dst -j RETURN", matchNo},
		{"-m set --match-set FROM dst,dst,src -j RETURN", matchYes},
		{"-m set --match-set FROMOTHER dst,dst,src -j RETURN", matchNo},
		{"-m set --match-set OPEN src,dst -j RETURN", matchUnknown},
	}
	elem := func(port uint16, src string) setelem.Elem {
		e := setelem.Elem{Addr: netip.MustParseAddr("172.17.0.2"), Proto: "tcp", Port: port}
		if src != "" {
			e.Src = netip.MustParsePrefix(src)
		}
		return e
	}
	sets := map[string][]setelem.Elem{
		"OPEN":      {elem(443, ""), elem(80, "")},
		"OTHERPORT": {elem(81, "")},
		"FROM":      {elem(80, "10.0.0.0/8"), elem(80, "198.51.100.0/24")},
		"FROMOTHER": {elem(80, "198.51.101.0/24")},
	}
	for _, tc := range cases {
		r := iptsave.Rule{Chain: "X", Raw: tc.rule, Args: iptsave.Tokenize(tc.rule)}
		if got, why := match(r, pkt("198.51.100.1"), sets); got != tc.want {
			t.Errorf("%s: got %v (%s), want %v", tc.rule, got, why, tc.want)
		}
	}
}

func TestEvalUnknownOnlyWhenItMatters(t *testing.T) {
	// An ipset match before a rule that drops anyway does not matter.
	harmless := "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m set --match-set bad src -j DROP\nCOMMIT\n"
	if v := Eval(iptsave.Parse([]byte(harmless))["filter"], "FORWARD", pkt("198.51.100.1")); v.Result != verdict.Drop {
		t.Errorf("harmless unknown: %+v", v)
	}
	decisive := "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m set --match-set good src -j ACCEPT\nCOMMIT\n"
	v := Eval(iptsave.Parse([]byte(decisive))["filter"], "FORWARD", pkt("198.51.100.1"))
	if v.Result != verdict.Unknown || !strings.Contains(v.Why, "-m set") {
		t.Errorf("decisive unknown: %+v", v)
	}
}

func TestEvalGotoAndReturn(t *testing.T) {
	tb := iptsave.Parse([]byte(`*filter
:FORWARD ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A FORWARD -g A
-A FORWARD -j DROP
-A A -j B
-A A -j RETURN
-A B -s 10.0.0.0/8 -j DROP
COMMIT
`))["filter"]
	// -g A then RETURN in A returns from FORWARD: its policy (ACCEPT) decides,
	// the DROP after the goto is never reached.
	if v := Eval(tb, "FORWARD", pkt("198.51.100.1")); v.Result != verdict.Accept || v.Rule != "policy ACCEPT" {
		t.Errorf("goto/return: %+v", v)
	}
	if v := Eval(tb, "FORWARD", pkt("10.1.2.3")); v.Result != verdict.Drop || v.Chain != "B" {
		t.Errorf("nested drop: %+v", v)
	}
}

// The ipset layout: a set hit goes to DOCKMOAT-PORTS, whose RETURN (reached
// by goto) ends INGRESS; a published port not listed there, or an address
// not in the set, ends in DOCKMOAT-DENY.
func TestEvalSetLayout(t *testing.T) {
	table := `*filter
:FORWARD ACCEPT [0:0]
:DOCKER-USER - [0:0]
:DOCKMOAT - [0:0]
:DOCKMOAT-INGRESS - [0:0]
:DOCKMOAT-PORTS - [0:0]
:DOCKMOAT-DENY - [0:0]
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -m comment --comment "dockmoat:hook" -j DOCKMOAT
-A DOCKER-USER -j RETURN
-A DOCKMOAT -o docker0 -j DOCKMOAT-INGRESS
-A DOCKMOAT-DENY -m comment --comment "dockmoat:1 default deny" -j DROP
-A DOCKMOAT-INGRESS -m set --match-set DOCKMOAT-OPEN-V4 dst,dst -m conntrack --ctstate DNAT -g DOCKMOAT-PORTS
-A DOCKMOAT-INGRESS -j DOCKMOAT-DENY
-A DOCKMOAT-PORTS -p tcp -m conntrack --ctorigdstport 8000:8080 -j RETURN
-A DOCKMOAT-PORTS -j DOCKMOAT-DENY
COMMIT
`
	tb := iptsave.Parse([]byte(table))["filter"]
	tb.Sets = map[string][]setelem.Elem{"DOCKMOAT-OPEN-V4": {{Addr: netip.MustParseAddr("172.17.0.2"), Proto: "tcp", Port: 80}}}
	if v := Eval(tb, "FORWARD", pkt("198.51.100.1")); v.Result != verdict.Accept || len(v.Returned) == 0 || v.Returned[0].Chain != "DOCKMOAT-PORTS" {
		t.Errorf("allowed: %+v", v)
	}
	other := pkt("198.51.100.1")
	other.OrigDstPort = 9800 // a new container on the address and port of an allowed one
	if v := Eval(tb, "FORWARD", other); v.Result != verdict.Drop || v.Chain != "DOCKMOAT-DENY" {
		t.Errorf("other published port: %+v", v)
	}
	tb.Sets["DOCKMOAT-OPEN-V4"] = nil
	if v := Eval(tb, "FORWARD", pkt("198.51.100.1")); v.Result != verdict.Drop {
		t.Errorf("not in the set: %+v", v)
	}
}

// TestEvalHashlimitAbove: a first packet is under the rate, so a drop
// "above" it does not apply; a plain --hashlimit-upto matches.
func TestEvalHashlimitAbove(t *testing.T) {
	tb := iptsave.Parse([]byte(`*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 80 -m hashlimit --hashlimit-above 10/sec --hashlimit-name x -j DROP
-A FORWARD -p tcp -m tcp --dport 81 -m hashlimit --hashlimit-upto 10/sec --hashlimit-name y -j DROP
COMMIT
`))["filter"]
	p := pkt("198.51.100.1")
	if v := Eval(tb, "FORWARD", p); v.Result != verdict.Accept {
		t.Errorf("hashlimit-above: %+v", v)
	}
	p.DPort = 81
	if v := Eval(tb, "FORWARD", p); v.Result != verdict.Drop {
		t.Errorf("hashlimit-upto: %+v", v)
	}
}

// dockmoat's pass mark is followed through the rules: set by MARK in the
// chain that lets a packet through, checked after the hook. With the
// chains intact an allowed packet passes the check; with the deciding
// chain flushed, it is unmarked and the check drops it. Another bit of
// the mark is not known (a mangle rule may have set it).
func TestEvalPassMark(t *testing.T) {
	table := func(ingress string) *iptsave.Table {
		return iptsave.Parse([]byte(`*filter
:FORWARD ACCEPT [0:0]
:DOCKER-USER - [0:0]
:DOCKMOAT - [0:0]
:DOCKMOAT-INGRESS - [0:0]
:DOCKMOAT-PASS - [0:0]
:DOCKMOAT-CHECK - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j ACCEPT
-A DOCKER-USER -j DOCKMOAT
-A DOCKER-USER -m conntrack --ctstate NEW -j DOCKMOAT-CHECK
-A DOCKMOAT -o docker0 -g DOCKMOAT-INGRESS
-A DOCKMOAT -g DOCKMOAT-PASS
` + ingress + `-A DOCKMOAT-PASS -j MARK --set-xmark 0x20000000/0x20000000
-A DOCKMOAT-CHECK -m conntrack --ctstate DNAT -m mark ! --mark 0x20000000/0x20000000 -j DROP
-A DOCKMOAT-CHECK -j MARK --set-xmark 0x0/0x20000000
COMMIT
`))["filter"]
	}
	intact := table("-A DOCKMOAT-INGRESS -s 198.51.100.0/24 -g DOCKMOAT-PASS\n-A DOCKMOAT-INGRESS -j DROP\n")
	if v := Eval(intact, "FORWARD", pkt("198.51.100.1")); v.Result != verdict.Accept {
		t.Errorf("allowed, intact: %+v", v)
	}
	if v := Eval(intact, "FORWARD", pkt("203.0.113.9")); v.Result != verdict.Drop || v.Chain != "DOCKMOAT-INGRESS" {
		t.Errorf("refused, intact: %+v", v)
	}
	flushed := table("")
	for _, src := range []string{"198.51.100.1", "203.0.113.9"} {
		if v := Eval(flushed, "FORWARD", pkt(src)); v.Result != verdict.Drop || v.Chain != "DOCKMOAT-CHECK" {
			t.Errorf("%s, INGRESS flushed: %+v", src, v)
		}
	}
	other := iptsave.Parse([]byte("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m mark --mark 0x4000/0x4000 -j DROP\nCOMMIT\n"))["filter"]
	if v := Eval(other, "FORWARD", pkt("198.51.100.1")); v.Result != verdict.Unknown {
		t.Errorf("someone else's mark bit is not known: %+v", v)
	}
}

// IPv6 calls a global address UNICAST, local or not: -m addrtype
// --dst-type UNICAST applies there (TestAudit/*/DstTypeUnicastOnInput
// proves it on the kernel); IPv4 calls a local address LOCAL.
func TestAddrTypeUnicast(t *testing.T) {
	if !addrType("UNICAST", true, true) || addrType("UNICAST", true, false) {
		t.Error("addrtype UNICAST: IPv6 local address is UNICAST, IPv4 one is not")
	}
}

// The ban set (sources alone): a banned source is dropped first, another
// goes on; a ban set not read is unknown, not a guess.
func TestEvalBanSet(t *testing.T) {
	table := `*filter
:FORWARD ACCEPT [0:0]
:DOCKER-USER - [0:0]
:DOCKMOAT - [0:0]
:DOCKMOAT-INGRESS - [0:0]
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -m comment --comment "dockmoat:hook" -j DOCKMOAT
-A DOCKER-USER -j RETURN
-A DOCKMOAT -o docker0 -j DOCKMOAT-INGRESS
-A DOCKMOAT-INGRESS -m set --match-set dockmoat-ban4 src -m conntrack --ctstate DNAT -m comment --comment "dockmoat:1 banned source" -j DROP
-A DOCKMOAT-INGRESS -j RETURN
COMMIT
`
	tb := iptsave.Parse([]byte(table))["filter"]
	tb.Sets = map[string][]setelem.Elem{"dockmoat-ban4": {{Src: netip.MustParsePrefix("203.0.113.0/24")}}}
	if v := Eval(tb, "FORWARD", pkt("203.0.113.7")); v.Result != verdict.Drop || !strings.Contains(v.Rule, "banned") {
		t.Errorf("banned: %+v", v)
	}
	if v := Eval(tb, "FORWARD", pkt("198.51.100.1")); v.Result != verdict.Accept {
		t.Errorf("not banned: %+v", v)
	}
	tb.Sets = nil
	if v := Eval(tb, "FORWARD", pkt("203.0.113.7")); v.Result != verdict.Unknown {
		t.Errorf("ban set not read: %+v", v)
	}
}
