package rules

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
)

// Allow sets (iptables path, where the kernel has ipset).
//
// A linear list of allow rules costs every new connection one rule per
// allowed port, so the packet path slows down as ports are added, and
// every container change rewrites the chain. With sets, DOCKMOAT-INGRESS
// looks the connection up in a hash:
//
//	DOCKMOAT-OPEN-V4  hash:ip,port      container address, proto:container port
//	DOCKMOAT-FROM-V4  hash:ip,port,net  … and the allowed source prefix
//
// matched with --ctstate DNAT, so only connections Docker DNATed to an
// allowed container's current address and port get further. A set cannot
// see the published (host) port: after DNAT it is only in conntrack. So a
// connection found in a set goes on to DOCKMOAT-PORTS, which checks that
// the port the client connected to is one of the allowed published ports
// (as ranges of consecutive ports: one rule for 10,000 ports published
// together). Without that check a set element left behind while dockmoat
// is stopped would open a new container that reuses the address and the
// container port on any host port. The pair is exact because every
// allowed published port in the sets leads to one container target only:
// where a port leads to several (one port bound on two host addresses to
// two containers) or a container port is published more than once with
// different policies (8080->80 open, 9090->80 closed), those allows stay
// rules with --ctorigdstport, as without sets.
//
// The lookup costs the same with 10 or 10,000 ports, and a container that
// moves to a new address is a set-element change: no rule moves.

// Set kinds and their ipset types.
const (
	SetOpen = "OPEN"
	SetFrom = "FROM"
)

// SetName is the ipset name of a kind in a family (at most 31 characters).
func SetName(kind string, fam Family) string {
	if fam == IPv6 {
		return "DOCKMOAT-" + kind + "-V6"
	}
	return "DOCKMOAT-" + kind + "-V4"
}

// SetType is the ipset type of a kind.
func SetType(kind string) string {
	if kind == SetFrom {
		return "hash:ip,port,net"
	}
	return "hash:ip,port"
}

// SetElem is one element: a container address, protocol and container
// port, and for FROM sets the source prefix.
type SetElem struct {
	Addr  netip.Addr
	Proto string
	Port  uint16
	Src   netip.Prefix // invalid in OPEN sets
}

// String renders the element the way `ipset save` does.
func (e SetElem) String() string {
	s := e.Addr.String() + "," + e.Proto + ":" + strconv.Itoa(int(e.Port))
	if e.Src.IsValid() {
		s += "," + e.Src.String()
	}
	return s
}

// Set is the desired content of one ipset.
type Set struct {
	Name   string
	Kind   string
	Family Family
	Elems  []SetElem
	// Delta, when known, is how Elems differ from the previous result of
	// the same Incremental (generation Since), so that a caller holding
	// that previous content can skip comparing all the elements.
	Delta *SetDelta
}

// SetDelta lists the elements added and removed since generation Since;
// Gen is this result's generation. Since is 0 when there was no previous
// result (a first call, or the configuration changed): no delta then.
type SetDelta struct {
	Since, Gen     uint64
	Added, Removed []SetElem
}

// CompareSetElems orders elements for stable output.
func CompareSetElems(a, b SetElem) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port),
		a.Src.Addr().Compare(b.Src.Addr()), cmp.Compare(a.Src.Bits(), b.Src.Bits()))
}

// Sorted returns the elements in stable order.
func (s Set) Sorted() []SetElem {
	out := slices.Clone(s.Elems)
	slices.SortFunc(out, CompareSetElems)
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
func (g *grouper) add(addrs []netip.Addr, d Decision, srcs []string, allows []Allow) {
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
func (g *grouper) split(fam Family) (open, from Set, ports []hostPort, linear []Allow) {
	open = Set{Name: SetName(SetOpen, fam), Kind: SetOpen, Family: fam, Elems: make([]SetElem, 0, len(g.groups))}
	from = Set{Name: SetName(SetFrom, fam), Kind: SetFrom, Family: fam}
	ports = make([]hostPort, 0, len(g.groups))
	for i := range g.groups {
		grp := &g.groups[i]
		if len(grp.srcs) == 0 && !grp.mixed {
			continue // closed wherever it is published
		}
		exact := !grp.mixed && !slices.ContainsFunc(grp.hosts, func(hp hostPort) bool { return g.leadsTo[hp].several })
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
				from.Elems = append(from.Elems, e)
			default:
				open.Elems = append(open.Elems, e)
			}
		}
	}
	slices.SortFunc(linear, compareAllows)
	return open, from, ports, linear
}

// elemOf is the set element of a target for one source ("" and /0 mean
// anyone: the OPEN set, which takes no source).
func elemOf(k target, s string) (SetElem, bool) {
	e := SetElem{Addr: k.addr, Proto: k.proto, Port: k.port}
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
	return cmp.Or(cmp.Compare(a.Container, b.Container), comparePorts(a.Binding, b.Binding),
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

// DiffElems compares the elements a set should hold with those it holds:
// missing are wanted and not held, extra held and not wanted (in no
// particular order). Elements are unique, so when every element held is
// wanted there is nothing extra and the wanted ones are never indexed.
// It is the one set comparison: the iptables backend's ipsets, the nft
// table's sets and audit all use it.
func DiffElems[E comparable](want []E, have map[E]struct{}) (missing, extra []E) {
	held := 0
	for _, e := range want {
		if _, ok := have[e]; ok {
			held++
		} else {
			missing = append(missing, e)
		}
	}
	if held == len(have) {
		return missing, nil
	}
	wanted := make(map[E]struct{}, len(want))
	for _, e := range want {
		wanted[e] = struct{}{}
	}
	for e := range have {
		if _, ok := wanted[e]; !ok {
			extra = append(extra, e)
		}
	}
	return missing, extra
}

// ElemSet indexes elements for DiffElems.
func ElemSet[E comparable](elems []E) map[E]struct{} {
	m := make(map[E]struct{}, len(elems))
	for _, e := range elems {
		m[e] = struct{}{}
	}
	return m
}
