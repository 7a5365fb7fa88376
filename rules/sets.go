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
// holds two fixed rules that look the connection up in a hash:
//
//	DOCKMOAT-OPEN-V4  hash:ip,port      container address, proto:container port
//	DOCKMOAT-FROM-V4  hash:ip,port,net  … and the allowed source prefix
//
// matched with --ctstate DNAT, so, as with the linear rules, only
// connections Docker DNATed to the container's current address and port
// are allowed, and routing straight to a container opens nothing. The
// lookup costs the same with 10 or 10,000 ports, and a container change is
// a set-element change: the iptables rules never move.
//
// What a set cannot see is the published (host) port: conntrack's original
// destination is not an ipset dimension. When one container port is
// published more than once with different policies (say 8080->80 open,
// 9090->80 closed), its allows stay linear rules with --ctorigdstport, as
// without sets.

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

// setGroup collects every binding of the family that leads to one target.
type setGroup struct {
	srcs   []string // the sources every binding of the target allows; nil = closed
	mixed  bool     // bindings disagree: keep their allows as linear rules
	allows []Allow
}

// grouper sorts allows into set elements and linear rules.
type grouper struct {
	groups map[target]*setGroup
	order  []target
}

// add records one decision for each of the container's addresses.
func (g *grouper) add(addrs []netip.Addr, d Decision, srcs []string, allows []Allow) {
	if g.groups == nil {
		g.groups = map[target]*setGroup{}
	}
	for _, a := range addrs {
		k := target{a, d.Binding.Proto, d.Binding.ContainerPort}
		grp, ok := g.groups[k]
		if !ok {
			grp = &setGroup{srcs: srcs}
			g.groups[k] = grp
			g.order = append(g.order, k)
		} else if !slices.Equal(grp.srcs, srcs) {
			grp.mixed = true
		}
	}
	for _, al := range allows {
		k := target{al.Addr, d.Binding.Proto, d.Binding.ContainerPort}
		g.groups[k].allows = append(g.groups[k].allows, al)
	}
}

// split returns the OPEN and FROM sets and the allows that must stay rules.
func (g *grouper) split(fam Family) (open, from Set, linear []Allow) {
	open = Set{Name: SetName(SetOpen, fam), Kind: SetOpen, Family: fam}
	from = Set{Name: SetName(SetFrom, fam), Kind: SetFrom, Family: fam}
	for _, k := range g.order {
		grp := g.groups[k]
		if grp.mixed {
			linear = append(linear, grp.allows...)
			continue
		}
		for _, s := range grp.srcs {
			e := SetElem{Addr: k.addr, Proto: k.proto, Port: k.port}
			p, err := netip.ParsePrefix(s)
			if s == "" || (err == nil && p.Bits() == 0) {
				open.Elems = append(open.Elems, e)
				continue
			}
			e.Src = p
			from.Elems = append(from.Elems, e)
		}
	}
	return open, from, linear
}

// setRules are the two fixed INGRESS rules that look connections up in
// the family's sets.
func setRules(ing *Chain, fam Family) {
	ing.add(desc("allowed ports: set "+SetName(SetOpen, fam)), "-m", "set", "--match-set", SetName(SetOpen, fam), "dst,dst",
		"-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN")
	ing.add(desc("allowed ports by source: set "+SetName(SetFrom, fam)), "-m", "set", "--match-set", SetName(SetFrom, fam), "dst,dst,src",
		"-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN")
}
