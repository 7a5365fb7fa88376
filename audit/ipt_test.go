package audit

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/audit/ipteval"
	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// docker20UFW is a Docker 20.10 filter table with ufw's forward chains,
// shortened (audit/ipteval's tests read it too).
func docker20UFW(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/docker20-ufw.save")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestRepresentatives(t *testing.T) {
	tb := iptsave.Parse([]byte("*filter\n:X - [0:0]\n-A X -s 10.0.0.0/8 -j RETURN\n-A X -s 10.1.0.0/16 -j DROP\n-A X -s 198.51.100.77/32 -j DROP\nCOMMIT\n"))["filter"]
	reps, generic := representatives(sortSpans(ipteval.Ruleset{Filter: tb}.Sources(rules.IPv4)), rules.IPv4)
	if generic.String() != "203.0.113.177" {
		t.Errorf("generic %s must avoid every named prefix", generic)
	}
	if len(reps) != 3 {
		t.Errorf("want one source per class (10/8 only, 10.1/16, the /32), got %v", reps)
	}
}

func TestRunNoDockmoat(t *testing.T) {
	save := docker20UFW(t) + `*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
`
	snap := dbSnap()
	rep := Run(Input{Config: config.Default(), Snapshot: snap,
		Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: save}},
		Ifaces:   []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}})
	if rep.Protected || !rep.Beyond() || len(rep.Rows) != 1 {
		t.Fatalf("report: %+v", rep)
	}
	r := rep.Rows[0]
	if r.Exposure != report.Public || r.Intended || !strings.Contains(r.Reason, "no dockmoat protection installed; UFW does not filter") {
		t.Errorf("row: %+v", r)
	}
	var b strings.Builder
	if err := report.WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if len(l) > 80 {
			t.Errorf("table line over 80 columns: %q", l)
		}
	}
}

// TestRunDisabled: with `dockmoat disable`, the bypass rule decides, and
// the report says so (reachable beyond policy, with the way back).
func TestRunDisabled(t *testing.T) {
	save := `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:DOCKMOAT - [0:0]
:DOCKMOAT-INGRESS - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-USER -m comment --comment "dockmoat:hook" -j DOCKMOAT
-A DOCKER-USER -j RETURN
-A DOCKMOAT -m comment --comment "dockmoat:0123456789abcdef ` + rules.DisabledDesc + `" -j RETURN
-A DOCKMOAT -o docker0 -m comment --comment "dockmoat:1 entering docker network docker0" -j DOCKMOAT-INGRESS
-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:2 default deny" -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
`
	snap := dbSnap()
	in := Input{Config: config.Default(), Snapshot: snap,
		Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: save}},
		Ifaces:   []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}}
	rep := Run(in)
	if !rep.Beyond() || len(rep.Rows) != 1 || rep.Rows[0].Exposure != report.Public || !strings.Contains(rep.Rows[0].Reason, "dockmoat enable") {
		t.Fatalf("disabled: %+v", rep.Rows)
	}
	// Control: the same table without the bypass is closed by dockmoat.
	in.Families[0].Save = strings.Replace(save, "-A DOCKMOAT -m comment --comment \"dockmoat:0123456789abcdef "+rules.DisabledDesc+"\" -j RETURN\n", "", 1)
	if rep := Run(in); rep.Beyond() || !strings.Contains(rep.Rows[0].Reason, "default deny") {
		t.Fatalf("enabled: %+v", rep.Rows)
	}
}

// In observe mode the refused port answers, and audit says why: dockmoat
// observes (the rules dockmoat renders, read back as iptables-save).
func TestRunObserving(t *testing.T) {
	snap := dbSnap()
	save := func(cfg config.Config) string { return savedRender(cfg, snap) }
	cfg := config.Default()
	cfg.Observe = true
	in := Input{Config: cfg, Snapshot: snap,
		Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: save(cfg)}},
		Ifaces:   []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}}
	rep := Run(in)
	if !rep.Beyond() || len(rep.Rows) != 1 || rep.Rows[0].Exposure != report.Public || !strings.Contains(rep.Rows[0].Reason, "OBSERVING") {
		t.Fatalf("observing: %+v", rep.Rows)
	}
	// Control: enforcing, the same port is closed by the default deny.
	in.Config.Observe = false
	in.Families[0].Save = save(in.Config)
	if rep := Run(in); rep.Beyond() || rep.Rows[0].Exposure != report.Closed || !strings.Contains(rep.Rows[0].Reason, "default deny") {
		t.Fatalf("enforcing: %+v", rep.Rows)
	}
}

