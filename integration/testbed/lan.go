package testbed

import (
	"context"
	"net/netip"
)

// A LAN behind a bridge of the host's own (OpenWrt's br-lan, a home
// server's LAN bridge): a client namespace on a veth enslaved to Bridge
// in the host namespace, dual-stack. The bridge's name has Docker's br-
// prefix and is not Docker's.
var (
	LANHostIP   = netip.MustParseAddr("192.0.2.1")
	LANClient   = netip.MustParseAddr("192.0.2.10")
	LANHostIP6  = netip.MustParseAddr("2001:db8:1a::1")
	LANClient6  = netip.MustParseAddr("2001:db8:1a::10")
	LANBridge   = "br-lan"
	lanPrefix4  = "/24"
	lanPrefix64 = "/64"
)

// LANNSPath is the LAN client's namespace file (after AddLAN).
func (b *Bed) LANNSPath() string { return "/run/netns/" + b.lanNS }

// AddLAN creates br-lan in the host namespace with the host's LAN
// addresses, and the LAN client namespace behind it, routed to the
// outside through the host. Close removes the namespace.
func (b *Bed) AddLAN(ctx context.Context) error {
	b.lanNS = b.Name + "lan"
	vh, vl := b.Name+"lh", b.Name+"ll"
	return runSteps(ctx, [][]string{
		{"ip", "netns", "add", b.lanNS},
		{"ip", "-n", b.lanNS, "link", "set", "lo", "up"},
		{"ip", "-n", b.HostNS, "link", "add", LANBridge, "type", "bridge"},
		{"ip", "link", "add", vh, "netns", b.HostNS, "type", "veth", "peer", "name", vl, "netns", b.lanNS},
		{"ip", "-n", b.HostNS, "link", "set", vh, "master", LANBridge},
		{"ip", "-n", b.HostNS, "link", "set", vh, "up"},
		{"ip", "-n", b.HostNS, "addr", "add", LANHostIP.String() + lanPrefix4, "dev", LANBridge},
		{"ip", "-n", b.HostNS, "addr", "add", LANHostIP6.String() + lanPrefix64, "dev", LANBridge, "nodad"},
		{"ip", "-n", b.HostNS, "link", "set", LANBridge, "up"},
		{"ip", "-n", b.lanNS, "addr", "add", LANClient.String() + lanPrefix4, "dev", vl},
		{"ip", "-n", b.lanNS, "addr", "add", LANClient6.String() + lanPrefix64, "dev", vl, "nodad"},
		{"ip", "-n", b.lanNS, "link", "set", vl, "up"},
		{"ip", "-n", b.lanNS, "route", "add", "default", "via", LANHostIP.String()},
		// The outside reaches the LAN through the host, as through a router.
		{"ip", "-n", b.OutNS, "route", "add", "192.0.2.0/24", "via", HostIP.String()},
	})
}
