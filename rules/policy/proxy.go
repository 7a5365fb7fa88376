package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/dockmoat/dockmoat/rules"
)

// The proxy path. `docker run -p 5432:5432` publishes on 0.0.0.0 and ::.
// Docker DNATs a client of a family only to a container address of that
// family; a client of the other family (an IPv6 client of an IPv4-only
// container, the usual case) is answered by docker-proxy on the host
// itself, and its packets cross INPUT, never FORWARD or DOCKER-USER. The
// same happens to every binding of a family whose firewall Docker does not
// manage (Docker 20.10's IPv6 without --ip6tables).
//
// The path is also every binding's the moment Docker's DNAT is missing:
// `iptables -t nat -F DOCKER`, a restore of a saved nat table, or a host
// where Docker does not DNAT the family at all. docker-proxy still
// listens on every published port, and a client it answers never meets
// DOCKER-USER.
//
// dockmoat closes that path in its own chain, DOCKMOAT-INPUT, reached by
// one jump at the top of INPUT, for every published binding that is not
// on loopback, whether Docker DNATs it now or not (Result.Input): while the
// DNAT is there no outside connection to the port reaches INPUT (the
// rules cost a new connection to a host service one rule per group of
// runs, GroupRuns); when it is gone they are what keeps the port closed. The chain
// lets replies, the host itself and the Docker networks through, then
// the same allows as on the DNAT path (trusted sources, labels, config;
// sources of the family), matched on the published port
// the client connected to, and drops every other new connection to
// exactly those protocol/port pairs, as runs of consecutive ports (one
// rule for 10,000 ports published together), and the runs of a protocol
// and address together (an nft set of ports, iptables' multiport by
// fifteen). Every other port of the host
// (SSH, host services, ufw's own INPUT rules) is never matched.

// proxiedAppend adds to out the decisions (of the family, ds) of a
// container whose bindings reach it through docker-proxy even while
// Docker's DNAT is in place: it has no address of the family, or Docker
// does not DNAT the family (proxyAll). Loopback bindings are local and
// left out. It is what `plan` reports; the input chain closes every
// binding (Result.Input).
func proxiedAppend(out []rules.Decision, c *rules.Container, ds []rules.Decision, fam rules.Family, proxyAll bool) []rules.Decision {
	if len(ds) == 0 || (!proxyAll && rules.HasFamilyAddr(c, fam)) {
		return out
	}
	for _, d := range ds {
		if !(d.Binding.HostIP.IsValid() && d.Binding.HostIP.IsLoopback()) {
			out = append(out, d)
		}
	}
	return out
}

// sortProxied orders proxied decisions by port, then container.
func sortProxied(ds []rules.Decision) {
	slices.SortFunc(ds, func(a, b rules.Decision) int {
		return cmp.Or(rules.ComparePorts(a.Binding, b.Binding), cmp.Compare(a.Container, b.Container))
	})
}

// InputPath is what DOCKMOAT-INPUT decides for a family's published
// bindings (loopback ones left out): the allows limited to sources, one
// rule per source, then the runs open to everyone, then every run, whose
// new connections not let through above are dropped.
type InputPath struct {
	Sourced []rules.Decision
	Open    []PortRun
	All     []PortRun
}

// Empty says no binding meets the input chain.
func (p InputPath) Empty() bool { return len(p.All) == 0 }

// GroupRuns splits runs by protocol and host address, in order of first
// appearance: what a backend can match with one rule and a set of ports
// (an nft anonymous set, iptables' multiport), so that scattered ports
// cost a lookup rather than a rule each.
func GroupRuns(runs []PortRun) [][]PortRun {
	type key struct {
		proto string
		ip    netip.Addr
	}
	var out [][]PortRun
	at := map[key]int{}
	for _, r := range runs {
		k := key{r.Proto, r.HostIP}
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], r)
	}
	return out
}

