package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/dockerwatch"
	"github.com/dockmoat/dockmoat/integration/testbed"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
)

// TestEgress: containers' outbound connections, from inside containers on
// a user-defined network (Docker's embedded resolver), to servers in the
// outside namespace and on the host. Docker 20.10 (iptables-nft and
// iptables-legacy) and 28 with iptables; Docker 29 dual-stack with its
// iptables backend and with its nftables backend.
//
// DNS is end to end: the test serves DNS in the outside namespace on the
// address of the machine's own resolver (read as Docker reads it, so the
// bed's dockerd forwards there, and dockmoat reads the same file), routed
// from the bed's host namespace; nothing leaves the bed's namespaces.
func TestEgress(t *testing.T) {
	needBeds(t)
	beds := pickBeds(func(eng testbed.Engine) []testbed.Engine {
		if eng.NFTables() { // dual-stack, on both of its firewall backends
			return []testbed.Engine{eng.WithIPv6(), eng.WithIPv6().WithNFTables()}
		}
		return []testbed.Engine{eng}
	})
	requireBed(t, beds, "on iptables-legacy", legacyBed)
	requireBed(t, beds, "on Docker's nftables backend", nftBed)
	eachBed(t, beds, egressBed)
}

// egress is one bed of TestEgress.
type egress struct {
	*env
	world, world6 netip.Addr // the outside servers' addresses (A and its IPv6)
	netID         string     // egnet's
}

