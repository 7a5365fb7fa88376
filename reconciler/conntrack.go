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

// accessKey is a published binding as a flow shows it: the container
// address and port it was DNATed to, the port the client connected to.
type accessKey struct {
	addr         netip.Addr
	cport, hport uint16
	proto        string
}

// openAccess maps each open binding of a pass to the sources it is open
// to. Built only when a pass changed something, and kept as the "before"
// of the next change.
type openAccess map[accessKey][]config.Sources

// accessOf reads the open bindings of a plan from its decisions and
// allows (one allow per address and source, in decision order).
func accessOf(p FamilyPlan) openAccess {
	out := make(openAccess, len(p.Result.Decisions))
	allows := p.Result.Allows
	j := 0
	for _, d := range p.Result.Decisions {
		if !d.Open {
			continue
		}
		var last netip.Addr
		for ; j < len(allows) && allows[j].Container == d.Container && allows[j].Binding == d.Binding; j++ {
			if a := allows[j].Addr; a != last {
				k := accessKey{a, d.Binding.ContainerPort, d.Binding.HostPort, d.Binding.Proto}
				out[k] = append(out[k], d.Sources)
				last = a
			}
		}
	}
	return out
}

func allowsSource(srcs []config.Sources, src netip.Addr) bool {
	return slices.ContainsFunc(srcs, func(s config.Sources) bool {
		return s.Any || slices.ContainsFunc(s.Prefixes, func(p netip.Prefix) bool { return p.Contains(src) })
	})
}

// withdrawn reports whether now allows less than before anywhere. When it
// does not (a container started, a port opened), no session can have lost
// its access and the conntrack table need not be walked: a dump walks the
// kernel's whole table, ~6 ms even when it is empty.
func withdrawn(before, now openAccess) bool {
	for k, was := range before {
		is, ok := now[k]
		if !ok || !slices.EqualFunc(was, is, func(a, b config.Sources) bool {
			return a.Any == b.Any && slices.Equal(a.Prefixes, b.Prefixes)
		}) {
			return true
		}
	}
	return false
}

// revoked returns a matcher for the sessions that were allowed by before
// and are not by now: a binding that closed, a container gone or moved,
// sources narrowed. Trusted sources stay allowed.
func revoked(before, now openAccess, trusted []netip.Prefix) func(Flow) bool {
	return func(f Flow) bool {
		k := accessKey{f.ReplySrc, f.ReplySrcPort, f.OrigDstPort, f.Proto}
		if !allowsSource(before[k], f.Src) {
			return false // not a session dockmoat had allowed
		}
		if slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(f.Src) }) {
			return false
		}
		return !allowsSource(now[k], f.Src)
	}
}
