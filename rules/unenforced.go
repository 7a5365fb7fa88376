package rules

import (
	"maps"
	"slices"
)

// What dockmoat cannot enforce, said so rather than shown as closed. A
// container on a macvlan or ipvlan network sits on the LAN's own link:
// the LAN reaches it, and it reaches the LAN, without crossing the host's
// forwarding, so neither its services nor its egress meet dockmoat's
// rules. A container started with network_mode container:<id> has no
// network of its own: its egress is the other container's. Both are
// reported (plan, audit), never silently taken for protected.

// directProblems reports every container on a Direct network.
func directProblems(snap Snapshot) []Problem {
	if len(snap.Direct) == 0 {
		return nil
	}
	var out []Problem
	for _, c := range snap.Containers {
		for _, ep := range c.Endpoints {
			if driver, ok := snap.Direct[ep.Network]; ok {
				out = append(out, Problem{Container: "-", Label: "container", Value: c.Name + " on " + driver + " network " + ep.Network,
					Msg: "on the LAN's own link: its services are reached, and it reaches out, without crossing the host's forwarding; dockmoat filters none of it"})
			}
		}
	}
	return out
}

// egressUnenforced reports why a deny container's egress is not (all)
// enforced: it shares another container's network, or it is on a
// network of the LAN's own link.
func egressUnenforced(snap Snapshot, c *Container) []Problem {
	var out []Problem
	bad := func(msg string) {
		out = append(out, Problem{Container: c.Name, Label: LabelEgress, Value: c.Labels[LabelEgress], Msg: msg})
	}
	if c.SharesNetOf != "" {
		bad("egress is NOT enforced: the container uses the network of container " + short(c.SharesNetOf) +
			" (network_mode container:…); give that container the egress policy")
	}
	for _, n := range slices.Sorted(maps.Keys(snap.Direct)) {
		if slices.ContainsFunc(c.Endpoints, func(ep Endpoint) bool { return ep.Network == n }) {
			bad("egress is NOT enforced on " + snap.Direct[n] + " network " + n + ": its traffic does not cross the host's forwarding")
		}
	}
	return out
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
