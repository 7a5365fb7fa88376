package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"

	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/setelem"
)

// Allow sets (Options.Sets; both backends, unless the config says
// `ipset: off`).
//
// A linear list of allow rules costs every new connection one rule per
// allowed port, so the packet path slows down as ports are added, and
// every container change rewrites the chain. With sets, the ingress chain
// looks the connection up in a set keyed on
//
//	OPEN  container address, protocol, container port
//	FROM  … and the allowed source prefix
//
// (ipsets DOCKMOAT-OPEN-V4 and DOCKMOAT-FROM-V4 on the iptables backend,
// sets open4 and from4 in the nft table), for DNATed connections only, so
// only connections Docker DNATed to an allowed container's current
// address and port get further. A set cannot see the published (host)
// port: after DNAT it is only in conntrack. So a connection found in a
// set goes on to a ports check (Result.Ports): the port the client
// connected to must be one of the allowed published ports, as ranges of
// consecutive ports (one rule for 10,000 ports published together).
// Without that check a set element left behind while dockmoat is stopped
// would open a new container that reuses the address and the container
// port on any host port. The pair is exact because every allowed
// published port in the sets leads to one container target only: where a
// port leads to several (one port bound on two host addresses to two
// containers) or a container port is published more than once with
// different policies (8080->80 open, 9090->80 closed), those allows stay
// rules matching the original destination port (Result.Linear), as
// without sets. So do the allows of a target open to an interface
// (iface:NAME): a set element carries no interface.
//
// The lookup costs the same with 10 or 10,000 ports, and a container that
// moves to a new address is a set-element change: no rule moves.

// Set kinds: OPEN sets open a container port to every source, FROM sets
// to the source prefix in each element.
const (
	SetOpen = "OPEN"
	SetFrom = "FROM"
)

// Set is the desired content of one allow set (an ipset, or a set in
// the nft table).
type Set struct {
	Kind   string
	Family rules.Family
	// Delta, when known, is how the elements differ from the previous
	// result of the same Incremental (generation Since), so that a caller
	// holding that previous content can skip reading all the elements.
	Delta *SetDelta
	// The elements: a slice (Build, NewSet) or a view of Incremental's
	// chunks, which a result shares instead of copying 10,000 of them.
	elems []setelem.Elem
	view  *elemView
}

// NewSet returns a set holding elems.
func NewSet(kind string, fam rules.Family, elems []setelem.Elem) Set {
	return Set{Kind: kind, Family: fam, elems: elems}
}

// Elems returns the elements, in no particular order. From an Incremental
// result the first call copies them out of the shared chunks (once per
// result); a pass that follows Delta need not call it. Do not modify the
// slice.
func (s Set) Elems() []setelem.Elem {
	if s.view != nil {
		return s.view.flat()
	}
	return s.elems
}

// Len is the number of elements.
func (s Set) Len() int {
	if s.view != nil {
		return s.view.n
	}
	return len(s.elems)
}

// SetDelta lists the elements added and removed since generation Since;
// Gen is this result's generation. Since is 0 when there was no previous
// result (a first call, or the configuration changed): no delta then.
type SetDelta struct {
	Since, Gen     uint64
	Added, Removed []setelem.Elem
}

// Sorted returns the elements in stable order.
func (s Set) Sorted() []setelem.Elem {
	out := slices.Clone(s.Elems())
	slices.SortFunc(out, setelem.Compare)
	return out
}

// target is what a DNATed connection shows a set: the container's address,
// protocol and container port.
type target struct {
	addr  netip.Addr
	proto string
	port  uint16
}

// hostPort is a published port as the client sees it.
type hostPort struct {
	proto string
	port  uint16
}

// setGroup collects every binding of the family that leads to one target.
type setGroup struct {
	srcs   []string // the sources every binding of the target allows; nil = closed
	mixed  bool     // bindings disagree: keep their allows as linear rules
	hosts  []hostPort
	allows []Allow
}

// behind is the container port a published port leads to; several marks
// a port bound on two host addresses to two different container ports.
type behind struct {
	container string
	port      uint16
	several   bool
}

// grouper sorts allows into set elements and linear rules. Groups live in
// a slice indexed by a map, which keeps a pass over 10,000 containers to
// a few allocations.
type grouper struct {
	index  map[target]int
	groups []setGroup
	// leadsTo is what each published port leads to (a container on two
	// networks has two addresses, which is still one container port).
	leadsTo map[hostPort]behind
}

func newGrouper(n int) *grouper {
	return &grouper{index: make(map[target]int, n), groups: make([]setGroup, 0, n), leadsTo: make(map[hostPort]behind, n)}
}

