package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dockmoat/dockmoat/rules"
)

// The docker-proxy path: an IPv6 client of IPv4-only containers is
// answered by docker-proxy on the host itself, so its packets cross
// INPUT, where DOCKMOAT-INPUT matches the published ports as runs of
// consecutive ports. Here no two allowed ports are consecutive, the
// worst case: one run, so one rule, per port.

const proxyN = 1000

// proxyPorts are the tested (allowed, sorted last) and the closed
// (published, not allowed) ports of proxySnapshot(n).
func proxyPorts(n int) (open, closed int) {
	open = 20000 + 2*(n-1)
	return open, open + 1
}

// proxySnapshot is n IPv4-only containers, each publishing one allowed
// port on 0.0.0.0 and :: (20000, 20002, …), and one more publishing the
// port after the last, not allowed.
func proxySnapshot(n int) rules.Snapshot {
	snap := snapshot(n + 1)
	for i := range snap.Containers {
		c := &snap.Containers[i]
		b4 := rules.PortBinding{HostIP: netip.IPv4Unspecified(), HostPort: uint16(20000 + 2*i), ContainerPort: 80, Proto: "tcp"}
		b6 := b4
		b6.HostIP = netip.IPv6Unspecified()
		c.Ports = []rules.PortBinding{b4, b6}
	}
	last := &snap.Containers[n]
	_, closed := proxyPorts(n)
	last.ID, last.Name, last.Labels = "zzzz", "zzzz-closed", nil
	last.Ports[0].HostPort, last.Ports[1].HostPort = uint16(closed), uint16(closed)
	return snap
}

var proxyModes = []ppMode{
	{name: "ip6tables (DOCKMOAT-INPUT)", sets: true},
	{name: "nftables backend", nft: true, sets: true},
}

// proxyPath measures new IPv6 connections per second to a port that
// docker-proxy (here a server in the router namespace) answers, with
// dockmoat's input path for proxyN proxied ports, against no rules.
func proxyPath(b *strings.Builder) error {
	row, d, err := pathRow("proxy path", proxyModes, func(t *topo) error {
		t.open.port, t.closed.port = proxyPorts(proxyN)
		if err := t.startProxy(t.open.port, t.closed.port); err != nil {
			return err
		}
		return t.useIPv6()
	}, func() rules.Snapshot { return proxySnapshot(proxyN) })
	if err != nil {
		return err
	}
	b.WriteString("## The docker-proxy path: 1,000 proxied ports on INPUT\n\n")
	fmt.Fprintf(b, "New IPv6 connections per second (%s per run, interleaved) to a published port of an IPv4-only container: Docker does not "+
		"DNAT them, docker-proxy answers on the host (here a server in the router namespace), and the packets cross INPUT. %d "+
		"containers publish one allowed port each, no two consecutive (so each is a run of its own: the worst case for rules matched "+
		"by runs of ports); the tested port is the last. Checks: the published, not allowed port after it is refused with dockmoat "+
		"and answers without. Baseline: no rules.\n\n", d, proxyN)
	writePathRows(b, proxyModes, row)
	return nil
}
