package reconciler

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// Flow is the part of a conntrack entry revocation looks at.
type Flow struct {
	Proto        string
	Src          netip.Addr // the client
	OrigDstPort  uint16     // the published port it connected to
	ReplySrc     netip.Addr // after DNAT: the container
	ReplySrcPort uint16     // the container port
}

// Conntrack deletes connection-tracking entries. Deleting an entry cuts
// the session: its next packet is NEW again and meets the default deny.
type Conntrack interface {
	Delete(fam rules.Family, match func(Flow) bool) (uint, error)
}

// NetlinkConntrack talks to the kernel's conntrack table over netlink.
type NetlinkConntrack struct{}

var protoNames = map[uint8]string{6: "tcp", 17: "udp", 132: "sctp"}

type flowFilter func(Flow) bool

func (f flowFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	src, _ := netip.AddrFromSlice(fl.Forward.SrcIP)
	rs, _ := netip.AddrFromSlice(fl.Reverse.SrcIP)
	return f(Flow{Proto: protoNames[fl.Forward.Protocol], Src: src.Unmap(), OrigDstPort: fl.Forward.DstPort,
		ReplySrc: rs.Unmap(), ReplySrcPort: fl.Reverse.SrcPort})
}

// Delete implements Conntrack.
func (NetlinkConntrack) Delete(fam rules.Family, match func(Flow) bool) (uint, error) {
	family := netlink.InetFamily(netlink.FAMILY_V4)
	if fam == rules.IPv6 {
		family = netlink.FAMILY_V6
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, flowFilter(match))
	if err != nil {
		return n, fmt.Errorf("deleting conntrack entries: %w", err)
	}
	return n, nil
}

// openBinding is what one published binding was open to after a pass.
type openBinding struct {
	addrs         []netip.Addr // the container's addresses in the family
	containerPort uint16
	hostPort      uint16
	proto         string
	sources       config.Sources
}

type openBindings []openBinding

// openAccess lists the open bindings of a plan.
func openAccess(p FamilyPlan, snap rules.Snapshot) openBindings {
	byName := make(map[string]*rules.Container, len(snap.Containers))
	for i := range snap.Containers {
		byName[snap.Containers[i].Name] = &snap.Containers[i]
	}
	var out openBindings
	for _, d := range p.Result.Decisions {
		c := byName[d.Container]
		if !d.Open || c == nil {
			continue
		}
		a := openBinding{containerPort: d.Binding.ContainerPort, hostPort: d.Binding.HostPort, proto: d.Binding.Proto, sources: d.Sources}
		for _, ep := range c.Endpoints {
			for _, ip := range []netip.Addr{ep.IPv4, ep.IPv6} {
				if p.Family.Has(ip) {
					a.addrs = append(a.addrs, ip.Unmap())
				}
			}
		}
		out = append(out, a)
	}
	return out
}

func (a openBinding) allows(src netip.Addr) bool {
	return a.sources.Any || slices.ContainsFunc(a.sources.Prefixes, func(p netip.Prefix) bool { return p.Contains(src) })
}

// revoked returns a matcher for the sessions that were allowed by before
// and are not by now: a binding that closed, a container gone or moved,
// sources narrowed. Trusted sources stay allowed.
func revoked(before, now openBindings, trusted []netip.Prefix) func(Flow) bool {
	type target struct {
		addr  netip.Addr
		cport uint16
		hport uint16
		proto string
	}
	was := map[target][]openBinding{}
	for _, a := range before {
		for _, ip := range a.addrs {
			t := target{ip, a.containerPort, a.hostPort, a.proto}
			was[t] = append(was[t], a)
		}
	}
	is := map[target][]openBinding{}
	for _, a := range now {
		for _, ip := range a.addrs {
			t := target{ip, a.containerPort, a.hostPort, a.proto}
			is[t] = append(is[t], a)
		}
	}
	return func(f Flow) bool {
		t := target{f.ReplySrc, f.ReplySrcPort, f.OrigDstPort, f.Proto}
		prev, ok := was[t]
		if !ok || !slices.ContainsFunc(prev, func(a openBinding) bool { return a.allows(f.Src) }) {
			return false // not a session dockmoat had allowed
		}
		if slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(f.Src) }) {
			return false
		}
		return !slices.ContainsFunc(is[t], func(a openBinding) bool { return a.allows(f.Src) })
	}
}
