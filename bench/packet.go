package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/integration/testbed"
	"github.com/dockmoat/dockmoat/netfilter/ipset"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/reconciler"
	"github.com/dockmoat/dockmoat/rules"
)

// The packet-path benchmark: new TCP connections per second from an
// "outside" namespace through a "router" namespace that does what Docker
// does for `-p 8080:80` (DNAT in PREROUTING, FORWARD → DOCKER-USER →
// Docker's ACCEPT, policy DROP) to a "container" namespace, with
// dockmoat's rules for N allowed published ports installed by the real
// reconciler, the tested port among them (and sorted last, so the linear
// rules make it pay for all N). Each connection is new, so its first
// packet walks the whole chain. Client and server are this binary
// re-executed inside their namespaces (see clientRole and serverRole).

const (
	// The client is on a public (documentation) network: the ufw-docker
	// recipe lets private sources through unchecked.
	ppClient = "198.51.100.2"
	ppRouter = "198.51.100.1"
	ppInner  = "10.99.2.1"
	ppServer = "10.99.2.2"
	// ppServer2 is a second address in the container namespace: the
	// egress runs' deny container, the control of their refused probe.
	ppServer2 = "10.99.2.3"
	// The same path over IPv6 (Docker with ip6tables: DNAT to the
	// container's IPv6 address).
	ppClient6 = "fd00:99:1::2"
	ppRouter6 = "fd00:99:1::1"
	ppInner6  = "fd00:99:2::1"
	ppServer6 = "fd00:99:2::2"
)

type topo struct {
	client, router, server string
	serverCmd              *exec.Cmd
	// open is the connection the rates are measured on; closed one that
	// dockmoat's rules must refuse. Both answer without them. By default
	// the client connects to the published ports 8080 (allowed) and 8081
	// (not) on ppRouter (ppRouter6 in brackets for the IPv6 runs).
	open, closed probe
	// proxies are servers in the router namespace itself (docker-proxy).
	proxies []*exec.Cmd
}

// probe is a connection the runs make: from namespace ns (from its
// source address from, or the route's when empty) to to:port.
type probe struct {
	ns, from, to string
	port         int
}

func (p probe) String() string { return p.from + "→" + p.to + ":" + strconv.Itoa(p.port) }

// client runs this binary's client role for p, for d (once for 0).
func (p probe) client(d time.Duration) ([]byte, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command("ip", "netns", "exec", p.ns, self, "-role=client", "-target", p.to+":"+strconv.Itoa(p.port),
		"-from", p.from, "-for", d.String()).CombinedOutput()
}

