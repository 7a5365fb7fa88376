package rules

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/config"
)

// Egress: a container's outbound connections. A container is `deny` when
// its label dockmoat.egress=deny or an `egress:` rule of the config
// selects it (the stricter word wins: a label cannot lift a config deny);
// then a new connection it opens that leaves its Docker network, to
// another network, the outside or the host itself, is refused unless a
// destination of its label dockmoat.egress.allow or of a selecting config
// rule allows it, or it is a DNS query to a resolver Docker's embedded
// resolver forwards to. Replies to inbound connections are established
// traffic and never meet the egress rules; traffic that stays on the
// container's own bridge is not routed and is not matched.
//
// When in doubt, closed: an invalid dockmoat.egress value means deny, and
// an invalid allow list allows nothing (DNS still works).

// Egress label keys.
const (
	LabelEgress      = "dockmoat.egress"
	LabelEgressAllow = "dockmoat.egress.allow"
)

// NeighbourDiscovery are the ICMPv6 messages a container sends to its
// gateway (the host, so through input) before any IPv6 packet can leave:
// router and neighbour solicitations and adverts, and MLD reports. They
// are not connections and conntrack does not track them, so the egress
// chains let them through first: without them a deny container would
// lose IPv6 altogether, inbound replies included. Each is let through
// only with the hop limit the standard gives it (255 for ND, RFC 4861;
// 1 for MLD, RFC 3810): a routed packet has its hop limit decremented
// before the forward hook, so none of them can leave the link, which
// would otherwise be a one-way channel out of a deny container.
var NeighbourDiscovery = []struct {
	Name     string
	Type     int
	HopLimit int
}{{"router-solicitation", 133, 255}, {"neighbour-solicitation", 135, 255}, {"neighbour-advertisement", 136, 255}, {"mld2-listener-report", 143, 1}}

// Egress is one deny container's outbound policy in one family.
type Egress struct {
	Container string
	// From are the container's addresses of the family with the bridge
	// each is on: a connection from Addr in through Bridge, and not back
	// out through Bridge, leaves the container's network.
	From []EgressFrom
	// Allow are the destinations of the family, label's and config's.
	Allow []config.EgressDest
	// DNS are the resolvers of the family Docker forwards its queries to
	// (port 53, UDP and TCP).
	DNS    []netip.Addr
	Origin string
}

// EgressFrom is one of a container's addresses, the bridge it is on and
// the host end of the container's veth there ("" when unknown). Iface is
// what makes Addr true: a deny container can send from any address (it
// has CAP_NET_RAW by default), so the backends drop what comes in through
// Iface from another address before the egress rules read the address.
type EgressFrom struct {
	Bridge string
	Addr   netip.Addr
	Iface  string
}

// Allows reports whether a new connection from the container to dst is
// allowed (revocation asks; the kernel decides the same from the rules).
func (e Egress) Allows(dst netip.Addr, port uint16, proto string) bool {
	if port == 53 && (proto == "udp" || proto == "tcp") && slices.Contains(e.DNS, dst.Unmap()) {
		return true
	}
	return slices.ContainsFunc(e.Allow, func(d config.EgressDest) bool { return d.Allows(dst, port, proto) })
}

// Pass is a destination a deny container may reach, and why.
type Pass struct {
	Dest config.EgressDest
	What string // "dns resolver" or "allowed"
}

// Passes are what the backends render before the reject: the resolvers
// (53/udp and 53/tcp each), then the allowed destinations.
func (e Egress) Passes() []Pass {
	var out []Pass
	for _, a := range e.DNS {
		for _, proto := range []string{"udp", "tcp"} {
			out = append(out, Pass{config.EgressDest{Prefix: netip.PrefixFrom(a, a.BitLen()), Lo: 53, Hi: 53, Proto: proto}, "dns resolver"})
		}
	}
	for _, d := range e.Allow {
		out = append(out, Pass{d, "allowed"})
	}
	return out
}

// Describe says the policy for people (plan, audit).
func (e Egress) Describe() string {
	if len(e.Allow) == 0 {
		return "deny (" + e.Origin + ")"
	}
	var d []string
	for _, a := range e.Allow {
		d = append(d, a.String())
	}
	return "deny except " + strings.Join(d, ", ") + " (" + e.Origin + ")"
}