func egressBed(t *testing.T, eng testbed.Engine) {
	e := &egress{env: startEnv(t, eng), world: A, world6: A6}
	ctx := e.ctx
	upstream := e.serveUpstream(t)
	stop, err := e.bed.ServeIn(e.bed.OutNSPath(), "world", "7000", "7100/echo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	stopHost, err := e.bed.ServeOnHost("hostsvc", "2222/tcp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopHost)
	if eng.IPv6 {
		e.netID, err = e.bed.CreateNetwork6(ctx, "egnet", "172.29.210.0/24", "fd00:d0c:210::/64")
	} else {
		e.netID, err = e.bed.CreateNetwork(ctx, "egnet", "172.29.210.0/24")
	}
	if err != nil {
		t.Fatal(err)
	}
	peer := e.run(t, testbed.Spec{Name: "peer", Network: "egnet", Serve: []string{"80"}})
	worldTCP := "tcp:" + netip.AddrPortFrom(e.world, 7000).String()
	worldUDP := "udp:" + netip.AddrPortFrom(e.world, 7000).String()
	otherTCP := "tcp:" + netip.AddrPortFrom(B, 7000).String()
	t.Logf("upstream resolver %s, served in the outside namespace", upstream)
	hostTCP := "tcp:" + netip.AddrPortFrom(testbed.HostIP, 2222).String()
	peerTCP := "tcp:" + netip.AddrPortFrom(peer.IP, 80).String()
	world6 := "tcp:" + netip.AddrPortFrom(e.world6, 7000).String()
	// Name lookups through Docker's embedded resolver (127.0.0.11, a
	// user-defined network): a container's name (answered by Docker) and
	// an outside name (forwarded to the upstream, which answers
	// 192.0.2.99).
	lookup := "dns:upstream.example"
	all := []string{worldTCP, worldUDP, otherTCP, hostTCP, peerTCP, lookup, "dns:peer"}
	if eng.IPv6 {
		all = append(all, world6)
	}

	// Positive control: without dockmoat every destination answers, and
	// the name resolves through Docker's resolver and the upstream.
	e.probe(t, "control", nil, all, nil)

	e.startDockmoat(t, "{}\n")
	denySrv := e.run(t, testbed.Spec{Name: "denysrv", Network: "egnet", Serve: []string{"80"}, Publish: []string{"8090:80"},
		Labels: map[string]string{"dockmoat.egress": "deny", "dockmoat.allow": "8090"}})
	e.sync(t)

	t.Run("DenyRefusesOutsideAndHostKeepsDNSAndOwnNetwork", func(t *testing.T) {
		e.probe(t, "free", nil, all, nil)
		closed := []string{worldTCP, worldUDP, otherTCP, hostTCP}
		if eng.IPv6 {
			closed = append(closed, world6)
		}
		e.probe(t, "denied", map[string]string{"dockmoat.egress": "deny"}, []string{lookup, peerTCP}, closed)
	})
	if eng.IPv6 {
		t.Run("NeighbourDiscoveryStaysOnLink", func(t *testing.T) { e.ndStaysOnLink(t) })
	}
	t.Run("SpoofedSourceAndLinkLocalRefused", func(t *testing.T) { e.spoofed(t, eng.IPv6) })
	if eng.FirewallBackend != "nftables" {
		// The iptables layout: DOCKMOAT-CHECK refuses what DOCKMOAT-EGRESS
		// no longer decides (the nftables table is not yet fail-closed).
		t.Run("EgressChainFlushedStaysRefused", func(t *testing.T) {
			e.flushedEgress(t, worldTCP, hostTCP, peerTCP)
		})
	}
	t.Run("AllowListExactly", func(t *testing.T) {
		list := netip.AddrPortFrom(e.world, 7000).String() + "/tcp"
		open := []string{worldTCP, lookup}
		closed := []string{worldUDP, otherTCP, hostTCP}
		if eng.IPv6 {
			list += ", [" + e.world6.String() + "]:7000/tcp"
			open = append(open, world6)
			closed = append(closed, "tcp:"+netip.AddrPortFrom(B6, 7000).String())
		}
		e.probe(t, "listed", map[string]string{"dockmoat.egress": "deny", "dockmoat.egress.allow": list}, open, closed)
	})
	// The resolver rule is what lets Docker 20.10's forwarded queries out:
	// pointed elsewhere (egress_dns), the deny container's outside lookups
	// fail there. Docker 26 and later forward from the host's namespace
	// (ExtServers: [host(…)]): no egress rule is involved, they resolve.
	t.Run("ResolverRuleCarriesForwardedQueries", func(t *testing.T) {
		e.reload(t, "egress_dns: [192.0.2.1]\n")
		defer e.reload(t, "{}\n")
		deny := map[string]string{"dockmoat.egress": "deny"}
		if !eng.DNSFromHost() {
			e.probe(t, "wrongdns", deny, []string{"dns:peer"}, []string{lookup})
		} else {
			e.probe(t, "wrongdns", deny, []string{"dns:peer", lookup}, nil)
		}
	})
	t.Run("InboundToDenyContainerUnaffected", func(t *testing.T) {
		e.serverUp(t, denySrv, "tcp", 80)
		e.expect(t, out("tcp", A, 8090, true, "denysrv"), out("tcp", B, 8090, true, "denysrv"))
		if eng.IPv6 {
			e.expect(t, out6("tcp", A6, 8090, true, "denysrv"))
		}
	})
	// Audit evaluates the installed rules for a first packet from the deny
	// container to a refused destination, outside and to the host, in
	// each family it has an address in; the probes above are the same
	// paths tried for real.
	t.Run("AuditShowsEgressEnforced", func(t *testing.T) {
		rep, _ := auditJSON(t, e.env, e.dm.Config)
		fams := map[string]bool{}
		for _, r := range rep.Egress {
			if r.Container != "denysrv" {
				continue
			}
			fams[r.Family] = true
			if r.Beyond || !strings.HasPrefix(r.Outside, "refused") || !strings.HasPrefix(r.Host, "refused") {
				t.Errorf("denysrv %s: %+v", r.Family, r)
			}
		}
		if !fams["ipv4"] || fams["ipv6"] != eng.IPv6 {
			t.Errorf("egress rows of denysrv per family: %v (bed IPv6 %v): %+v", fams, eng.IPv6, rep.Egress)
		}
		if out, _ := e.bed.Exec(ctx, dockmoatBin, "plan", "--config", e.dm.Config); !strings.Contains(out, "denysrv") || !strings.Contains(out, "deny (label dockmoat.egress=deny)") {
			t.Errorf("plan does not list denysrv's egress:\n%s", out)
		}
	})
	t.Run("NarrowingCutsLiveSession", func(t *testing.T) {
		e.narrowCutsSession(t)
	})
	t.Run("RestartNeverLetsDenyOut", func(t *testing.T) {
		e.restartKeepsDeny(t)
	})
}

