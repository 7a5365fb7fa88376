package reconciler

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/dockmoat/dockmoat/rules"
)

// Egress revocation: when a family's egress policy changes (a container
// becomes deny, an allowed destination is removed, an address moves) or
// is first seen, the worker cuts the outbound sessions of deny containers
// that the newest policy does not allow, as the kernel would refuse them
// as new connections. Sessions to addresses of the Docker networks
// (local: the bridges' subnets) are kept: traffic on a container's own
// network is not egress, and a session to another network was routed by
// Docker's rules, not ours. Inbound sessions are never matched: their
// source is the client, not the container.

// egressKey is a family's egress policy as one comparable string.
func egressKey(eg []rules.Egress) string {
	var b strings.Builder
	for _, e := range eg {
		fmt.Fprintf(&b, "%s %v %v %v\n", e.Container, e.From, e.Allow, e.DNS)
	}
	return b.String()
}

// egressCut matches the sessions opened by a deny container that its
// policy does not allow.
func egressCut(eg []rules.Egress, local []netip.Prefix) func(Flow) bool {
	// local also holds the host's own addresses as host prefixes: those
	// are egress (to the host), only the bridges' subnets are kept.
	local = slices.DeleteFunc(slices.Clone(local), netip.Prefix.IsSingleIP)
	by := map[netip.Addr]*rules.Egress{}
	for i := range eg {
		for _, f := range eg[i].From {
			by[f.Addr] = &eg[i]
		}
	}
	return func(f Flow) bool {
		e := by[f.Src]
		if e == nil || slices.ContainsFunc(local, func(p netip.Prefix) bool { return p.Contains(f.OrigDst) }) {
			return false
		}
		return !e.Allows(f.OrigDst, f.OrigDstPort, f.Proto)
	}
}
