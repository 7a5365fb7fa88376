package rules

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/dockmoat/dockmoat/config"
)

// Marks and prefixes both backends put on dockmoat's rules.
const (
	// CommentPrefix marks every rule dockmoat owns.
	CommentPrefix = "dockmoat:"
	// LogPrefix is the kernel log prefix of blocked connections.
	LogPrefix = "[DOCKMOAT BLOCK] "
	// EgressLogPrefix is the kernel log prefix of refused outbound
	// connections (egress.go).
	EgressLogPrefix = "[DOCKMOAT EGRESS] "
)

// ObserveMark is the conntrack-mark bit that, in observe mode
// (config.Observe), marks a connection the policy would have refused and
// dockmoat let through; the daemon counts the connections carrying it
// (the same bit as PassMark, in the connection's mark, not the packet's).
const ObserveMark = 0x20000000

// ObserveDesc describes the rules that, in observe mode, let through
// what the policy refuses.
const ObserveDesc = "observe: refused by the policy, counted and let through until dockmoat enforce"

// PassMark is the packet-mark bit dockmoat sets on what its rules let
// through and clears once checked. A bit no common tool uses (kube-proxy
// 0x4000/0x8000, Tailscale 0xff0000, Cilium 0xf00, mwan3 0x3f00); only
// Calico's default mask (0xffff0000) covers it.
const PassMark = 0x20000000

// Decision records, per published port, whether and to whom it is open.
type Decision struct {
	Container string
	Binding   PortBinding
	Open      bool
	Sources   config.Sources // meaningful when Open
	Reason    string
	// Limit, when set on an open port, limits new connections per
	// source (limit.go).
	Limit config.RateLimit
}

var ifaceRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// ValidIface reports whether name is an interface name the rules may
// carry (at most 15 characters, no glob or quote).
func ValidIface(name string) bool { return ifaceRe.MatchString(name) }

// SnapshotProblems are what is wrong with the snapshot as a whole:
// services, image labels, containers on networks no rule can see.
func SnapshotProblems(snap Snapshot) []Problem {
	out := serviceProblems(snap)
	out = append(out, imageLabelProblems(snap)...)
	return append(out, directProblems(snap)...)
}

// CompareContainers orders containers by name, then ID: the order of
// decisions and of rules.
func CompareContainers(a, b *Container) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
}

// DefaultBridges are the interface patterns of bridges Docker names
// itself: docker0 and br-<network id>.
var DefaultBridges = []string{"docker0", "br-+"}

// UnseenBridges lists the DefaultBridges patterns that the known bridges do not
// already name (docker0 is usually known; br-+ never is).
func UnseenBridges(known []string) []string {
	return slices.DeleteFunc(slices.Clone(DefaultBridges), func(b string) bool { return slices.Contains(known, b) })
}

// BridgePattern shows an iptables interface pattern (br-+) as a glob (br-*).
func BridgePattern(iface string) string { return strings.ReplaceAll(iface, "+", "*") }

// InFamily: Docker reports 0.0.0.0 and :: bindings separately; an
// empty host address means every family.
func InFamily(b PortBinding, fam Family) bool {
	return !b.HostIP.IsValid() || fam.Has(b.HostIP)
}

