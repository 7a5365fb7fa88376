package reconciler

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// Flow is the part of a conntrack entry revocation looks at.
type Flow struct {
	Proto        string
	Src          netip.Addr // the client
	SrcPort      uint16
	OrigDst      netip.Addr // the address it connected to
	OrigDstPort  uint16     // the published port it connected to
	ReplySrc     netip.Addr // after DNAT: the container
	ReplySrcPort uint16     // the container port
	Mark         uint32     // the connection's mark
}

// Conntrack deletes connection-tracking entries. Deleting an entry cuts
// the session: its next packet is NEW again and meets the default deny.
type Conntrack interface {
	Delete(fam rules.Family, match func(Flow) bool) (uint, error)
}

// NetlinkConntrack talks to the kernel's conntrack table over netlink,
// on one socket opened up front: a socket opened and closed per call pays
// ~10 ms in close() (an RCU grace period), more than the whole pass it
// serves. The socket belongs to the network namespace it was opened in.
type NetlinkConntrack struct {
	mu sync.Mutex
	h  *netlink.Handle
}

// NewNetlinkConntrack opens the socket in the caller's network namespace.
func NewNetlinkConntrack() (*NetlinkConntrack, error) {
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening a netfilter netlink socket for conntrack: %w", err)
	}
	return &NetlinkConntrack{h: h}, nil
}

// Close releases the socket.
func (c *NetlinkConntrack) Close() { c.h.Close() }

type flowFilter func(Flow) bool

