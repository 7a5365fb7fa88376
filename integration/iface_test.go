package integration

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// ifaceSourced: a port open to iface:wg* answers a client that arrives on
// the host's wg0 (a plain veth, as a WireGuard link) and refuses the same
// port from the public link, over TCP and UDP; the positive control is a
// port open to everyone, which answers on the public link in the same
// run. audit calls the port restricted to anyone on wg0. six uses the
// IPv6 clients; network "" is the default bridge, an IPv4-only network
// puts IPv6 clients on the docker-proxy path.
func ifaceSourced(t *testing.T, e *env, port int, six bool, network string) {
	if err := e.bed.AddVPN(e.ctx); err != nil {
		t.Fatal(err)
	}
	p, q := strconv.Itoa(port), strconv.Itoa(port+1)
	e.run(t, testbed.Spec{Name: "vpnonly" + p, Network: network, Labels: map[string]string{"dockmoat.allow": p, "dockmoat.from": "iface:wg*"},
		Publish: []string{p + ":80", p + ":53/udp"}, Serve: []string{"80", "53/udp"}})
	e.run(t, testbed.Spec{Name: "everyone" + q, Network: network, Labels: map[string]string{"dockmoat.allow": q},
		Publish: []string{q + ":80"}, Serve: []string{"80"}})
	e.sync(t)
	vpnSrc, vpnDst, pubSrc, pubDst := testbed.VPNClient, testbed.VPNHostIP, A, testbed.HostIP
	if six {
		vpnSrc, vpnDst, pubSrc, pubDst = testbed.VPNClient6, testbed.VPNHostIP6, A6, testbed.HostIP6
	}
	try := func(ns, proto string, src, dst netip.Addr, port int, open bool) {
		t.Helper()
		timeout := closedTimeout
		if open {
			timeout = 3 * time.Second
		}
		probe := testbed.Probe{Proto: proto, Src: src, Dst: netip.AddrPortFrom(dst, uint16(port))}
		answer, err := testbed.Try(e.ctx, ns, probe, timeout)
		if open && err != nil {
			t.Errorf("%s: want an answer, got %v", probe, err)
		}
		if !open && err == nil {
			t.Errorf("%s: want no answer, got %q", probe, answer)
		}
	}
	for _, proto := range []string{"tcp", "udp"} {
		try(e.bed.VPNNSPath(), proto, vpnSrc, vpnDst, port, true)
		try(e.bed.OutNSPath(), proto, pubSrc, pubDst, port, false)
	}
	// Positive controls: the public link reaches a port open to everyone,
	// and so does the VPN.
	try(e.bed.OutNSPath(), "tcp", pubSrc, pubDst, port+1, true)
	try(e.bed.VPNNSPath(), "tcp", vpnSrc, vpnDst, port+1, true)
	rep, _ := auditJSON(t, e, e.dm.Config)
	found := false
	for _, r := range rep.Rows {
		if r.HostPort != uint16(port) || r.Proto != "tcp" || strings.Contains(r.HostIP, ":") != six {
			continue
		}
		found = true
		if r.Exposure != "restricted" || !slices.Contains(r.Sources, "anyone on "+testbed.VPNIface) || !r.Intended || r.Beyond {
			t.Errorf("audit row %s %d/tcp: %s %v intended %v beyond %v: %s", r.HostIP, r.HostPort, r.Exposure, r.Sources, r.Intended, r.Beyond, r.Reason)
		}
	}
	if !found {
		t.Errorf("audit has no row for port %d", port)
	}
}
