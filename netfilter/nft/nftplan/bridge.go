package nftplan

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// BridgeTable is table bridge dockmoat: it binds each egress-deny
// container to its own addresses at the port of the bridge its veth is
// (rules.EgressFrom). The egress rules of either backend read a packet's
// source address, which a container with CAP_NET_RAW (Docker's default)
// chooses; here, before any routing, a frame from a deny container's
// veth is dropped unless it carries one of that container's addresses
// (IPv4, IPv6), or is neighbour discovery or MLD from a link-local or
// unspecified address (whose hop limit keeps it on the link: the egress
// chains check it), or ARP. So a deny container can neither leave from a
// neighbour's address nor reach the host through a link-local one. A
// flush of this table lets spoofed frames reach the egress rules again;
// those still refuse the container's own address.
const (
	BridgeFamily = "bridge"
	BridgeName   = "dockmoat"
	// BridgeKey prefixes the table's chains in listings and plans.
	BridgeKey = BridgeFamily + " " + BridgeName
	// bridgePriority: bridge filter, before br_netfilter's hooks.
	bridgePriority = "-200"
)

// port is one deny container's veth and the addresses it may send from.
type port struct {
	container, iface string
	v4, v6           []netip.Addr
}

// BridgeChains renders the bridge table's chain from both families'
// egress policies (none when no deny container's veth is known, or while
// dockmoat is disabled).
func BridgeChains(cfg config.Config, egress [2][]rules.Egress) []Chain {
	ports := DenyPorts(egress)
	if cfg.Disabled || len(ports) == 0 {
		return nil
	}
	ch := Chain{Name: "prerouting", Base: "type filter hook prerouting priority " + bridgePriority + "; policy accept;"}
	for _, p := range ports {
		in := "iifname " + strconv.Quote(p.iface) + " "
		who := "egress of " + p.container + ": "
		ch.add(who+"only IP and ARP", in+"ether type != { ip, ip6, arp } drop")
		if len(p.v4) > 0 {
			ch.add(who+"only its own IPv4 address", in+"ip saddr != "+addrSet(p.v4)+" drop")
		} else {
			ch.add(who+"no IPv4 address", in+"ether type ip drop")
		}
		own6 := append(slices.Clone(p.v6), netip.MustParseAddr("::"))
		ch.add(who+"only its own IPv6 address or link-local", in+"ip6 saddr != "+addrSet(own6, "fe80::/10")+" drop")
		ll := in + "ip6 saddr != " + addrSet(p.v6) + " "
		if len(p.v6) == 0 {
			ll = in + "ether type ip6 "
		}
		ch.add(who+"link-local: neighbour discovery only", ll+"meta l4proto != ipv6-icmp drop")
		ch.add(who+"link-local: neighbour discovery only", ll+"icmpv6 type != "+ndTypes()+" drop")
	}
	return []Chain{ch}
}

// DenyPorts gathers the deny containers' veths from both families'
// policies, in a stable order.
func DenyPorts(egress [2][]rules.Egress) []port {
	byIface := map[string]*port{}
	for i := range egress {
		for _, e := range egress[i] {
			for _, f := range e.From {
				if f.Iface == "" {
					continue
				}
				p := byIface[f.Iface]
				if p == nil {
					p = &port{container: e.Container, iface: f.Iface}
					byIface[f.Iface] = p
				}
				if f.Addr.Is4() {
					p.v4 = append(p.v4, f.Addr)
				} else {
					p.v6 = append(p.v6, f.Addr)
				}
			}
		}
	}
	var out []port
	for _, p := range byIface {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b port) int { return cmp.Compare(a.iface, b.iface) })
	return out
}

// addrSet writes addresses (and prefixes) as an anonymous nft set.
func addrSet(addrs []netip.Addr, prefixes ...string) string {
	var parts []string
	for _, a := range addrs {
		parts = append(parts, a.String())
	}
	return "{ " + strings.Join(append(parts, prefixes...), ", ") + " }"
}

// ndTypes are the ICMPv6 types of rules.NeighbourDiscovery, as a set.
func ndTypes() string {
	var t []string
	for _, nd := range rules.NeighbourDiscovery {
		t = append(t, strconv.Itoa(nd.Type))
	}
	return "{ " + strings.Join(t, ", ") + " }"
}
