package rules

import (
	"regexp"
	"slices"
	"strings"
)

// Foreign bridges. dockmoat's catch-all for networks it has not seen yet
// matches Docker's name pattern, br-+ (unseenNetworks in the backends). A
// host can have bridges of its own with that prefix — OpenWrt's br-lan,
// OpenStack's br-ex, a home server's LAN bridge — and the pattern alone
// would treat them as Docker's: traffic from that LAN would pass as a
// container's (to docker-proxy, to networks not seen yet, through the boot
// guard), and the host's own forwarding into it would meet dockmoat's
// default deny. Docker names a bridge br-<the first 12 hex digits of the
// network id> unless told otherwise, and then its network list says so:
// a br-* interface that Docker does not list and that is not named that
// way is the host's, and the backends exempt it by name before the
// catch-all.

// dockerBridgeName is the name Docker gives a network's bridge.
var dockerBridgeName = regexp.MustCompile(`^br-[0-9a-f]{12}$`)

// ForeignBridges lists, sorted, the host interfaces (links) that the
// catch-all pattern would take for Docker's but that Docker does not list
// (known) and did not name.
func ForeignBridges(links, known []string) []string {
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l, "br-") && ifaceRe.MatchString(l) && !dockerBridgeName.MatchString(l) && !slices.Contains(known, l) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// HostOutIfaces lists, sorted, the interfaces a routed packet can leave by
// that are the host's: the links (no bridge ports among them; nil when
// unknown) less Docker's bridges (known, and any named as Docker names
// them) and the host's own br-* bridges (foreign, passed by name already). The backends
// let a DNATed connection into one of these through (a port forward of
// the host's) and send one into any other interface to the ingress
// policy: a network created while dockmoat was stopped, whatever its
// bridge's name, is closed until the next pass sees it.
func HostOutIfaces(snap Snapshot, known, foreign []string) []string {
	var out []string
	for _, l := range snap.Links {
		if ifaceRe.MatchString(l) && !dockerBridgeName.MatchString(l) && !slices.Contains(known, l) && !slices.Contains(foreign, l) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