func (f flowFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool { return f(flowOf(fl)) }

func flowOf(fl *netlink.ConntrackFlow) Flow {
	src, _ := netip.AddrFromSlice(fl.Forward.SrcIP)
	dst, _ := netip.AddrFromSlice(fl.Forward.DstIP)
	rs, _ := netip.AddrFromSlice(fl.Reverse.SrcIP)
	return Flow{Proto: rules.ProtoName(fl.Forward.Protocol), Src: src.Unmap(), SrcPort: fl.Forward.SrcPort, OrigDst: dst.Unmap(),
		OrigDstPort: fl.Forward.DstPort, ReplySrc: rs.Unmap(), ReplySrcPort: fl.Reverse.SrcPort, Mark: fl.Mark}
}

// List returns a family's conntrack entries whose mark has every bit of
// mark set (observe mode's count: rules.ObserveMark).
func (c *NetlinkConntrack) List(fam rules.Family, mark uint32) ([]Flow, error) {
	family := netlink.InetFamily(netlink.FAMILY_V4)
	if fam == rules.IPv6 {
		family = netlink.FAMILY_V6
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	flows, err := c.h.ConntrackTableList(netlink.ConntrackTable, family)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing conntrack entries: %w", err)
	}
	var out []Flow
	for _, fl := range flows {
		if fl.Mark&mark == mark {
			out = append(out, flowOf(fl))
		}
	}
	return out, nil
}

// Delete implements Conntrack.
func (c *NetlinkConntrack) Delete(fam rules.Family, match func(Flow) bool) (uint, error) {
	family := netlink.InetFamily(netlink.FAMILY_V4)
	if fam == rules.IPv6 {
		family = netlink.FAMILY_V6
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.h.ConntrackDeleteFilters(netlink.ConntrackTable, family, flowFilter(match))
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
// to. Built by the revocation worker for every pass that changed
// something, and kept as the "before" of the next change.
type openAccess map[accessKey][]config.Sources

// accessOf reads the open bindings of a result from its decisions and
// allows (one allow per address and source, in decision order).
func accessOf(decisions []rules.Decision, allows []policy.Allow) openAccess {
	out := make(openAccess, len(decisions))
	j := 0
	for _, d := range decisions {
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

// allowsSource reports whether one of srcs lets src in. An interface
// source (iface:NAME) lets it in when via, the interface the host routes
// src by, matches: conntrack keeps no session's input interface, and a
// VPN client is routed back through its tunnel. With via nil (no
// interface source anywhere) interfaces match nothing.
func allowsSource(srcs []config.Sources, src netip.Addr, via viaFunc) bool {
	return slices.ContainsFunc(srcs, func(s config.Sources) bool {
		return s.Any || slices.ContainsFunc(s.Prefixes, func(p netip.Prefix) bool { return p.Contains(src) }) ||
			len(s.Ifaces) > 0 && viaOneOf(s.Ifaces, src, via)
	})
}

// viaFunc names the interface the host routes an address by ("" unknown).
type viaFunc func(netip.Addr) string

// viaOneOf reports whether src is routed by an interface one of the
// patterns (iface:NAME) names.
func viaOneOf(patterns []string, src netip.Addr, via viaFunc) bool {
	if via == nil || len(patterns) == 0 {
		return false
	}
	name := via(src)
	return name != "" && config.IfaceIn(patterns, name)
}

// trust is what a sweep or a revocation never cuts: the trusted sources
// and interfaces, with the route lookup for the latter.
type trust struct {
	prefixes []netip.Prefix
	ifaces   []string
	via      viaFunc
}

func (t trust) has(src netip.Addr) bool {
	return slices.ContainsFunc(t.prefixes, func(p netip.Prefix) bool { return p.Contains(src) }) || viaOneOf(t.ifaces, src, t.via)
}

// withdrawn reports whether now allows less than before anywhere. When it
// does not (a container started, a port opened), no session can have lost
// its access and the conntrack table need not be walked (a dump walks
// the kernel's whole table).
func withdrawn(before, now openAccess) bool {
	for k, was := range before {
		is, ok := now[k]
		if !ok || !slices.EqualFunc(was, is, func(a, b config.Sources) bool {
			return a.Any == b.Any && slices.Equal(a.Prefixes, b.Prefixes) && slices.Equal(a.Ifaces, b.Ifaces)
		}) {
			return true
		}
	}
	return false
}

// hostPort is a published port as a client sees it.
type hostPort struct {
	proto string
	port  uint16
}

// swept returns a matcher for the sessions that no state of dockmoat's
// ever allowed: ones opened before its first pass, or while someone had
// removed its rules (a repair window). Such a session is to a published
// port, was DNATed by Docker to a container, comes from outside (not the
// host itself, not a Docker network) and is not allowed by now.
func swept(published map[hostPort]bool, now openAccess, trusted trust, local []netip.Prefix) func(Flow) bool {
	return func(f Flow) bool {
		if f.OrigDst == f.ReplySrc || !published[hostPort{f.Proto, f.OrigDstPort}] {
			return false // not DNATed (the host's own, or docker-proxy's), or not published
		}
		in := func(p netip.Prefix) bool { return p.Contains(f.Src) }
		if trusted.has(f.Src) || slices.ContainsFunc(local, in) || f.Src.IsLoopback() {
			return false
		}
		return !allowsSource(now[accessKey{f.ReplySrc, f.ReplySrcPort, f.OrigDstPort, f.Proto}], f.Src, trusted.via)
	}
}

// publishedPorts lists the published ports of a family's decisions.
func publishedPorts(decisions []rules.Decision) map[hostPort]bool {
	out := make(map[hostPort]bool, len(decisions))
	for _, d := range decisions {
		out[hostPort{d.Binding.Proto, d.Binding.HostPort}] = true
	}
	return out
}

// revoked returns a matcher for the sessions that were allowed by one of
// befores and are not by now: a binding that closed, a container gone or
// moved, sources narrowed. Trusted sources stay allowed.
func revoked(befores []openAccess, now openAccess, trusted trust) func(Flow) bool {
	return func(f Flow) bool {
		k := accessKey{f.ReplySrc, f.ReplySrcPort, f.OrigDstPort, f.Proto}
		if !slices.ContainsFunc(befores, func(b openAccess) bool { return allowsSource(b[k], f.Src, trusted.via) }) {
			return false // not a session dockmoat had allowed
		}
		if trusted.has(f.Src) {
			return false
		}
		return !allowsSource(now[k], f.Src, trusted.via)
	}
}
