package audit

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// loadLive reads an nft -j listing of testdata.
func loadLive(t *testing.T, name string) *nftjson.Ruleset {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	live, err := nftjson.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return live
}

// TestRunNFT: the report from a whole nftables ruleset, through the same
// rows, reasons and explain as iptables.
func TestRunNFT(t *testing.T) {
	live := loadLive(t, "nft-handmade.json")
	snap := rules.Snapshot{Bridges: []string{"docker0"}, NetworkBridges: map[string]string{"bridge": "docker0"},
		Containers: []rules.Container{{Name: "web", Ports: []rules.PortBinding{{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}}}}
	target, _ := report.ParseTarget("8080/tcp")
	rep := Run(Input{Config: config.Default(), Snapshot: snap, NFT: live, Explain: &target,
		Ifaces: []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}})
	if len(rep.Rows) != 1 {
		t.Fatalf("rows %+v", rep.Rows)
	}
	r := rep.Rows[0]
	if r.Exposure != report.Public || !r.Beyond || !strings.Contains(r.Reason, "no dockmoat protection installed") {
		t.Errorf("row %+v", r)
	}
	// 10.0.0.0/8 and the anonymous set's addresses are source classes.
	// (Sources whose packets go the same way share one path.)
	if len(r.Paths) != 1 || r.Paths[0].Source != "anyone, 10.0.0.0/8, 192.0.2.1/32, 198.51.100.0/24" || !strings.HasPrefix(r.Fix, "dockmoat is not protecting this host") {
		t.Errorf("paths %+v fix %q", r.Paths, r.Fix)
	}
	last := r.Paths[0].Steps[len(r.Paths[0].Steps)-1]
	if last.Chain != "ip docker-bridges/filter-forward-in__docker0" || !strings.Contains(last.Rule, "tcp dport 80 accept") {
		t.Errorf("last step %+v", last)
	}
}

// The rulesets below are what `nft -j list ruleset` printed in the test
// bed (TestNFTBackend, Docker 29 with --firewall-backend=nftables): with
// dockmoat running (docker29Snapshot), and after a dockerd restart and
// `dockmoat uninstall` (plainSnapshot: the containers that restarted, with
// their new addresses).
func docker29Snapshot() rules.Snapshot {
	return snapshotOf(map[string]string{"plain": "172.30.0.2", "web": "172.30.0.3"}, true)
}

func plainSnapshot() rules.Snapshot {
	return snapshotOf(map[string]string{"plain": "172.30.0.3", "web": "172.30.0.2"}, false)
}

func snapshotOf(ips map[string]string, all bool) rules.Snapshot {
	ctr := func(name, ip string, labels map[string]string, ports ...rules.PortBinding) rules.Container {
		for _, b := range slices.Clone(ports) { // Docker lists 0.0.0.0 and ::
			b.HostIP = netip.IPv6Unspecified()
			ports = append(ports, b)
		}
		return rules.Container{Name: name, Labels: labels, Ports: ports,
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr(ip)}}}
	}
	pb := func(host, ctr uint16, proto string) rules.PortBinding {
		return rules.PortBinding{HostIP: netip.IPv4Unspecified(), HostPort: host, ContainerPort: ctr, Proto: proto}
	}
	snap := rules.Snapshot{Bridges: []string{"docker0"}, NetworkBridges: map[string]string{"bridge": "docker0"}, Containers: []rules.Container{
		ctr("plain", ips["plain"], nil, pb(8080, 80, "tcp"), pb(8053, 53, "udp")),
		ctr("web", ips["web"], map[string]string{"dockmoat.allow": "8081"}, pb(8081, 80, "tcp"), pb(8082, 81, "tcp")),
	}}
	if all {
		snap.Containers = append(snap.Containers,
			ctr("restricted", "172.30.0.4", map[string]string{"dockmoat.allow": "9300", "dockmoat.from": "203.0.113.10"}, pb(9300, 80, "tcp")),
			ctr("ranged", "172.30.0.5", map[string]string{"dockmoat.allow": "9100-9101, 9153/udp"}, pb(9100, 9100, "tcp"), pb(9101, 9101, "tcp"), pb(9102, 9102, "tcp"), pb(9153, 53, "udp")))
	}
	return snap
}