// egressOf decides a container's egress: deny or not, the destinations
// allowed in every family, where it comes from, and label problems.
func egressOf(cfg config.Config, c Container) (deny bool, allow []config.EgressDest, origin []string, problems []Problem) {
	bad := func(k, msg string) {
		problems = append(problems, Problem{Container: c.Name, Label: k, Value: c.Labels[k], Msg: msg})
	}
	v, labelled := c.Labels[LabelEgress]
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "allow":
	case "deny":
		deny = true
		origin = append(origin, "label "+LabelEgress+"=deny")
	default:
		if labelled {
			deny = true
			origin = append(origin, "label "+LabelEgress+" invalid")
			bad(LabelEgress, "want deny or allow; egress is deny (only DNS) until it is fixed")
		}
	}
	if s, ok := c.Labels[LabelEgressAllow]; ok {
		dests, err := config.ParseEgressList(s)
		switch {
		case err != nil:
			bad(LabelEgressAllow, err.Error()+"; none of its destinations is allowed until it is fixed")
		case !deny && !slices.ContainsFunc(cfg.Egress.Rules, func(r config.EgressRule) bool { return r.Deny && r.Matches(c.Name, c.Labels) }):
			bad(LabelEgressAllow, "has no effect without "+LabelEgress+"=deny: every destination is allowed")
		default:
			allow = append(allow, dests...)
		}
	}
	for i, r := range cfg.Egress.Rules {
		if !r.Matches(c.Name, c.Labels) {
			continue
		}
		if r.Deny {
			deny = true
			origin = append(origin, fmt.Sprintf("config egress[%d]", i))
		}
		allow = append(allow, r.Allow...)
	}
	return deny, allow, origin, problems
}

// EgressPolicies are a family's deny containers' policies, without the
// rest of the policy (the bridge table under the iptables backend needs
// only them; policy.Build's Result.Egress is the same list).
func EgressPolicies(cfg config.Config, snap Snapshot, fam Family) []Egress {
	eg, _ := DecideEgress(cfg, TrustImageLabels(cfg, snap), fam)
	return eg
}

// resolvers are the resolvers Docker forwards to: the config's
// egress_dns, or the host's.
func resolvers(cfg config.Config, snap Snapshot) []netip.Addr {
	if len(cfg.Egress.DNS) > 0 {
		return cfg.Egress.DNS
	}
	return snap.DNS
}

// DecideEgress lists the deny containers' policies of a family, by name.
func DecideEgress(cfg config.Config, snap Snapshot, fam Family) ([]Egress, []Problem) {
	var out []Egress
	var problems []Problem
	dns := resolvers(cfg, snap)
	for i := range snap.Containers {
		c := &snap.Containers[i]
		if !HasEgressLabels(c.Labels) && len(cfg.Egress.Rules) == 0 {
			continue
		}
		deny, allow, origin, p := egressOf(cfg, *c)
		if fam == IPv4 { // reported once, not per family
			problems = append(problems, p...)
			if deny {
				problems = append(problems, egressUnenforced(snap, c)...)
			}
		}
		if !deny || c.Mesh || len(FamilyAddrs(*c, fam)) == 0 {
			continue
		}
		e := Egress{Container: c.Name, Origin: strings.Join(origin, ", ")}
		for _, ep := range c.Endpoints {
			br := snap.NetworkBridges[ep.Network]
			for _, a := range []netip.Addr{ep.IPv4, ep.IPv6} {
				if fam.Has(a) && br != "" && ifaceRe.MatchString(br) {
					e.From = append(e.From, EgressFrom{Bridge: br, Addr: a.Unmap(), Iface: ep.HostIface})
				}
			}
			if fam == IPv4 && snap.Links != nil && br != "" && !c.Starting && !ifaceRe.MatchString(ep.HostIface) {
				problems = append(problems, Problem{Container: c.Name, Label: LabelEgress, Value: c.Labels[LabelEgress],
					Msg: "its interface on " + br + " was not found (its network namespace " + strconv.Quote(c.Sandbox) +
						" could not be read): a packet it sends from another address is not refused"})
			}
		}
		for _, d := range allow {
			if fam.Has(d.Prefix.Addr()) {
				e.Allow = append(e.Allow, d)
			}
		}
		for _, a := range dns {
			if fam.Has(a) && !a.IsLoopback() {
				e.DNS = append(e.DNS, a.Unmap())
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Egress) int { return cmp.Compare(a.Container, b.Container) })
	return out, problems
}

// HasEgressLabels reports whether labels set an egress policy: without
// egress rules in the config, only such containers have one.
func HasEgressLabels(labels map[string]string) bool {
	_, a := labels[LabelEgress]
	_, b := labels[LabelEgressAllow]
	return a || b
}

// DNSFromHost lists the loopback resolvers among the snapshot's: Docker
// (25 and later) sends a container's queries to them from the host's own
// namespace, so no egress rule is involved (plan and audit say so).
func DNSFromHost(cfg config.Config, snap Snapshot) []netip.Addr {
	var out []netip.Addr
	for _, a := range resolvers(cfg, snap) {
		if a.IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}