// FamilyAddrs lists a container's addresses of the family, sorted.
func FamilyAddrs(c Container, fam Family) []netip.Addr {
	var addrs []netip.Addr
	for _, ep := range c.Endpoints {
		for _, a := range []netip.Addr{ep.IPv4, ep.IPv6} {
			if fam.Has(a) && !slices.Contains(addrs, a.Unmap()) {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs
}

// anySource is the source list of a port open to everyone.
var anySource = []string{""}

// SourcesOf lists the sources of the family a decision allows: "" means
// anyone, "iface:NAME" whatever arrives on that interface (IfaceSource;
// in both families); nil means closed (or open only to sources of the
// other family).
func SourcesOf(d Decision, fam Family) []string {
	if !d.Open {
		return nil
	}
	if d.Sources.Any {
		return anySource
	}
	var srcs []string
	for _, p := range SortedPrefixes(d.Sources.Prefixes) {
		if fam.Has(p.Addr()) {
			srcs = append(srcs, p.String())
		}
	}
	for _, ifc := range d.Sources.Ifaces {
		srcs = append(srcs, config.IfacePrefix+ifc)
	}
	return srcs
}

// IfaceSource reports whether a source of SourcesOf is an interface, and
// its name (a trailing * a glob). A renderer that does not ask renders
// the source as an address and the kernel refuses the batch: nothing
// opens to everyone by mistake.
func IfaceSource(src string) (string, bool) {
	return strings.CutPrefix(src, config.IfacePrefix)
}

// Decide applies labels and config to each published port of a container.
func Decide(cfg config.Config, c Container) ([]Decision, []Problem) {
	labelGrants, labelLimits, problems := parseLabels(c, cfg.Lists)
	fatal := len(problems) > 0
	var cfgGrants []grant
	for i, r := range cfg.Allow {
		if !r.Matches(c.Name, c.Labels) {
			continue
		}
		origin := r.Origin
		if origin == "" {
			origin = fmt.Sprintf("config allow[%d]", i)
		}
		for _, spec := range r.Ports {
			cfgGrants = append(cfgGrants, grant{spec: spec, sources: r.From, fromConfig: true, origin: origin})
		}
	}

	bindings := slices.Clone(c.Ports)
	slices.SortFunc(bindings, ComparePorts)
	bindings = slices.CompactFunc(bindings, func(a, b PortBinding) bool { return ComparePorts(a, b) == 0 })

	grants := indexGrants(slices.Concat(labelGrants, cfgGrants))
	var out []Decision
	for _, b := range bindings {
		d := Decision{Container: c.Name, Binding: b, Reason: "closed by dockmoat default deny"}
		switch {
		case b.HostIP.IsValid() && b.HostIP.IsLoopback():
			d.Reason = "bound to " + b.HostIP.String() + ": local only"
		case fatal:
			d.Reason = "closed: invalid dockmoat label"
		default:
			open(&d, grants.of(b))
		}
		out = append(out, d)
	}
	if !fatal {
		limits := append(labelLimits, configLimiters(cfg, c)...)
		applyLimits(out, limits)
		problems = append(problems, unmatched(c, labelGrants, bindings)...)
		problems = append(problems, limitProblems(c, labelLimits, out)...)
	}
	if n := entries(c, out); n > MaxContainerEntries {
		// Too large to install (the sets hold 2^20 elements for every
		// container together): closed and reported, so that this one
		// container cannot fail the pass for all the others.
		for i := range out {
			if out[i].Open {
				out[i] = Decision{Container: c.Name, Binding: out[i].Binding, Reason: "closed: policy too large to install"}
			}
		}
		problems = append(problems, Problem{Container: c.Name, Label: LabelFrom, Value: c.Labels[LabelFrom], Fatal: true,
			Msg: fmt.Sprintf("its allows expand to %d entries (published ports x container addresses x sources), more than dockmoat installs for one container (%d): open fewer ports, or name sources as wider CIDRs or trusted_sources", n, MaxContainerEntries)})
	}
	return out, problems
}

// MaxContainerEntries bounds the allow entries of one container.
const MaxContainerEntries = 1 << 16

// entries counts the allow entries a container's open decisions expand
// to, over both families (an upper bound of what policy.Build installs for it).
func entries(c Container, decisions []Decision) int {
	addrs := 0
	for _, ep := range c.Endpoints {
		if ep.IPv4.IsValid() {
			addrs++
		}
		if ep.IPv6.IsValid() {
			addrs++
		}
	}
	n := 0
	for _, d := range decisions {
		if d.Open {
			n += max(addrs, 1) * max(len(d.Sources.Prefixes)+len(d.Sources.Ifaces), 1)
		}
	}
	return n
}

// unmatched warns about label entries that name no published port, with a
// hint when the user wrote the container port instead of the host port.
func unmatched(c Container, grants []grant, bindings []PortBinding) []Problem {
	var out []Problem
	byHost, byContainer := map[uint16][]PortBinding{}, map[uint16][]PortBinding{}
	for _, b := range bindings {
		byHost[b.HostPort] = append(byHost[b.HostPort], b)
		byContainer[b.ContainerPort] = append(byContainer[b.ContainerPort], b)
	}
	// The bindings a spec may match: those of its port, or all for a range.
	near := func(spec config.PortSpec, by map[uint16][]PortBinding) []PortBinding {
		if spec.From == spec.To {
			return by[spec.From]
		}
		return bindings
	}
	for _, g := range grants {
		if g.spec.All || slices.ContainsFunc(near(g.spec, byHost), func(b PortBinding) bool { return g.spec.Matches(b.HostPort, b.Proto) }) {
			continue
		}
		label, value := LabelAllow, c.Labels[LabelAllow]
		if g.perPort {
			label = labelPortPfx + g.spec.String()
			value = c.Labels[label]
		}
		msg := fmt.Sprintf("port %s is not published by this container, so it opens nothing", g.spec)
		if svc := c.Labels[config.LabelSwarmService]; svc != "" && len(bindings) == 0 {
			msg += fmt.Sprintf("; if service %s publishes it through the routing mesh (ingress mode), labels cannot open it: every node must apply one policy and a node cannot read the labels of tasks it does not run; open it with `allow: [{service: %s, ports: [...]}]` in the config file the stack ships to every node, or publish with mode=host", svc, svc)
		}
		for _, b := range near(g.spec, byContainer) {
			if g.spec.Matches(b.ContainerPort, b.Proto) {
				msg += fmt.Sprintf("; labels name the published (host) port: did you mean %d (published %d->%d/%s)?", b.HostPort, b.HostPort, b.ContainerPort, b.Proto)
				break
			}
		}
		out = append(out, Problem{Container: c.Name, Label: label, Value: value, Msg: msg})
	}
	return out
}

// grantIndex finds the grants that may match a published port without
// walking them all (a container may carry thousands of per-port labels):
// single-port grants by port, ranges and "all" in a list of their own.
// Grants keep their order, which decides the order of a decision's
// origins.
type grantIndex struct {
	all    []grant
	byPort map[uint16][]int
	other  []int
}

func indexGrants(gs []grant) grantIndex {
	ix := grantIndex{all: gs, byPort: map[uint16][]int{}}
	for i, g := range gs {
		if !g.spec.All && g.spec.From == g.spec.To {
			ix.byPort[g.spec.From] = append(ix.byPort[g.spec.From], i)
		} else {
			ix.other = append(ix.other, i)
		}
	}
	return ix
}

// of lists, in order, the grants that match a binding.
func (ix grantIndex) of(b PortBinding) []grant {
	var out []grant
	for _, i := range slices.Sorted(slices.Values(append(slices.Clone(ix.byPort[b.HostPort]), ix.other...))) {
		if g := ix.all[i]; g.spec.Matches(b.HostPort, b.Proto) {
			out = append(out, g)
		}
	}
	return out
}

// open opens d by the grants that match its binding: per-port labels
// override dockmoat.from for their ports; config rules always add up.
func open(d *Decision, matching []grant) {
	perPort := slices.ContainsFunc(matching, func(g grant) bool { return g.perPort })
	var srcs config.Sources
	var origins []string
	for _, g := range matching {
		if perPort && !g.perPort && !g.fromConfig {
			continue
		}
		if len(origins) == 0 {
			srcs = g.sources
		} else {
			srcs = srcs.Union(g.sources)
		}
		origins = append(origins, g.origin)
	}
	if len(origins) > 0 {
		d.Open, d.Sources = true, srcs
		d.Reason = "allowed by " + strings.Join(slices.Compact(origins), "; ")
	}
}

// ComparePorts orders bindings by host port, protocol, host address.
func ComparePorts(a, b PortBinding) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.HostPort, b.HostPort),
		a.HostIP.Compare(b.HostIP), cmp.Compare(a.ContainerPort, b.ContainerPort))
}

