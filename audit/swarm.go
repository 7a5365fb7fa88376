package audit

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/rules"
)

// swarmPort is one of Swarm's own ports: only the cluster's nodes need
// them, and Docker opens none of them in the firewall (nor closes them).
type swarmPort struct {
	port        uint16
	proto, what string
	managerOnly bool
}

var swarmPorts = []swarmPort{
	{2377, "tcp", "cluster management", true},
	{7946, "tcp", "node gossip", false},
	{7946, "udp", "node gossip", false},
	{4789, "udp", "overlay VXLAN, unauthenticated: anyone who reaches it can inject packets into overlay networks", false},
}

// swarmFindings flags Swarm's own ports that a first packet from outside
// the cluster's addresses reaches through INPUT, on a Swarm node: 2377 on
// managers (the only nodes serving it), 7946 and 4789 on every node.
func swarmFindings(in Input, fams map[rules.Family]*famCtx) []string {
	node := in.Snapshot.Swarm
	if node == nil {
		return nil
	}
	var out []string
	for _, sp := range swarmPorts {
		if sp.managerOnly && !node.Manager {
			continue
		}
		for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
			fc := fams[fam]
			if fc == nil || fc.rs == nil {
				continue
			}
			if msg, ok := swarmPortReachable(in, fc, fam, node.Peers, sp); ok {
				out = append(out, msg)
				break // one finding per port
			}
		}
	}
	return out
}

// swarmPortReachable tries a first packet from every source class that
// is not a node of the cluster, to every outside address of the family.
func swarmPortReachable(in Input, fc *famCtx, fam rules.Family, peers []netip.Addr, sp swarmPort) (string, bool) {
	for _, src := range append([]netip.Addr{fc.generic}, fc.reps...) {
		if !src.IsValid() || slices.Contains(peers, src) {
			continue
		}
		for _, ifc := range in.Ifaces {
			for _, addr := range ifc.Addrs {
				if !fam.Has(addr) {
					continue
				}
				p := verdict.Packet{Src: src, Dst: addr, Proto: sp.proto, SPort: 40000, DPort: sp.port, In: ifc.Name,
					States: []string{"NEW"}, DstLocal: true}
				if v := fc.rs.Eval("input", p); v.Result == verdict.Accept {
					by := "the " + v.Chain + " policy"
					if v.Rule != "" && !strings.HasPrefix(v.Rule, "policy") {
						by = fmt.Sprintf("rule '%s' in %s", v.Rule, v.Chain)
					}
					return fmt.Sprintf("Swarm port %d/%s (%s) is reachable from outside the cluster: from %s to %s, accepted by %s; "+
						"allow it from the nodes' addresses only (%s)", sp.port, sp.proto, sp.what, sourceName(fc, src), addr, by, addrList(peers)), true
				}
			}
		}
	}
	return "", false
}

func sourceName(fc *famCtx, src netip.Addr) string {
	if src == fc.generic {
		return "anyone"
	}
	return src.String()
}

func addrList(addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return "the cluster's nodes"
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