// dbSnap is container db on docker0 at 172.17.0.2, publishing 8080 to its
// port 80/tcp, with no label: the tests' closed port.
func dbSnap() rules.Snapshot {
	return rules.Snapshot{Bridges: []string{"docker0"}, NetworkBridges: map[string]string{"bridge": "docker0"},
		Containers: []rules.Container{{Name: "db", Ports: []rules.PortBinding{{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}}}}
}

// savedRender is the iptables-save text of a host where Docker publishes
// 8080 to 172.17.0.2:80 and dockmoat installed its rendering of snap.
func savedRender(cfg config.Config, snap rules.Snapshot) string {
	rs := iptplan.Render(cfg, policy.Build(cfg, snap, rules.IPv4, policy.Options{}), iptplan.RenderOptions{})
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n")
	for _, ch := range rs.Chains {
		b.WriteString(":" + ch.Name + " - [0:0]\n")
	}
	b.WriteString("-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -j DOCKER\n" +
		"-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n" +
		"-A DOCKER-USER " + strings.Join(iptplan.HookSpec(), " ") + "\n-A DOCKER-USER " + strings.Join(iptplan.CheckSpec(), " ") + "\n-A DOCKER-USER -j RETURN\n")
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			b.WriteString(iptplan.RuleLine(ch.Name, r) + "\n")
		}
	}
	b.WriteString("COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\nCOMMIT\n")
	return b.String()
}

// A rate-limited port is as reachable as without the limit (a first
// packet is under it), and its row names the installed limit; the same
// policy over a table without the limit rule says it is missing.
func TestRunRateLimited(t *testing.T) {
	snap := dbSnap()
	snap.Containers[0].Labels = map[string]string{"dockmoat.allow": "8080", "dockmoat.limit.8080": "10/minute,burst=5"}
	cfg := config.Default()
	save := savedRender(cfg, snap)
	in := Input{Config: cfg, Snapshot: snap,
		Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: save}},
		Ifaces:   []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}}
	rep := Run(in)
	if len(rep.Rows) != 1 || rep.Rows[0].Exposure != report.Public || rep.Beyond() || rep.Rows[0].RateLimit != "10/minute,burst=5" ||
		!strings.Contains(rep.Rows[0].Reason, "beyond 10/minute,burst=5 per source are refused") {
		t.Fatalf("limited: %+v", rep.Rows)
	}
	var kept []string
	for _, l := range strings.Split(save, "\n") {
		if !strings.Contains(l, "hashlimit") {
			kept = append(kept, l)
		}
	}
	in.Families[0].Save = strings.Join(kept, "\n")
	if rep := Run(in); rep.Rows[0].RateLimit != "" || !strings.Contains(rep.Rows[0].Reason, "NOT installed") || rep.Protected {
		t.Fatalf("limit rule missing: %+v protected %v", rep.Rows, rep.Protected)
	}
}

// A port open to an interface (iface:wg*) is restricted to anyone on it,
// not public; intended, and beyond policy once the label moves elsewhere.
func TestRunIfaceSource(t *testing.T) {
	snap := dbSnap()
	snap.Containers[0].Labels = map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "iface:wg*"}
	cfg := config.Default()
	in := Input{Config: cfg, Snapshot: snap,
		Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: savedRender(cfg, snap)}},
		Ifaces: []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}},
			{Name: "wg0", Addrs: []netip.Addr{netip.MustParseAddr("10.8.0.1")}}}}
	rep := Run(in)
	if len(rep.Rows) != 1 {
		t.Fatalf("rows: %+v", rep.Rows)
	}
	row := rep.Rows[0]
	if row.Exposure != report.Restricted || !slices.Equal(row.Sources, []string{"anyone on wg0"}) || !row.Intended || row.Beyond {
		t.Errorf("open on wg*: %+v", row)
	}
	// The same rules with the label now naming tun0: reachable beyond it.
	in.Snapshot.Containers[0].Labels["dockmoat.from"] = "iface:tun0"
	if row := Run(in).Rows[0]; !row.Beyond || row.Intended {
		t.Errorf("stale wg* allow under an iface:tun0 label: %+v", row)
	}
	// Control: open to everyone, the port is public on both interfaces.
	snap.Containers[0].Labels = map[string]string{"dockmoat.allow": "8080"}
	in.Snapshot, in.Families[0].Save = snap, savedRender(cfg, snap)
	if row := Run(in).Rows[0]; row.Exposure != report.Public || row.Beyond {
		t.Errorf("open to all: %+v", row)
	}
}