// serveUpstream puts the machine's first IPv4 resolver (as Docker reads
// it) on the outside namespace, routed from the bed's host, and serves
// DNS there. Both addresses are inside the bed's own namespaces.
func (e *egress) serveUpstream(t *testing.T) netip.Addr {
	t.Helper()
	servers, err := dockerwatch.HostResolvers("")
	if err != nil {
		t.Fatal(err)
	}
	var up netip.Addr
	for _, s := range servers {
		if s.Is4() && !s.IsLoopback() {
			up = s
			break
		}
	}
	if !up.IsValid() {
		t.Fatalf("this machine's resolv.conf names no IPv4 resolver off loopback (%v): the DNS leg needs one to stand in for", servers)
	}
	for _, args := range [][]string{
		{"-n", e.bed.OutNS, "addr", "add", up.String() + "/32", "dev", e.bed.Name + "vo"},
		{"-n", e.bed.HostNS, "route", "add", up.String() + "/32", "via", A.String()},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	stop, err := e.bed.ServeIn(e.bed.OutNSPath(), "upstream", netip.AddrPortFrom(up, 53).String()+"/dns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return up
}

// probe runs a one-shot container that tries each spec once (after a
// pause, so dockmoat has seen it start) and checks that exactly the
// open ones work. The outside name must resolve to the upstream's answer.
func (e *egress) probe(t *testing.T, name string, labels map[string]string, open, closed []string) {
	t.Helper()
	args := append([]string{"probe", "wait=1500ms"}, append(append([]string(nil), open...), closed...)...)
	c := e.run(t, testbed.Spec{Name: name, Network: "egnet", Labels: labels, Cmd: args})
	code, logs, err := e.bed.WaitExit(e.ctx, c.ID, 60*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("%s: exit %d, %v: %s", name, code, err, logs)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		spec, res, _ := strings.Cut(l, " ")
		got[spec] = res
	}
	for _, s := range open {
		if !strings.HasPrefix(got[s], "ok") || (s == "dns:upstream.example" && !strings.Contains(got[s], "192.0.2.99")) {
			t.Errorf("%s: %s want open, got %q", name, s, got[s])
		}
	}
	for _, s := range closed {
		if !strings.HasPrefix(got[s], "fail") {
			t.Errorf("%s: %s want refused, got %q", name, s, got[s])
		}
	}
}

// flushedEgress: a deny container probes while dockmoat is stopped
// (SIGSTOP: no repair) and DOCKMOAT-EGRESS flushed: the outside and the
// host stay refused, its own network answers. The control first: with
// the check's jumps deleted too, the flush lets the same probes out.
func (e *egress) flushedEgress(t *testing.T, out, host, peer string) {
	ipt := e.bed.Iptables()
	del := func(chain string, spec []string) []string { return append([]string{"-D", chain}, spec...) }
	for _, c := range []struct {
		name       string
		cmds       [][]string
		open, shut []string
	}{
		{"control", [][]string{{"-F", iptplan.ChainEgress}, del("DOCKER-USER", iptplan.CheckSpec()), del("INPUT", iptplan.InputCheckSpec())}, []string{out, host, peer}, nil},
		{"flushed", [][]string{{"-F", iptplan.ChainEgress}}, []string{peer}, []string{out, host}},
	} {
		// The probe waits 3 s, so that dockmoat knows the container
		// before it stops.
		args := append([]string{"probe", "wait=3s"}, append(append([]string(nil), c.open...), c.shut...)...)
		ctr := e.run(t, testbed.Spec{Name: "eg" + c.name, Network: "egnet", Labels: map[string]string{"dockmoat.egress": "deny"}, Cmd: args})
		e.sync(t)
		if err := e.dm.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range c.cmds {
			if msg, err := e.bed.HostExec(e.ctx, append([]string{ipt}, cmd...)...); err != nil {
				t.Fatalf("%v: %s", err, msg)
			}
		}
		code, logs, err := e.bed.WaitExit(e.ctx, ctr.ID, 60*time.Second)
		if serr := e.dm.Signal(syscall.SIGCONT); serr != nil {
			t.Fatal(serr)
		}
		e.sync(t)
		if err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v: %s", c.name, code, err, logs)
		}
		for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
			spec, res, _ := strings.Cut(l, " ")
			want := "ok"
			if slices.Contains(c.shut, spec) {
				want = "fail"
			}
			if !strings.HasPrefix(res, want) {
				t.Errorf("%s: %s: %q, want %s", c.name, spec, res, want)
			}
		}
	}
}

