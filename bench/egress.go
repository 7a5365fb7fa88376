package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dockmoat/dockmoat/rules"
)

// The egress path: new outbound TCP connections per second from a
// container (the server namespace, from ppServer) to a server outside
// (the client namespace), through the router's FORWARD, while egressN
// other containers have `dockmoat.egress: deny`. The measured container
// has no egress policy, so its connections are let through only after
// every deny container's rules were looked at: the cost egress policies
// put on everyone else's outbound connections.

const (
	egressN    = 1000
	egressPort = 9090
)

// egressSnapshot is packetSnapshot(1) (the measured container, 8080
// allowed) plus n deny containers: n-1 on addresses of their own, and
// one on ppServer2 in the measured container's namespace, whose refused
// connection is the run's control.
func egressSnapshot(n int) rules.Snapshot {
	snap := packetSnapshot(1)
	snap.NetworkBridges = map[string]string{"bridge": "docker0"}
	deny := func(i int, addr netip.Addr, iface string) rules.Container {
		return rules.Container{ID: fmt.Sprintf("e%d", i), Name: fmt.Sprintf("deny%04d", i),
			Labels:    map[string]string{"dockmoat.egress": "deny"},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: addr, HostIface: iface}}, Rev: uint64(i + 1)}
	}
	for i := 0; i < n-1; i++ {
		addr := netip.AddrFrom4([4]byte{10, 98, byte(i >> 8), byte(i)})
		snap.Containers = append(snap.Containers, deny(i, addr, fmt.Sprintf("veth%05d", i)))
	}
	snap.Containers = append(snap.Containers, deny(n-1, netip.MustParseAddr(ppServer2), "docker0"))
	return snap
}

// egressResult is the egress run's row, for the goals table.
var egressResult ppRow

var egressModes = []ppMode{
	{name: "iptables (DOCKMOAT, DOCKMOAT-EGRESS)", sets: true},
	{name: "nftables backend", nft: true, sets: true},
}

// egressPath measures the measured container's outbound connections
// with the egressN deny policies installed, against no rules.
func egressPath(b *strings.Builder) error {
	row, d, err := pathRow("egress path", egressModes, func(t *topo) error {
		t.open = probe{ns: t.server, from: ppServer, to: ppClient, port: egressPort}
		t.closed = probe{ns: t.server, from: ppServer2, to: ppClient, port: egressPort}
		return t.serveIn(t.client, egressPort)
	}, func() rules.Snapshot { return egressSnapshot(egressN) })
	if err != nil {
		return err
	}
	egressResult = row
	b.WriteString("## Egress: outbound connections with 1,000 deny containers\n\n")
	fmt.Fprintf(b, "New outbound TCP connections per second (%s per run, interleaved) from a container without an egress policy to a server "+
		"outside, through the router's FORWARD (Docker's `-i docker0 -j ACCEPT`), while %d other containers have "+
		"`dockmoat.egress: deny`. Checks: with dockmoat, a deny container in the same namespace (a second address) is refused and "+
		"the measured one answers; without, both answer. Baseline: no rules.\n\n", d, egressN)
	writePathRows(b, egressModes, row)
	return nil
}