// SortedPrefixes sorts prefixes by address then length, without duplicates.
func SortedPrefixes(in []netip.Prefix) []netip.Prefix {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return slices.Compact(out)
}

// DisabledDesc is the comment of the bypass rule that `dockmoat disable`
// puts first in each of dockmoat's hooked chains; audit names it as the
// rule that decided.
const DisabledDesc = "protection disabled by dockmoat disable: run dockmoat enable to turn it back on"

// Desc makes a comment text that needs no quoting beyond double quotes and
// stays well under iptables' 256-byte comment limit with the hash: every
// other character (rune, or invalid byte) becomes "_". A pass renders a
// comment per rule, so the common all-safe text is returned as it is.
func Desc(s string) string {
	if strings.IndexFunc(s, unsafeRune) >= 0 {
		s = strings.Map(func(r rune) rune {
			if unsafeRune(r) {
				return '_'
			}
			return r
		}, s)
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// HasFamilyAddr reports whether c has an address of the family.
func unsafeRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	}
	return !strings.ContainsRune("_.:/ ,*-", r)
}

// HasFamilyAddr reports whether c has an address of the family.
func HasFamilyAddr(c *Container, fam Family) bool {
	for _, ep := range c.Endpoints {
		if fam.Has(ep.IPv4) || fam.Has(ep.IPv6) {
			return true
		}
	}
	return false
}

// ValidBridges lists the snapshot's bridge names that are valid interface
// names, sorted and without duplicates.
func ValidBridges(snap Snapshot) []string {
	bridges := slices.Clone(snap.Bridges)
	slices.Sort(bridges)
	bridges = slices.Compact(bridges)
	return slices.DeleteFunc(bridges, func(b string) bool { return !ifaceRe.MatchString(b) })
}