func run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newTopo() (*topo, error) {
	id := os.Getpid() % 100000
	t := &topo{client: fmt.Sprintf("dmpc%d", id), router: fmt.Sprintf("dmpr%d", id), server: fmt.Sprintf("dmps%d", id)}
	t.open = probe{ns: t.client, to: ppRouter, port: 8080}
	t.closed = probe{ns: t.client, to: ppRouter, port: 8081}
	for _, ns := range []string{t.client, t.router, t.server} {
		if err := run("ip", "netns", "add", ns); err != nil {
			t.Close()
			return nil, err
		}
	}
	steps := [][]string{
		{"ip", "link", "add", "pc0", "netns", t.client, "type", "veth", "peer", "name", "out0", "netns", t.router},
		{"ip", "link", "add", "ps0", "netns", t.server, "type", "veth", "peer", "name", "docker0", "netns", t.router},
		{"ip", "-n", t.client, "addr", "add", ppClient + "/24", "dev", "pc0"},
		{"ip", "-n", t.router, "addr", "add", ppRouter + "/24", "dev", "out0"},
		{"ip", "-n", t.router, "addr", "add", ppInner + "/24", "dev", "docker0"},
		{"ip", "-n", t.server, "addr", "add", ppServer + "/24", "dev", "ps0"},
		{"ip", "-n", t.server, "addr", "add", ppServer2 + "/24", "dev", "ps0"},
		{"ip", "-n", t.client, "link", "set", "lo", "up"}, {"ip", "-n", t.client, "link", "set", "pc0", "up"},
		{"ip", "-n", t.router, "link", "set", "lo", "up"}, {"ip", "-n", t.router, "link", "set", "out0", "up"},
		{"ip", "-n", t.router, "link", "set", "docker0", "up"},
		{"ip", "-n", t.server, "link", "set", "lo", "up"}, {"ip", "-n", t.server, "link", "set", "ps0", "up"},
		{"ip", "-n", t.client, "route", "add", "default", "via", ppRouter},
		{"ip", "-n", t.server, "route", "add", "default", "via", ppInner},
		// IPv6 beside it, without duplicate address detection (it would
		// hold the addresses for a second or two).
		{"ip", "-n", t.client, "addr", "add", ppClient6 + "/64", "dev", "pc0", "nodad"},
		{"ip", "-n", t.router, "addr", "add", ppRouter6 + "/64", "dev", "out0", "nodad"},
		{"ip", "-n", t.router, "addr", "add", ppInner6 + "/64", "dev", "docker0", "nodad"},
		{"ip", "-n", t.server, "addr", "add", ppServer6 + "/64", "dev", "ps0", "nodad"},
		{"ip", "-n", t.client, "-6", "route", "add", "default", "via", ppRouter6},
		{"ip", "-n", t.server, "-6", "route", "add", "default", "via", ppInner6},
		// Per-namespace sysctls of the router namespace only.
		{"ip", "netns", "exec", t.router, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", t.router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"},
	}
	steps = append(steps, dockerRules(t.router, "iptables-nft", ppRouter, ppServer, ppServer+":")...)
	steps = append(steps, dockerRules(t.router, "ip6tables-nft", ppRouter6, ppServer6, "["+ppServer6+"]:")...)
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Close()
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Close()
		return nil, err
	}
	t.serverCmd = exec.Command("ip", "netns", "exec", t.server, self, "-role=server")
	if err := t.serverCmd.Start(); err != nil {
		t.Close()
		return nil, fmt.Errorf("starting server: %w", err)
	}
	time.Sleep(300 * time.Millisecond)
	return t, nil
}

// dockerRules is Docker's part in one family, as Docker 20.10 writes it
// for -p 8080:80 and -p 8081:81.
func dockerRules(ns, tool, router, server, serverPort string) [][]string {
	ipt := func(args ...string) []string {
		return append([]string{"ip", "netns", "exec", ns, tool}, args...)
	}
	var steps [][]string
	for _, port := range []string{"80", "81"} {
		steps = append(steps,
			ipt("-t", "nat", "-A", "PREROUTING", "-d", router, "-p", "tcp", "--dport", "80"+port, "-j", "DNAT", "--to-destination", serverPort+port))
	}
	return append(steps,
		ipt("-N", "DOCKER-USER"), ipt("-P", "FORWARD", "DROP"), ipt("-A", "FORWARD", "-j", "DOCKER-USER"),
		ipt("-A", "FORWARD", "-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
		ipt("-A", "FORWARD", "-o", "docker0", "-d", server, "-p", "tcp", "-m", "multiport", "--dports", "80,81", "-j", "ACCEPT"),
		ipt("-A", "FORWARD", "-i", "docker0", "-j", "ACCEPT"),
	)
}

// useIPv6 points the client at the router's IPv6 address and waits until
// that path carries connections: the links' IPv6 (their link-local
// addresses, neighbour discovery) may still be settling after the
// topology was made, then it is warmed for a second.
func (t *topo) useIPv6() error {
	t.open.to, t.closed.to = "["+ppRouter6+"]", "["+ppRouter6+"]"
	for deadline := time.Now().Add(15 * time.Second); !t.reachable(t.open); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("IPv6: port %d never answered over IPv6", t.open.port)
		}
	}
	if _, err := t.rate(time.Second); err != nil {
		return fmt.Errorf("IPv6 warm-up: %w", err)
	}
	return nil
}

// startProxy serves ports in the router namespace itself, as
// docker-proxy does for a client Docker does not DNAT.
func (t *topo) startProxy(ports ...int) error { return t.serveIn(t.router, ports...) }