func TestRunNFTDocker29(t *testing.T) {
	ifaces := []Iface{{Name: "dmvh", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8:1::1")}}}
	find := func(rep report.Report, name string, port uint16, v6 bool) report.Row {
		for _, r := range rep.Rows {
			if r.Container == name && r.HostPort == port && strings.Contains(r.HostIP, ":") == v6 {
				return r
			}
		}
		t.Fatalf("no row %s %d v6=%v", name, port, v6)
		return report.Row{}
	}
	rep := Run(Input{Config: config.Default(), Snapshot: docker29Snapshot(), NFT: loadLive(t, "nft-docker29-dockmoat.json"), Ifaces: ifaces})
	for _, w := range []struct {
		name string
		port uint16
		v6   bool
		exp  report.Exposure
	}{
		{"plain", 8080, false, report.Closed}, {"plain", 8053, false, report.Closed}, {"web", 8081, false, report.Public}, {"web", 8082, false, report.Closed},
		{"restricted", 9300, false, report.Restricted}, {"ranged", 9100, false, report.Public}, {"ranged", 9102, false, report.Closed}, {"ranged", 9153, false, report.Public},
		{"plain", 8080, true, report.Closed}, {"web", 8081, true, report.Public}, {"restricted", 9300, true, report.Closed},
	} {
		// (An IPv4-only dockmoat.from closes the port over IPv6; audit
		// calls that "not intended" on both backends.)
		if r := find(rep, w.name, w.port, w.v6); r.Exposure != w.exp || (!r.Intended && w.name != "restricted") || r.Beyond {
			t.Errorf("dockmoat running, %s %d (v6 %v): %+v, want %s as intended", w.name, w.port, w.v6, r, w.exp)
		}
	}
	if r := find(rep, "restricted", 9300, false); len(r.Sources) != 1 || r.Sources[0] != "203.0.113.10/32" {
		t.Errorf("restricted sources %v", r.Sources)
	}
	if rep.Beyond() {
		t.Error("nothing is beyond policy with dockmoat running")
	}
	// After uninstall, Docker alone: everything published is public.
	rep = Run(Input{Config: config.Default(), Snapshot: plainSnapshot(), NFT: loadLive(t, "nft-docker29-plain.json"), Ifaces: ifaces})
	if r := find(rep, "plain", 8080, false); r.Exposure != report.Public || !r.Beyond || !strings.HasPrefix(r.Reason, "published on 0.0.0.0; no dockmoat protection installed") {
		t.Errorf("without dockmoat, plain 8080: %+v", r)
	}
	if r := find(rep, "plain", 8080, true); r.Exposure != report.Public || !r.Beyond {
		t.Errorf("without dockmoat, plain 8080 over IPv6: %+v", r)
	}
}

// TestExplainGolden: `--explain` on the rulesets of the test bed (Docker
// 29, nftables backend) for a closed, an open and a restricted port with
// dockmoat running, and a port without dockmoat, compared with
// testdata/explain-docker29.golden (go test ./audit -run
// TestExplainGolden -update rewrites it).
func TestExplainGolden(t *testing.T) {
	ifaces := []Iface{{Name: "dmvh", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}
	var b strings.Builder
	for _, c := range []struct {
		fixture, target string
		snap            rules.Snapshot
	}{
		{"nft-docker29-dockmoat.json", "8080/tcp", docker29Snapshot()}, {"nft-docker29-dockmoat.json", "8081/tcp", docker29Snapshot()},
		{"nft-docker29-dockmoat.json", "9300/tcp", docker29Snapshot()}, {"nft-docker29-plain.json", "8080/tcp", plainSnapshot()},
	} {
		live, target := loadLive(t, c.fixture), c.target
		tg, err := report.ParseTarget(target)
		if err != nil {
			t.Fatal(err)
		}
		rep := Run(Input{Config: config.Default(), Snapshot: c.snap, NFT: live, Ifaces: ifaces, Explain: &tg})
		var rows []report.Row
		for _, r := range rep.Rows {
			if tg.Names(r) && !strings.Contains(r.HostIP, ":") {
				rows = append(rows, r)
			}
		}
		fmt.Fprintf(&b, "$ dockmoat audit --explain %s   # %s\n", target, c.fixture)
		if err := report.WriteExplain(&b, rows); err != nil {
			t.Fatal(err)
		}
		b.WriteString("\n")
	}
	const golden = "testdata/explain-docker29.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("explain differs from %s:\n%s", golden, b.String())
	}
}
