package rules

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

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
	// InputHookChain is the built-in chain holding the input hook.
	InputHookChain = "INPUT"
)

// InputHookSpec is the rule spec of the jump at the top of INPUT.
func InputHookSpec() []string {
	return []string{"-m", "comment", "--comment", InputHookComment, "-j", ChainInput}
}

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

// inputChain renders DOCKMOAT-INPUT for the proxied bindings; ok is false
// when there are none (no chain, no hook).
func inputChain(cfg config.Config, bridges []string, fam Family, px []Decision) (Chain, bool) {
	if len(px) == 0 {
		return Chain{}, false
	}
	ch := Chain{Name: ChainInput}
	ch.add(Desc("replies and related traffic"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	ch.add(Desc("from the host itself"), "-i", "lo", "-j", "RETURN")
	for _, b := range bridges {
		ch.add(Desc("from docker network "+b), "-i", b, "-j", "RETURN")
	}
	for _, b := range UnseenBridges(bridges) {
		ch.add(Desc("from a docker network not seen yet "+BridgePattern(b)), "-i", b, "-j", "RETURN")
	}
	for _, src := range SortedPrefixes(cfg.TrustedSources) {
		if fam.Has(src.Addr()) {
			ch.add(Desc("trusted source "+src.String()), "-s", src.String(), "-j", "RETURN")
		}
	}
	for _, d := range px {
		for _, src := range SourcesOf(d, fam) {
			spec := proxySpec(d.Binding, fam)
			text := fmt.Sprintf("allow %s %d/%s via docker-proxy", d.Container, d.Binding.HostPort, d.Binding.Proto)
			if src != "" {
				spec = append([]string{"-s", src}, spec...)
				text += " from " + src
			}
			ch.add(Desc(text), append(spec, "-j", "RETURN")...)
		}
	}
	for _, d := range px {
		text := fmt.Sprintf("%s %d/%s via docker-proxy: not allowed", d.Container, d.Binding.HostPort, d.Binding.Proto)
		ch.add(Desc(text), append(proxySpec(d.Binding, fam), "-j", "DROP")...)
	}
	return ch, true
}

// proxySpec matches new connections to a binding as docker-proxy gets
// them: the host address (when bound to one) and the published port.
func proxySpec(b PortBinding, fam Family) []string {
	var spec []string
	if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
		spec = append(spec, "-d", b.HostIP.Unmap().String()+fam.bits())
	}
	return append(spec, "-p", b.Proto, "-m", b.Proto, "--dport", strconv.Itoa(int(b.HostPort)))
}

// ValidBridges lists the snapshot's bridge names that are valid interface
// names, sorted and without duplicates.
func ValidBridges(snap Snapshot) []string {
	bridges := slices.Clone(snap.Bridges)
	slices.Sort(bridges)
	bridges = slices.Compact(bridges)
	return slices.DeleteFunc(bridges, func(b string) bool { return !ifaceRe.MatchString(b) })
}