// serveIn starts a server of ports in namespace ns, stopped by Close.
func (t *topo) serveIn(ns string, ports ...int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var ls []string
	for _, p := range ports {
		ls = append(ls, ":"+strconv.Itoa(p))
	}
	cmd := exec.Command("ip", "netns", "exec", ns, self, "-role=server", "-listen", strings.Join(ls, ","))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting a server in %s: %w", ns, err)
	}
	t.proxies = append(t.proxies, cmd)
	time.Sleep(300 * time.Millisecond)
	return nil
}

func (t *topo) Close() {
	for _, c := range append(t.proxies, t.serverCmd) {
		if c != nil && c.Process != nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for _, ns := range []string{t.client, t.router, t.server} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// rate runs the client of the open probe for d and returns connections
// per second.
func (t *topo) rate(d time.Duration) (float64, error) {
	out, err := t.open.client(d)
	if err != nil {
		return 0, fmt.Errorf("client: %w: %s", err, out)
	}
	var ok, fail int
	if _, err := fmt.Sscanf(string(out), "ok=%d fail=%d", &ok, &fail); err != nil {
		return 0, fmt.Errorf("client output %q: %w", out, err)
	}
	if fail > ok/100 {
		return 0, fmt.Errorf("%d of %d connections failed", fail, ok+fail)
	}
	return float64(ok) / d.Seconds(), nil
}

// reachable tries one connection of p.
func (t *topo) reachable(p probe) bool {
	out, _ := p.client(0)
	return strings.HasPrefix(string(out), "ok=1 ")
}

// packetSnapshot is n containers with one allowed port each; the tested
// one ("zzz", sorted last) is the real server behind 8080; 8081 → 81 is
// published and not allowed.
func packetSnapshot(n int) rules.Snapshot {
	snap := snapshot(n - 1)
	snap.Containers = append(snap.Containers, rules.Container{ID: "zzz", Name: "zzz",
		Labels: map[string]string{"dockmoat.allow": "8080"},
		Ports: []rules.PortBinding{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
			{HostPort: 8081, ContainerPort: 81, Proto: "tcp"}},
		Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr(ppServer)}}})
	return snap
}

// ppMode is one way of installing dockmoat's rules in the router.
type ppMode struct {
	name string
	nft  bool // Docker's nftables backend (table inet dockmoat)
	sets bool // sets (default) or one rule per allow (ipset: off)
	// ufwDocker: not dockmoat but a peer, the ufw-docker recipe with a
	// `ufw route allow` per allowed port.
	ufwDocker bool
}

var ppModes = []ppMode{
	{name: "iptables, ipsets (default)", sets: true},
	{name: "iptables, one rule per port (`ipset: off`)"},
	{name: "nftables backend, sets (default)", nft: true, sets: true},
	{name: "nftables backend, one rule per port", nft: true},
	{name: "peer: ufw-docker recipe, `ufw route allow` per port", ufwDocker: true},
}

// ppRow is min / median / max connections per second: the no-rule
// baseline and each mode. The runs are interleaved (baseline, then each
// mode, then again), so a drift of the machine's speed over the run
// touches all of them alike.
type ppRow struct {
	n     int
	baseR [3]float64
	modeR [][3]float64
}

var ppRows []ppRow

// interleaved measures the baseline and each mode, reps times in turn,
// with snap installed for each mode; first, without dockmoat, the closed
// port must answer (else the topology is broken). what names the row.
func (t *topo) interleaved(what string, modes []ppMode, snap func() rules.Snapshot, log logrus.FieldLogger, d time.Duration) (ppRow, error) {
	var base []float64
	rates := make([][]float64, len(modes))
	for rep := 0; rep < *reps; rep++ {
		if !t.reachable(t.closed) {
			return ppRow{}, fmt.Errorf("%s: without dockmoat %s should answer (topology broken)", what, t.closed)
		}
		r, err := t.rate(d)
		if err != nil {
			return ppRow{}, fmt.Errorf("%s, baseline: %w", what, err)
		}
		base = append(base, r)
		for i, m := range modes {
			undo, err := t.install(m, snap(), log)
			if err != nil {
				return ppRow{}, fmt.Errorf("%s: %w", what, err)
			}
			r, err := t.rate(d)
			if err != nil {
				return ppRow{}, fmt.Errorf("%s, %s: %w", what, m.name, err)
			}
			rates[i] = append(rates[i], r)
			if err := undo(); err != nil {
				return ppRow{}, err
			}
		}
	}
	row := ppRow{baseR: minMedMax(base)}
	for _, m := range rates {
		row.modeR = append(row.modeR, minMedMax(m))
	}
	return row, nil
}