// add records one decision for each of the container's addresses.
func (g *grouper) add(addrs []netip.Addr, d rules.Decision, srcs []string, allows []Allow) {
	hp := hostPort{d.Binding.Proto, d.Binding.HostPort}
	for _, a := range addrs {
		if b, ok := g.leadsTo[hp]; !ok {
			g.leadsTo[hp] = behind{container: d.Container, port: d.Binding.ContainerPort}
		} else if !b.several && (b.container != d.Container || b.port != d.Binding.ContainerPort) {
			b.several = true
			g.leadsTo[hp] = b
		}
		k := target{a, d.Binding.Proto, d.Binding.ContainerPort}
		i, ok := g.index[k]
		if !ok {
			i = len(g.groups)
			g.index[k] = i
			g.groups = append(g.groups, setGroup{srcs: srcs})
		} else if !slices.Equal(g.groups[i].srcs, srcs) {
			g.groups[i].mixed = true
		}
		grp := &g.groups[i]
		grp.hosts = append(grp.hosts, hp)
		for _, al := range allows {
			if al.Addr == a {
				grp.allows = append(grp.allows, al)
			}
		}
	}
}

// split returns the OPEN and FROM sets, the allowed published ports of the
// set elements, and the allows that must stay rules.
func (g *grouper) split(fam rules.Family) (open, from Set, ports []hostPort, linear []Allow) {
	open = Set{Kind: SetOpen, Family: fam, elems: make([]setelem.Elem, 0, len(g.groups))}
	from = Set{Kind: SetFrom, Family: fam}
	ports = make([]hostPort, 0, len(g.groups))
	for i := range g.groups {
		grp := &g.groups[i]
		if len(grp.srcs) == 0 && !grp.mixed {
			continue // closed wherever it is published
		}
		exact := !grp.mixed && !hasIface(grp.srcs) && !slices.ContainsFunc(grp.hosts, func(hp hostPort) bool { return g.leadsTo[hp].several })
		if !exact {
			linear = append(linear, grp.allows...)
			continue
		}
		ports = append(ports, grp.hosts...)
		a := grp.allows[0]
		k := target{a.Addr, a.Binding.Proto, a.Binding.ContainerPort}
		for _, src := range grp.srcs {
			switch e, ok := elemOf(k, src); {
			case !ok:
			case e.Src.IsValid():
				from.elems = append(from.elems, e)
			default:
				open.elems = append(open.elems, e)
			}
		}
	}
	slices.SortFunc(linear, compareAllows)
	return open, from, ports, linear
}

// hasIface reports whether a target's sources name an interface: a set
// element cannot carry one, so such a target's allows stay rules.
func hasIface(srcs []string) bool {
	return slices.ContainsFunc(srcs, func(s string) bool { _, ok := rules.IfaceSource(s); return ok })
}

// elemOf is the set element of a target for one source ("" and /0 mean
// anyone: the OPEN set, which takes no source).
func elemOf(k target, s string) (setelem.Elem, bool) {
	e := setelem.Elem{Addr: k.addr, Proto: k.proto, Port: k.port}
	if s == "" {
		return e, true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return e, false
	}
	if p.Bits() > 0 {
		e.Src = p
	}
	return e, true
}

// compareAllows orders the allows that stay rules, so that their order
// does not depend on how they were found.
func compareAllows(a, b Allow) int {
	return cmp.Or(cmp.Compare(a.Container, b.Container), rules.ComparePorts(a.Binding, b.Binding),
		a.Addr.Compare(b.Addr), cmp.Compare(a.Source, b.Source))
}

// PortRange is a run of consecutive allowed published ports.
type PortRange struct {
	Proto  string
	Lo, Hi uint16
}

// portRanges merges published ports into runs per protocol.
func portRanges(ports []hostPort) []PortRange {
	slices.SortFunc(ports, compareHostPorts)
	return rangesOf(slices.Compact(ports))
}

// rangesOf merges sorted, distinct published ports into runs per
// protocol; it does not modify ports.
func rangesOf(ports []hostPort) []PortRange {
	var out []PortRange
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1].proto == ports[i].proto && ports[j+1].port == ports[j].port+1 {
			j++
		}
		out = append(out, PortRange{Proto: ports[i].proto, Lo: ports[i].port, Hi: ports[j].port})
		i = j + 1
	}
	return out
}

// String renders the range as iptables writes it (8080 or 8080:8090).
func (r PortRange) String() string {
	s := strconv.Itoa(int(r.Lo))
	if r.Hi > r.Lo {
		s += ":" + strconv.Itoa(int(r.Hi))
	}
	return s
}
