package audit

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// Swarm's own ports are flagged where a first packet from outside the
// cluster's nodes reaches them through INPUT: 2377 on managers only; a
// rule letting only the nodes in (the fix the finding names) clears it.
func TestSwarmPortsFlagged(t *testing.T) {
	open := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
	fenced := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A INPUT -s 198.51.100.1/32 -p tcp -m tcp --dport 2377 -j ACCEPT\n" +
		"-A INPUT -s 198.51.100.2/32 -p tcp -m tcp --dport 2377 -j ACCEPT\n" +
		"-A INPUT -p tcp -m tcp --dport 2377 -j DROP\nCOMMIT\n"
	peers := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")}
	run := func(save string, node *rules.SwarmNode) []string {
		rep := Run(Input{Config: config.Default(), Snapshot: rules.Snapshot{Swarm: node},
			Families: []FamilyState{{Family: rules.IPv4, Tool: "iptables-nft", Save: save}},
			Ifaces:   []Iface{{Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}}})
		var got []string
		for _, f := range rep.Findings {
			if strings.HasPrefix(f, "Swarm port ") {
				got = append(got, strings.Fields(f)[2])
			}
		}
		return got
	}
	manager := &rules.SwarmNode{Manager: true, Peers: peers}
	if got := strings.Join(run(open, manager), " "); got != "2377/tcp 7946/tcp 7946/udp 4789/udp" {
		t.Errorf("open manager: %s", got)
	}
	if got := strings.Join(run(open, &rules.SwarmNode{Peers: peers}), " "); got != "7946/tcp 7946/udp 4789/udp" {
		t.Errorf("open worker: %s", got)
	}
	if got := strings.Join(run(fenced, manager), " "); got != "7946/tcp 7946/udp 4789/udp" {
		t.Errorf("2377 fenced to the nodes: %s", got)
	}
	if got := run(open, nil); len(got) != 0 {
		t.Errorf("off Swarm: %v", got)
	}
}