// install puts mode m's rules for snap in the router, checks the
// controls, and returns what takes the rules out again.
func (t *topo) install(m ppMode, snap rules.Snapshot, log logrus.FieldLogger) (func() error, error) {
	if m.ufwDocker {
		return t.installUFWDocker(snap)
	}
	rec, err := t.installWith(m, config.Default(), snap, log)
	if err != nil {
		return nil, err
	}
	return func() error { return t.uninstall(rec) }, nil
}

// installWith installs dockmoat's rules for cfg and snap in the router
// and checks the controls (8080 open, 8081 closed).
func (t *topo) installWith(m ppMode, cfg config.Config, snap rules.Snapshot, log logrus.FieldLogger) (*reconciler.Reconciler, error) {
	n := len(snap.Containers)
	var rec *reconciler.Reconciler
	err := testbed.InNetns("/run/netns/"+t.router, func() error {
		cfg.NoIPSet = !m.sets
		src := &source{snap: snap}
		if m.nft {
			rec = reconciler.New(nft.New(nft.Exec{}, log), src, cfg, log)
		} else {
			tables, err := ipt.NewTables(ipt.VariantNFT, 4)
			if err != nil {
				return err
			}
			var tables6 *ipt.Tables
			if usesIPv6(snap) {
				if tables6, err = ipt.NewTables(ipt.VariantNFT, 6); err != nil {
					return err
				}
			}
			sets, err := ipset.New()
			if err != nil {
				return err
			}
			rec = reconciler.New(ipt.New(tables, tables6, sets, log), src, cfg, log)
		}
		_, err := rec.Sync(context.Background())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("installing %d ports (%s): %w", n, m.name, err)
	}
	// Controls: the rules are live (8081 closed) and the tested port open.
	if t.reachable(t.closed) || !t.reachable(t.open) {
		return nil, fmt.Errorf("packet path with %d containers (%s): %s reachable %v, %s reachable %v", n, m.name, t.closed, t.reachable(t.closed), t.open, t.reachable(t.open))
	}
	return rec, nil
}

func (t *topo) uninstall(rec *reconciler.Reconciler) error {
	return testbed.InNetns("/run/netns/"+t.router, func() error { return rec.Uninstall(context.Background()) })
}

// warmTopo is a new topology after a warm-up run, and a quiet logger
// for the reconcilers the runs install.
func warmTopo() (*topo, logrus.FieldLogger, error) {
	t, err := newTopo()
	if err != nil {
		return nil, nil, err
	}
	if _, err := t.rate(time.Second); err != nil {
		t.Close()
		return nil, nil, err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	return t, log, nil
}

// pathRow measures one path, named what, on a warm topology that setup
// prepares (its probes, servers), with snap installed by each mode: 2 s
// per run, interleaved with the baseline.
func pathRow(what string, modes []ppMode, setup func(*topo) error, snap func() rules.Snapshot) (ppRow, time.Duration, error) {
	const d = 2 * time.Second
	t, log, err := warmTopo()
	if err != nil {
		return ppRow{}, d, err
	}
	defer t.Close()
	if err := setup(t); err != nil {
		return ppRow{}, d, fmt.Errorf("%s: %w", what, err)
	}
	row, err := t.interleaved(what, modes, snap, log, d)
	if err == nil {
		fmt.Fprintf(os.Stderr, "%s done\n", what)
	}
	return row, d, err
}

func packetPath(b *strings.Builder) error {
	t, log, err := warmTopo()
	if err != nil {
		return err
	}
	defer t.Close()
	const d = 2 * time.Second
	for _, f := range strings.Split(*ppSizes, ",") {
		n, _ := strconv.Atoi(f)
		row, err := t.interleaved(fmt.Sprintf("packet path, %d ports", n), ppModes, func() rules.Snapshot { return packetSnapshot(n) }, log, d)
		if err != nil {
			return err
		}
		row.n = n
		ppRows = append(ppRows, row)
		fmt.Fprintf(os.Stderr, "packet path N=%d done\n", n)
	}
	b.WriteString("## Packet path: new connections per second against N allowed ports\n\n")
	fmt.Fprintf(b, "New TCP connections per second (connect, then close with RST; 4 client workers, %s per run) from an outside namespace "+
		"through a router namespace set up as Docker sets up a host for `-p 8080:80` (DNAT, FORWARD → DOCKER-USER → ACCEPT, policy DROP), "+
		"to a server namespace. dockmoat's rules are installed by the reconciler for N containers with one allowed port each; the "+
		"tested container sorts last, so with one rule per port its allow is the N-th rule. Each run checks first that the "+
		"published, not allowed port 8081 is refused and 8080 answers (and, without dockmoat, that it answers). Baseline: the same "+
		"topology with no dockmoat rules. The runs are interleaved (baseline, each mode, again); ratios are of medians. "+
		"The nftables-backend rows install dockmoat's `table inet dockmoat` in front of the same iptables-nft rules. The peer is the "+
		"ufw-docker recipe (its block of `/etc/ufw/after.rules`, restored as ufw restores it) with the rule `ufw route allow proto tcp "+
		"from any to CONTAINER port PORT` adds to `ufw-user-forward` for each of the N allowed ports, the tested one last; the client "+
		"is on a public network (the recipe lets private sources through unchecked).\n\n", d)
	writeRateTable(b, ppModes, ppRows)
	return nil
}

// writeRateTable writes rows of connections per second against N, each
// mode beside the baseline with its ratio of medians.
func writeRateTable(b *strings.Builder, modes []ppMode, rows []ppRow) {
	b.WriteString("| N allowed ports | baseline: no rules |")
	for _, m := range modes {
		b.WriteString(" " + m.name + " | ratio |")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|---|", len(modes)) + "\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %d | %s |", r.n, rates(r.baseR))
		for _, m := range r.modeR {
			fmt.Fprintf(b, " %s | %.2f× |", rates(m), m[1]/r.baseR[1])
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// writePathRows writes one measurement (one N) as a row per mode beside
// the baseline, with the ratio of medians.
func writePathRows(b *strings.Builder, modes []ppMode, row ppRow) {
	b.WriteString("| path | baseline: no rules | with dockmoat | ratio |\n|---|---|---|---|\n")
	for i, m := range modes {
		r := row.modeR[i]
		fmt.Fprintf(b, "| %s | %s | %s | %.2f× |\n", m.name, rates(row.baseR), rates(r), r[1]/row.baseR[1])
	}
	b.WriteString("\n")
}

func minMedMax(rs []float64) [3]float64 {
	s := slices.Sorted(slices.Values(rs))
	return [3]float64{s[0], s[len(s)/2], s[len(s)-1]}
}

func fmtRate(r float64) string { return strconv.FormatFloat(r, 'f', 0, 64) }

func rates(r [3]float64) string {
	return fmtRate(r[0]) + " / " + fmtRate(r[1]) + " / " + fmtRate(r[2])
}

// serverRole accepts and closes connections on the -listen addresses
// until killed.
func serverRole() {
	var ls []net.Listener
	for _, p := range strings.Split(*listen, ",") {
		l, err := net.Listen("tcp", p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ls = append(ls, l)
	}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					continue
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
}

// clientRole connects to target (from the source address from, when
// given) as fast as it can for the duration (or once, for 0s) and prints
// how many connections succeeded and failed.
func clientRole(target, from string, d time.Duration) {
	var ok, fail atomic.Int64
	dialer := net.Dialer{Timeout: 300 * time.Millisecond}
	if from != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	dial := func() {
		c, err := dialer.Dial("tcp", target)
		if err != nil {
			fail.Add(1)
			return
		}
		// RST instead of FIN: no TIME_WAIT, so ports do not run out.
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
		ok.Add(1)
	}
	if d == 0 {
		dial()
	} else {
		end := time.Now().Add(d)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					dial()
				}
			}()
		}
		wg.Wait()
	}
	fmt.Printf("ok=%d fail=%d\n", ok.Load(), fail.Load())
}
