package testbed

import (
	"context"
	"net/netip"
)

// A VPN link as WireGuard or Tailscale gives one: a client namespace
// behind a plain veth in the host namespace named VPNIface (no bridge),
// dual-stack, with addresses of its own; the host routes the client's
// addresses back through it, as it routes a tunnel's peers.
var (
	VPNIface    = "wg0"
	VPNHostIP   = netip.MustParseAddr("10.99.0.1")
	VPNClient   = netip.MustParseAddr("10.99.0.2")
	VPNHostIP6  = netip.MustParseAddr("fd99::1")
	VPNClient6  = netip.MustParseAddr("fd99::2")
	vpnPrefix4  = "/24"
	vpnPrefix64 = "/64"
)

// VPNNSPath is the VPN client's namespace file (after AddVPN).
func (b *Bed) VPNNSPath() string { return "/run/netns/" + b.vpnNS }

// AddVPN creates the VPN link and its client namespace (once per bed;
// later calls do nothing). Close removes the namespace.
func (b *Bed) AddVPN(ctx context.Context) error {
	if b.vpnNS != "" {
		return nil
	}
	b.vpnNS = b.Name + "vpn"
	vc := b.Name + "vc"
	return runSteps(ctx, [][]string{
		{"ip", "netns", "add", b.vpnNS},
		{"ip", "-n", b.vpnNS, "link", "set", "lo", "up"},
		{"ip", "-n", b.HostNS, "link", "add", VPNIface, "type", "veth", "peer", "name", vc, "netns", b.vpnNS},
		{"ip", "-n", b.HostNS, "addr", "add", VPNHostIP.String() + vpnPrefix4, "dev", VPNIface},
		{"ip", "-n", b.HostNS, "addr", "add", VPNHostIP6.String() + vpnPrefix64, "dev", VPNIface, "nodad"},
		{"ip", "-n", b.HostNS, "link", "set", VPNIface, "up"},
		{"ip", "-n", b.vpnNS, "addr", "add", VPNClient.String() + vpnPrefix4, "dev", vc},
		{"ip", "-n", b.vpnNS, "addr", "add", VPNClient6.String() + vpnPrefix64, "dev", vc, "nodad"},
		{"ip", "-n", b.vpnNS, "link", "set", vc, "up"},
	})
}