// spoofed: a container adds a second address of its subnet (its
// namespace entered from the host, as a container with CAP_NET_ADMIN, or
// one sending raw packets with CAP_NET_RAW, could) and dials the outside
// from it, over TCP and UDP, IPv4 and IPv6; on IPv6 it also dials the
// host's service through the bridge's link-local address. The control: a
// container without egress policy reaches all of it the same way; the
// deny container reaches none.
func (e *egress) spoofed(t *testing.T, v6 bool) {
	var hostLL string
	if v6 {
		out, err := e.bed.HostExec(e.ctx, "ip", "-6", "-o", "addr", "show", "dev", "br-"+e.netID[:12], "scope", "link")
		f := strings.Fields(out)
		if err != nil || len(f) < 4 {
			t.Fatalf("the bridge's link-local address: %v: %s", err, out)
		}
		hostLL, _, _ = strings.Cut(f[3], "/")
	}
	for i, c := range []struct {
		name   string
		labels map[string]string
		want   string
	}{{"spoof-free", nil, "ok"}, {"spoof-denied", map[string]string{"dockmoat.egress": "deny"}, "fail"}} {
		src := fmt.Sprintf("172.29.210.%d", 200+i)
		specs := []string{"tcp:" + netip.AddrPortFrom(e.world, 7000).String() + "~" + src, "udp:" + netip.AddrPortFrom(e.world, 7000).String() + "~" + src}
		add := [][]string{{"ip", "addr", "add", src + "/24", "dev", "eth0"}}
		if v6 {
			src6 := fmt.Sprintf("fd00:d0c:210::%d", 200+i)
			specs = append(specs, "tcp:"+netip.AddrPortFrom(e.world6, 7000).String()+"~"+src6, "tcp:["+hostLL+"%eth0]:2222")
			add = append(add, []string{"ip", "-6", "addr", "add", src6 + "/64", "dev", "eth0", "nodad"})
		}
		ctr := e.run(t, testbed.Spec{Name: c.name, Network: "egnet", Labels: c.labels, Cmd: append([]string{"probe", "wait=3s"}, specs...)})
		e.sync(t)
		for _, cmd := range add {
			if out, err := testbed.Run(e.ctx, append([]string{"nsenter", "--net=" + ctr.Netns, "--"}, cmd...)...); err != nil {
				t.Fatalf("%v: %v: %s", cmd, err, out)
			}
		}
		code, logs, err := e.bed.WaitExit(e.ctx, ctr.ID, 60*time.Second)
		if err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v: %s", c.name, code, err, logs)
		}
		got := strings.Split(strings.TrimSpace(logs), "\n")
		if len(got) != len(specs) {
			t.Fatalf("%s: %q", c.name, logs)
		}
		for _, l := range got {
			if spec, res, _ := strings.Cut(l, " "); !strings.HasPrefix(res, c.want) {
				t.Errorf("%s: %s: %q, want %s", c.name, spec, res, c.want)
			}
		}
	}
}

