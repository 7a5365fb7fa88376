package rules

import (
	"cmp"
	"slices"

	"github.com/dockmoat/dockmoat/config"
)

// The proxy path. `docker run -p 5432:5432` publishes on 0.0.0.0 and ::.
// Docker DNATs a client of a family only to a container address of that
// family; a client of the other family (an IPv6 client of an IPv4-only
// container, the usual case) is answered by docker-proxy on the host
// itself, and its packets cross INPUT, never FORWARD or DOCKER-USER. The
// same happens to every binding of a family whose firewall Docker does not
// manage (Docker 20.10's IPv6 without --ip6tables).
//
// dockmoat closes that path in its own chain, DOCKMOAT-INPUT, reached by
// one jump at the top of INPUT, installed only while some binding goes
// through docker-proxy. The chain lets replies, the host itself and the
// Docker networks through, then the same allows as on the DNAT path
// (trusted sources, labels, config; sources of the family), matched on
// the published port the client connected to, and drops every other new
// connection to exactly those protocol/port pairs. Every other port of the
// host (SSH, host services, ufw's own INPUT rules) is never matched.

// Input chain and hook.
const (
	ChainInput       = "DOCKMOAT-INPUT"
	InputHookComment = "dockmoat:input"
	// ChainInputCheck, reached by a second jump after the input hook,
	// drops a new connection to a proxied binding that DOCKMOAT-INPUT did
	// not let through (ChainCheck's counterpart on the docker-proxy path).
	ChainInputCheck   = "DOCKMOAT-INPUT-CHECK"
	InputCheckComment = "dockmoat:input-check"
	// InputHookChain is the built-in chain holding the input hook.
	InputHookChain = "INPUT"
)

// proxied lists the decisions of the bindings of a family that reach
// their container through docker-proxy: every binding of a container with
// no address of the family, or every binding when Docker does not DNAT
// the family (opt.ProxyAll). Loopback bindings are local and left out.
func proxied(cfg config.Config, snap Snapshot, fam Family, opt Options) []Decision {
	var out []Decision
	for i := range snap.Containers {
		c := &snap.Containers[i]
		if len(c.Ports) == 0 || (!opt.ProxyAll && hasFamilyAddr(c, fam)) {
			continue
		}
		decisions, _ := decide(cfg, *c)
		for _, d := range decisions {
			if bindingInFamily(d.Binding, fam) && !(d.Binding.HostIP.IsValid() && d.Binding.HostIP.IsLoopback()) {
				out = append(out, d)
			}
		}
	}
	slices.SortFunc(out, func(a, b Decision) int {
		return cmp.Or(comparePorts(a.Binding, b.Binding), cmp.Compare(a.Container, b.Container))
	})
	return out
}

func hasFamilyAddr(c *Container, fam Family) bool {
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
