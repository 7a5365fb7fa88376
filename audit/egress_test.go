package audit

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// egressSave is Docker 20.10's filter table for docker0, with dockmoat's
// chains (rendered by the ipt backend) when withDockmoat.
func egressSave(cfg config.Config, snap rules.Snapshot, withDockmoat bool) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n")
	var rs iptplan.Ruleset
	if withDockmoat {
		rs = iptplan.Render(cfg, policy.Build(cfg, snap, rules.IPv4, policy.Options{}), iptplan.RenderOptions{})
		for _, ch := range rs.Chains {
			b.WriteString(":" + ch.Name + " - [0:0]\n")
		}
		b.WriteString("-A INPUT " + strings.Join(iptplan.InputHookSpec(), " ") + "\n")
		b.WriteString("-A DOCKER-USER " + strings.Join(iptplan.HookSpec(), " ") + "\n")
	}
	b.WriteString("-A FORWARD -j DOCKER-USER\n-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -o docker0 -j DOCKER\n-A FORWARD -i docker0 ! -o docker0 -j ACCEPT\n-A FORWARD -i docker0 -o docker0 -j ACCEPT\n-A DOCKER-USER -j RETURN\n")
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			b.WriteString(iptplan.RuleLine(ch.Name, r) + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// TestAuditEgress: a deny container's first packet to a refused
// destination, out and to the host, is dropped by dockmoat's rules; the
// same container on plain Docker is reported open (beyond policy).
func TestAuditEgress(t *testing.T) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}, NetworkBridges: map[string]string{"bridge": "docker0"},
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		Containers: []rules.Container{{Name: "worker", Labels: map[string]string{"dockmoat.egress": "deny", "dockmoat.egress.allow": "192.0.2.123:443/tcp"},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}}}}
	cfg := config.Default()
	in := func(withDockmoat bool) Input {
		return Input{Config: cfg, Snapshot: snap,
			Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: egressSave(cfg, snap, withDockmoat)}},
			Ifaces:   []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}}}
	}
	rep := Run(in(true))
	if len(rep.Egress) != 1 {
		t.Fatalf("want one egress row, got %+v", rep.Egress)
	}
	e := rep.Egress[0]
	if e.Beyond || !strings.HasPrefix(e.Outside, "refused (192.0.2.123:80/tcp: DOCKMOAT-EGRESS)") || !strings.HasPrefix(e.Host, "refused (203.0.113.1:80/tcp: DOCKMOAT-EGRESS)") {
		t.Errorf("with dockmoat: %+v", e)
	}
	if rep.Beyond() {
		t.Error("enforced egress made the report beyond policy")
	}
	var b strings.Builder
	if err := report.WriteTable(&b, rep); err != nil || !strings.Contains(b.String(), "worker (ipv4): enforced") || !strings.Contains(b.String(), "dns: 192.0.2.53") {
		t.Errorf("table:\n%s", b.String())
	}
	// The control: the same container on plain Docker gets out.
	plain := Run(in(false))
	if len(plain.Egress) != 1 || !plain.Egress[0].Beyond || !strings.HasPrefix(plain.Egress[0].Outside, "OPEN") || !plain.Beyond() {
		t.Errorf("without dockmoat: %+v", plain.Egress)
	}
}
