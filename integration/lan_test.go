package integration

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestForeignBridge: a host with a LAN bridge of its own named br-lan
// (OpenWrt, a home server) and a LAN client behind it. The bridge has
// Docker's br- prefix and is not Docker's: published ports stay closed to
// that LAN on the DNAT path and on the docker-proxy path (an IPv6 client
// of an IPv4-only container), on a network created while dockmoat was
// stopped (named by Docker, or with a bridge name of its own: then closed
// from the outside too), and under the boot guard; the host's own
// forwarding from the outside into the LAN, and its port forward (DNAT)
// there, keep working. Each closed check has its control:
// the same path answers without dockmoat, or with an allow.
func TestForeignBridge(t *testing.T) {
	needBeds(t)
	beds := pickBeds(func(eng testbed.Engine) []testbed.Engine {
		switch {
		case eng.Legacy:
			return nil
		case eng.NFTables():
			return []testbed.Engine{eng, eng.WithNFTables()}
		}
		return []testbed.Engine{eng}
	})
	requireBed(t, beds, "on Docker's nftables backend", nftBed)
	eachBed(t, beds, foreignBridgeSuite)
}

func foreignBridgeSuite(t *testing.T, eng testbed.Engine) {
	e := startEnv(t, eng)
	ctx := e.ctx
	if err := e.bed.AddLAN(ctx); err != nil {
		t.Fatal(err)
	}
	// The host routes between the outside and its LAN (its own rules, as
	// a router's; Docker set FORWARD's policy to DROP).
	// And forwards a port of its own to the LAN host (DNAT, as a router's
	// port forward): dockmoat must leave that working.
	for _, args := range [][]string{{"-A", "FORWARD", "-i", testbed.LANBridge, "-j", "ACCEPT"}, {"-A", "FORWARD", "-o", testbed.LANBridge, "-j", "ACCEPT"},
		{"-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "9700", "-j", "DNAT", "--to-destination", netip.AddrPortFrom(testbed.LANClient, 7000).String()}} {
		if out, err := e.bed.HostExec(ctx, append([]string{e.bed.Iptables()}, args...)...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	stop, err := e.bed.ServeIn(e.bed.LANNSPath(), "lanhost", "7000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	e.run(t, testbed.Spec{Name: "closed", Publish: []string{"8080:80"}, Serve: []string{"80"}})
	e.run(t, testbed.Spec{Name: "open", Labels: map[string]string{"dockmoat.allow": "8081"}, Publish: []string{"8081:80"}, Serve: []string{"80"}})
	lan := func(port int, open bool, who string) check {
		return check{proto: "tcp", src: testbed.LANClient, dst: netip.AddrPortFrom(testbed.LANHostIP, uint16(port)), open: open, who: who, fromNS: e.bed.LANNSPath()}
	}
	lan6 := func(port int, open bool, who string) check {
		return check{proto: "tcp", src: testbed.LANClient6, dst: netip.AddrPortFrom(testbed.LANHostIP6, uint16(port)), open: open, who: who, fromNS: e.bed.LANNSPath()}
	}
	intoLAN := check{proto: "tcp", src: A, dst: netip.AddrPortFrom(testbed.LANClient, 7000), open: true, who: "lanhost"}
	forward := out("tcp", A, 9700, true, "lanhost")

	// Controls: Docker alone publishes to the LAN on both paths.
	e.expect(t, lan(8080, true, "closed"), lan6(8080, true, "closed"), intoLAN, forward)
	e.startDockmoat(t, "{}\n")
	t.Run("ClosedToTheLAN", func(t *testing.T) {
		e.expect(t, lan(8080, false, ""), lan6(8080, false, ""), lan(8081, true, "open"), lan6(8081, true, "open"),
			out("tcp", A, 8080, false, ""), intoLAN, forward)
	})
	t.Run("HostBridgeAddedWhileRunning", func(t *testing.T) { e.hostBridgeAdded(t, eng) })
	t.Run("NetworkCreatedWhileStopped", func(t *testing.T) {
		if err := e.dm.Stop(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, err := e.bed.CreateNetwork(ctx, "late", "172.29.77.0/24"); err != nil {
			t.Fatal(err)
		}
		e.run(t, testbed.Spec{Name: "late", Network: "late", Publish: []string{"8090:80"}, Serve: []string{"80"}})
		if _, err := e.bed.CreateNamedBridge(ctx, "named", "172.29.78.0/24", "dmnamed0"); err != nil {
			t.Fatal(err)
		}
		e.run(t, testbed.Spec{Name: "named", Network: "named", Publish: []string{"8091:80"}, Serve: []string{"80"}})
		// IPv4 only: the docker-proxy path of a container started while
		// dockmoat is stopped is open until the first pass, from anywhere
		// (the security model's remainder), not only from this LAN.
		e.expect(t, lan(8090, false, ""), lan(8091, false, ""), out("tcp", A, 8091, false, ""),
			lan(8081, true, "open"), lan6(8081, true, "open"), intoLAN, forward)
		// The control: allowed, the same paths answer.
		if err := e.dm.WriteConfig("allow:\n  - container: late\n    ports: [\"8090\"]\n  - container: named\n    ports: [\"8091\"]\n"); err != nil {
			t.Fatal(err)
		}
		if err := e.dm.Start(); err != nil {
			t.Fatal(err)
		}
		e.sync(t)
		e.expect(t, lan(8090, true, "late"), lan6(8090, true, "late"), lan(8080, false, ""),
			lan(8091, true, "named"), out("tcp", A, 8091, true, "named"))
	})
	t.Run("BootGuard", func(t *testing.T) {
		if err := e.dm.Stop(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if out, err := e.bed.Exec(ctx, dockmoatBin, "uninstall"); err != nil {
			t.Fatalf("uninstall: %v: %s", err, out)
		}
		e.expect(t, lan(8080, true, "closed"))
		if out, err := e.bed.Exec(ctx, dockmoatBin, "guard"); err != nil {
			t.Fatalf("guard: %v: %s", err, out)
		}
		e.expect(t, lan(8080, false, ""), lan(8081, false, ""), intoLAN)
	})
}

// hostBridgeAdded: a bridge of the host's created while dockmoat runs is
// known as the host's within a second (a link watch; the resync is 30 s),
// in the rules installed in the kernel.
func (e *env) hostBridgeAdded(t *testing.T, eng testbed.Engine) {
	installed := func() string {
		var out string
		var err error
		if eng.FirewallBackend == "nftables" {
			out, err = e.bed.HostExec(e.ctx, "nft", "list", "table", "inet", "dockmoat")
		} else {
			out, err = e.bed.IptablesSave(e.ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if strings.Contains(installed(), "br-late") {
		t.Fatal("br-late named before it exists")
	}
	if out, err := e.bed.HostExec(e.ctx, "ip", "link", "add", "br-late", "type", "bridge"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = e.bed.HostExec(e.ctx, "ip", "link", "del", "br-late") })
	start := time.Now()
	for !strings.Contains(installed(), "br-late") {
		if time.Since(start) > 15*time.Second {
			t.Fatal("br-late not in dockmoat's rules 15 s after it appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("br-late known as the host's after %v", time.Since(start).Round(time.Millisecond))
}