// narrowCutsSession: a container with a live session to the outside
// becomes deny by a config reload; its session is cut.
func (e *egress) narrowCutsSession(t *testing.T) {
	c := e.run(t, testbed.Spec{Name: "sess", Network: "egnet", Cmd: []string{"hold", netip.AddrPortFrom(e.world, 7100).String(), "30"}})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.containerLogs(c.ID), "connected") {
		if time.Now().After(deadline) {
			t.Fatalf("session not established: %s", e.containerLogs(c.ID))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the session lives under the old policy
	if strings.Contains(e.containerLogs(c.ID), "cut") {
		t.Fatalf("control: the session broke before any policy change: %s", e.containerLogs(c.ID))
	}
	start := time.Now()
	e.reload(t, "egress:\n  - container: sess\n")
	code, logs, err := e.bed.WaitExit(e.ctx, c.ID, 40*time.Second)
	took := time.Since(start)
	if err != nil || code != 0 || !strings.Contains(logs, "cut") {
		t.Fatalf("want the session cut after the reload; exit %d, %v: %s", code, err, logs)
	}
	t.Logf("session cut %s after the reload", took.Round(time.Millisecond))
	record(result{e.bed.Engine.Name, "egress: narrowed session cut", took, 0, 0, "from config reload to the container's session failing"})
	e.reload(t, "{}\n")
}

// restartKeepsDeny: a deny container hammers the outside while dockmoat
// stops and starts again; nothing gets through, while a free container
// hammering the same server at the same time does (the control).
func (e *egress) restartKeepsDeny(t *testing.T) {
	target := netip.AddrPortFrom(e.world, 7000).String()
	deny := e.run(t, testbed.Spec{Name: "hammer-deny", Network: "egnet", Labels: map[string]string{"dockmoat.egress": "deny"},
		Cmd: []string{"hammer", target, "8"}})
	free := e.run(t, testbed.Spec{Name: "hammer-free", Network: "egnet", Cmd: []string{"hammer", target, "8"}})
	e.sync(t)
	time.Sleep(2500 * time.Millisecond) // both hammer (from 1.5 s after start) under the installed policy
	if err := e.dm.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := e.dm.Start(); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	_, denied, err := e.bed.WaitExit(e.ctx, deny.ID, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, freed, err := e.bed.WaitExit(e.ctx, free.ID, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var through, tries, ctlThrough, ctlTries int
	fmt.Sscanf(strings.TrimSpace(denied), "through %d of %d", &through, &tries)
	fmt.Sscanf(strings.TrimSpace(freed), "through %d of %d", &ctlThrough, &ctlTries)
	t.Logf("across the restart: deny container %d of %d through, free container %d of %d", through, tries, ctlThrough, ctlTries)
	if ctlThrough == 0 || ctlTries < 10 {
		t.Fatalf("control: the free container got nothing through (%q): the bed is broken", freed)
	}
	record(result{e.bed.Engine.Name, "egress: dockmoat restart", -1, through, tries, "deny container hammering the outside across stop and start"})
	if tries < 10 || through > 0 {
		t.Errorf("deny container got %d of %d connections through across the restart (%q)", through, tries, denied)
	}
}

// ndStaysOnLink: the egress chains let neighbour discovery through (a
// deny container needs it to reach its gateway), but only on the link: a
// solicitation sent to an outside address, with ND's hop limit, must not
// leave (a one-way channel out). The control: from a free container it
// arrives.
func (e *egress) ndStaysOnLink(t *testing.T) {
	arrived := e.listenND(t)
	target := "nd6:" + e.world6.String()
	e.probe(t, "nd-free", nil, []string{target}, nil)
	if n := arrived(); n == 0 {
		t.Fatal("control: a free container's solicitation to the outside never arrived; the check below proves nothing")
	}
	e.probe(t, "nd-denied", map[string]string{"dockmoat.egress": "deny"}, []string{target}, nil)
	if n := arrived(); n > 0 {
		t.Errorf("%d neighbour solicitations from a deny container reached the outside", n)
	}
}

// listenND counts, in the outside namespace, the test's neighbour
// solicitations (their nonce) that arrived since the last call.
func (e *egress) listenND(t *testing.T) func() int {
	var conn net.PacketConn
	if err := testbed.InNetns(e.bed.OutNSPath(), func() (err error) {
		conn, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var mu sync.Mutex
	n := 0
	go func() {
		buf := make([]byte, 1500)
		for {
			k, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if k > 0 && buf[0] == 135 && bytes.Contains(buf[:k], []byte("dmoat!")) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}
	}()
	return func() int {
		time.Sleep(300 * time.Millisecond) // the last ones in flight
		mu.Lock()
		defer mu.Unlock()
		got := n
		n = 0
		return got
	}
}
