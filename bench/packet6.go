package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/dockmoat/dockmoat/rules"
)

// The packet path over IPv6: the same topology and client, connecting to
// the router's IPv6 address, which ip6tables DNATs to the server's. The
// containers are dual-stack (snapshotDual), so dockmoat installs both
// families, and the allows of IPv6 are the ones on the path.

var pp6Sizes = []int{5000, 20000}

var pp6Modes = []ppMode{
	{name: "ip6tables, ipsets (default)", sets: true},
	{name: "nftables backend, sets (default)", nft: true, sets: true},
}

var pp6Rows []ppRow

// packetSnapshot6 is packetSnapshot on a dual-stack host: the tested
// container ("zzz") is the server, at ppServer and ppServer6.
func packetSnapshot6(n int) rules.Snapshot {
	snap := snapshotDual(n - 1)
	snap.Containers = append(snap.Containers, packetSnapshot(1).Containers[0])
	zzz := &snap.Containers[len(snap.Containers)-1]
	zzz.Endpoints[0].IPv6 = netip.MustParseAddr(ppServer6)
	var ports []rules.PortBinding
	for _, b := range zzz.Ports {
		b4, b6 := b, b
		b4.HostIP, b6.HostIP = netip.IPv4Unspecified(), netip.IPv6Unspecified()
		ports = append(ports, b4, b6)
	}
	zzz.Ports = ports
	return snap
}

func packetPath6(b *strings.Builder) error {
	t, log, err := warmTopo()
	if err != nil {
		return err
	}
	defer t.Close()
	if err := t.useIPv6(); err != nil {
		return err
	}
	const d = 2 * time.Second
	for _, n := range pp6Sizes {
		row, err := t.interleaved(fmt.Sprintf("IPv6 packet path, %d ports", n), pp6Modes, func() rules.Snapshot { return packetSnapshot6(n) }, log, d)
		if err != nil {
			return err
		}
		row.n = n
		pp6Rows = append(pp6Rows, row)
		fmt.Fprintf(os.Stderr, "IPv6 packet path N=%d done\n", n)
	}
	writePacket6(b, d)
	return nil
}

func writePacket6(b *strings.Builder, d time.Duration) {
	b.WriteString("## Packet path over IPv6\n\n")
	fmt.Fprintf(b, "The packet path above (%s per run, interleaved with its baseline) over IPv6: the client connects to the router's IPv6 "+
		"address, which ip6tables DNATs to the server's, as Docker with ip6tables does. The N containers are dual-stack (an IPv4 "+
		"and an IPv6 address each, every port published on 0.0.0.0 and ::), so dockmoat installs both families and N allows in "+
		"each; the checks (8081 refused, 8080 answering) are made over IPv6. Baseline: the same IPv6 path with no dockmoat rules.\n\n", d)
	writeRateTable(b, pp6Modes, pp6Rows)
}