// GroupSpec names a group of runs (GroupRuns) for a rule's comment: the
// first eight runs, how many more there are, the protocol and address
// (only characters a comment keeps as they are, rules.Desc).
func GroupSpec(rs []PortRun) string {
	if len(rs) == 1 {
		return rs[0].Spec()
	}
	var ports []string
	for _, r := range rs[:min(len(rs), 8)] {
		ports = append(ports, r.PortRange.String())
	}
	s := strings.Join(ports, ",")
	if len(rs) > 8 {
		s += fmt.Sprintf(" and %d more", len(rs)-8)
	}
	s += "/" + rs[0].Proto
	if rs[0].HostIP.IsValid() {
		s += " on " + rs[0].HostIP.String()
	}
	return s
}

// PortRun is a run of consecutive published ports of one protocol on one
// host address (invalid: every address of the family), with the
// containers they lead to.
type PortRun struct {
	HostIP netip.Addr
	PortRange
	Containers []string
}

// Spec describes the run for a rule comment: "8080:8089/tcp to a, b",
// "443/tcp on 192.0.2.1 to c".
func (r PortRun) Spec() string {
	s := r.PortRange.String() + "/" + r.Proto
	if r.HostIP.IsValid() {
		s += " on " + r.HostIP.String()
	}
	names := r.Containers
	if len(names) == 0 {
		return s
	}
	if len(names) > 3 {
		names = append(slices.Clone(names[:3]), fmt.Sprintf("%d more", len(r.Containers)-3))
	}
	return s + " to " + strings.Join(names, ", ")
}

// inputPath groups decisions (of one family, in any order, possibly in
// several slices) into the input chain's runs.
func inputPath(chunks ...[]rules.Decision) InputPath {
	var all, open []runKey
	var p InputPath
	for _, ds := range chunks {
		for _, d := range ds {
			if d.Binding.HostIP.IsValid() && d.Binding.HostIP.IsLoopback() {
				continue
			}
			k := keyOf(d)
			all = append(all, k)
			switch {
			case d.Open && d.Sources.Any:
				open = append(open, k)
			case d.Open:
				p.Sourced = append(p.Sourced, d)
			}
		}
	}
	slices.SortFunc(p.Sourced, func(a, b rules.Decision) int {
		return cmp.Or(rules.ComparePorts(a.Binding, b.Binding), cmp.Compare(a.Container, b.Container))
	})
	p.Open, p.All = portRuns(open), portRuns(all)
	return p
}

// runKey is what a run is made of: a binding's host address (invalid:
// every address), protocol and port, and its container. Small, so that
// sorting 10,000 of them stays cheap.
type runKey struct {
	host  netip.Addr
	proto string
	port  uint16
	name  string
}

func keyOf(d rules.Decision) runKey {
	k := runKey{proto: d.Binding.Proto, port: d.Binding.HostPort, name: d.Container}
	if h := d.Binding.HostIP; h.IsValid() && !h.IsUnspecified() {
		k.host = h.Unmap()
	}
	return k
}

// portRuns merges bindings into runs of consecutive ports per host
// address and protocol.
func portRuns(ks []runKey) []PortRun {
	slices.SortFunc(ks, func(a, b runKey) int {
		return cmp.Or(a.host.Compare(b.host), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port), cmp.Compare(a.name, b.name))
	})
	var out []PortRun
	for _, k := range ks {
		if n := len(out); n > 0 {
			r := &out[n-1]
			if r.HostIP == k.host && r.Proto == k.proto && int(k.port) <= int(r.Hi)+1 {
				r.Hi = max(r.Hi, k.port)
				r.Containers = append(r.Containers, k.name)
				continue
			}
		}
		out = append(out, PortRun{HostIP: k.host, PortRange: PortRange{Proto: k.proto, Lo: k.port, Hi: k.port}, Containers: []string{k.name}})
	}
	for i := range out {
		slices.Sort(out[i].Containers)
		out[i].Containers = slices.Compact(out[i].Containers)
	}
	return out
}
