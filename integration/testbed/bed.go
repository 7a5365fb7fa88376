// Package testbed is dockmoat's real-engine test bed, shared by the
// integration tests and `make demo`. A Bed is two network namespaces the
// test creates itself, joined by a veth:
//
//	host     203.0.113.1/24, 10.77.0.1/24 — runs its own dockerd (own
//	         data-root, exec-root, socket, pidfile) and dockmoat
//	outside  203.0.113.10, 203.0.113.11, 10.77.0.10 — "the internet",
//	         with a route to the container subnets through the host so it
//	         can also play the neighbour who routes straight to containers
//
// Nothing here touches the root namespace's firewall, routes or sysctls:
// every command that changes state runs inside the bed's namespaces.
package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moby/moby/client"
)

// Addresses of the bed. The documentation range stands for the internet;
// 10.77.0.0/24 is a private-range source that must not be trusted by default.
var (
	HostIP      = netip.MustParseAddr("203.0.113.1")
	OutsideA    = netip.MustParseAddr("203.0.113.10")
	OutsideB    = netip.MustParseAddr("203.0.113.11")
	HostPrivIP  = netip.MustParseAddr("10.77.0.1")
	OutsidePriv = netip.MustParseAddr("10.77.0.10")
	// BridgeCIDR is docker0's subnet, PoolBase the pool of user networks.
	BridgeCIDR = "172.30.0.1/24"
	PoolBase   = "172.29.0.0/16"
	// IPv6 beds: documentation prefix outside, ULA for containers.
	HostIP6     = netip.MustParseAddr("2001:db8:1::1")
	OutsideA6   = netip.MustParseAddr("2001:db8:1::10")
	OutsideB6   = netip.MustParseAddr("2001:db8:1::11")
	BridgeCIDR6 = "fd00:d0c::/64"
)

// Engine is a Docker engine build the bed can start. Tests choose engines
// by what they can do (the methods below, read from Version), never by
// name: a new engine is one entry in Engines.
type Engine struct {
	Name    string   // short, used in names: "docker20", "docker29"
	Version int      // Docker's major version: 20, 28, 29
	Dockerd string   // dockerd binary
	PathDir string   // prepended to dockerd's PATH (docker-proxy, runc)
	Args    []string // extra dockerd flags
	// Legacy puts iptables-legacy first on dockerd's PATH, making a host
	// whose Docker rules live in the legacy (x_tables) variant.
	Legacy bool
	// FirewallBackend "nftables" starts dockerd with
	// --firewall-backend=nftables (Docker 29): no DOCKER-USER, tables
	// ip/ip6 docker-bridges; Docker then needs forwarding enabled for it.
	FirewallBackend string
	// NoIPSet writes `ipset: off` into every dockmoat config of the bed.
	NoIPSet bool
	// IPv6 makes a dual-stack bed: IPv6 on the veth and Docker's default
	// bridge with ip6tables (Docker 20.10 needs --experimental for that).
	IPv6 bool
	// Firewalld, when set, runs firewalld with this FirewallBackend
	// ("nftables" or "iptables") on a bus of the bed's own, started
	// before dockerd so Docker integrates with it (firewalld.go).
	Firewalld string
}

// Engines lists the engines present on this machine: Debian's docker.io
// (20.10), and Docker 29 and 28 built by `make engines` into
// $DOCKMOAT_ENGINES (default /var/cache/dockmoat).
func Engines() (found []Engine, missing []string) {
	if p, err := exec.LookPath("dockerd"); err == nil && strings.HasPrefix(p, "/usr/") {
		found = append(found, Engine{Name: "docker20", Version: 20, Dockerd: p})
		if _, err := exec.LookPath("iptables-legacy"); err == nil {
			// The legacy bed also runs dockmoat without ipsets, so the
			// fallback (one rule per allow) meets the whole suite too.
			found = append(found, Engine{Name: "docker20-legacy", Version: 20, Dockerd: p, Legacy: true, NoIPSet: true})
		}
	} else {
		missing = append(missing, "docker20 (Debian package docker.io)")
	}
	dir := os.Getenv("DOCKMOAT_ENGINES")
	if dir == "" {
		dir = "/var/cache/dockmoat"
	}
	// Docker 29 and 28, both run with the runc built beside Docker 29.
	runc := filepath.Join(dir, "docker29", "bin", "runc")
	for _, v := range []int{29, 28} {
		name := fmt.Sprintf("docker%d", v)
		bin := filepath.Join(dir, name, "bin")
		if !isExec(filepath.Join(bin, "dockerd")) || !isExec(filepath.Join(bin, "docker-proxy")) || !isExec(runc) {
			missing = append(missing, name+" (run `make engines`; looked in "+bin+")")
			continue
		}
		found = append(found, Engine{Name: name, Version: v, Dockerd: filepath.Join(bin, "dockerd"), PathDir: bin,
			Args: []string{"--add-runtime", "r2=" + runc, "--default-runtime", "r2"}})
	}
	return found, missing
}

// NFTables: the engine has a firewall backend for nftables (Docker 29).
func (e Engine) NFTables() bool { return e.Version >= 29 }

// IP6DockerUser: the engine creates DOCKER-USER in ip6tables (Docker 23).
func (e Engine) IP6DockerUser() bool { return e.Version >= 23 }

// DropsLoopbackDNAT: the engine drops a neighbour's packets for a port
// published on 127.0.0.1 in raw PREROUTING (Docker 28).
func (e Engine) DropsLoopbackDNAT() bool { return e.Version >= 28 }

// DNSFromHost: the embedded resolver sends containers' queries from the
// host's namespace, not forwarded from theirs (Docker 25).
func (e Engine) DNSFromHost() bool { return e.Version >= 25 }

// WithIPv6 is the dual-stack bed of the engine.
func (e Engine) WithIPv6() Engine {
	e.IPv6, e.Name = true, e.Name+"-v6"
	return e
}

// WithNFTables is the engine on its nftables firewall backend.
func (e Engine) WithNFTables() Engine {
	name, v6 := strings.CutSuffix(e.Name, "-v6")
	e.FirewallBackend, e.Name = "nftables", name+"-nftables"
	if v6 {
		e.Name += "-v6"
	}
	return e
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}

// Bed is one running test bed.
type Bed struct {
	Engine  Engine
	Name    string // namespace/name prefix
	HostNS  string // namespace names
	OutNS   string
	Dir     string // state: data-root, exec-root, logs
	Socket  string
	Docker  *client.Client
	dockerd *exec.Cmd
	exited  chan error // receives dockerd's exit
	logf    func(string, ...any)
	// node, for a Swarm node (swarm.go): dockerd gets its own hostname
	// and mount namespace, with the node's socket directory at NodeRun.
	node string
	// bus and firewalld run with Engine.Firewalld (firewalld.go).
	bus, firewalld *exec.Cmd
	// lanNS is the LAN client's namespace (lan.go), when added; vpnNS the
	// VPN client's (vpn.go).
	lanNS, vpnNS string
}

var seq atomic.Int32

// HostNSPath and OutNSPath are the namespace files for setns/nsenter.
func (b *Bed) HostNSPath() string { return "/run/netns/" + b.HostNS }
func (b *Bed) OutNSPath() string  { return "/run/netns/" + b.OutNS }

// Start creates the namespaces and starts the engine's dockerd in the host
// namespace. logf receives progress lines (t.Logf or a printer).
func Start(ctx context.Context, eng Engine, logf func(string, ...any)) (*Bed, error) {
	n := fmt.Sprintf("%d%d", os.Getpid()%10000, seq.Add(1))
	b := &Bed{Engine: eng, Name: "dm" + n, HostNS: "dm" + n + "h", OutNS: "dm" + n + "o", logf: logf}
	b.Dir = filepath.Join("/var/lib/dockmoat-test", b.Name)
	b.Socket = filepath.Join("/run/dockmoat-test", b.Name, "docker.sock")
	if err := b.setupNetwork(ctx); err != nil {
		b.Close()
		return nil, err
	}
	if eng.Firewalld != "" {
		for _, d := range []string{b.Dir, filepath.Dir(b.Socket)} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				b.Close()
				return nil, fmt.Errorf("creating %s: %w", d, err)
			}
		}
		if err := b.startBus(ctx); err != nil {
			b.Close()
			return nil, err
		}
	}
	if err := b.startDockerd(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bed) setupNetwork(ctx context.Context) error {
	vh, vo := b.Name+"vh", b.Name+"vo"
	steps := [][]string{
		{"ip", "netns", "add", b.HostNS},
		{"ip", "netns", "add", b.OutNS},
		{"ip", "link", "add", vh, "netns", b.HostNS, "type", "veth", "peer", "name", vo, "netns", b.OutNS},
		{"ip", "-n", b.HostNS, "link", "set", "lo", "up"},
		{"ip", "-n", b.OutNS, "link", "set", "lo", "up"},
		{"ip", "-n", b.HostNS, "addr", "add", HostIP.String() + "/24", "dev", vh},
		{"ip", "-n", b.HostNS, "addr", "add", HostPrivIP.String() + "/24", "dev", vh},
		{"ip", "-n", b.HostNS, "link", "set", vh, "up"},
		{"ip", "-n", b.OutNS, "addr", "add", OutsideA.String() + "/24", "dev", vo},
		{"ip", "-n", b.OutNS, "addr", "add", OutsideB.String() + "/24", "dev", vo},
		{"ip", "-n", b.OutNS, "addr", "add", OutsidePriv.String() + "/24", "dev", vo},
		{"ip", "-n", b.OutNS, "link", "set", vo, "up"},
		// The neighbour's routes straight to the container subnets.
		{"ip", "-n", b.OutNS, "route", "add", "172.30.0.0/24", "via", HostIP.String()},
		{"ip", "-n", b.OutNS, "route", "add", PoolBase, "via", HostIP.String()},
	}
	// Every bed is dual-stack on the outside link, as most VPSes are: an
	// IPv6 client reaches published ports even where Docker does not
	// route IPv6 to containers (docker-proxy on the host answers).
	steps = append(steps,
		[]string{"ip", "-n", b.HostNS, "addr", "add", HostIP6.String() + "/64", "dev", vh, "nodad"},
		[]string{"ip", "-n", b.OutNS, "addr", "add", OutsideA6.String() + "/64", "dev", vo, "nodad"},
		[]string{"ip", "-n", b.OutNS, "addr", "add", OutsideB6.String() + "/64", "dev", vo, "nodad"},
	)
	if b.Engine.IPv6 {
		steps = append(steps, []string{"ip", "-n", b.OutNS, "-6", "route", "add", "fd00:d0c::/48", "via", HostIP6.String()})
	}
	return runSteps(ctx, steps)
}

// execRoot is dockerd's exec root as dockerd sees it. A Swarm node's is
// at the same path on every node (NodeRun, bound in the node's mount
// namespace), as /run/docker is on real hosts: the stack's bind of the
// containers' namespaces (DOCKER_NETNS) is then one path for all.
func (b *Bed) execRoot() string {
	if b.node != "" {
		return filepath.Join(NodeRun, "exec")
	}
	return filepath.Join(filepath.Dir(b.Socket), "exec")
}

func (b *Bed) startDockerd(ctx context.Context) error {
	for _, d := range []string{b.Dir, filepath.Dir(b.Socket)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	logFile, err := os.OpenFile(filepath.Join(b.Dir, "dockerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("creating dockerd log: %w", err)
	}
	args := []string{"--net=" + b.HostNSPath(), "--", b.Engine.Dockerd,
		"--data-root", filepath.Join(b.Dir, "data"),
		"--exec-root", b.execRoot(),
		"--pidfile", filepath.Join(filepath.Dir(b.Socket), "docker.pid"),
		"-H", "unix://" + b.Socket,
		"--bip", BridgeCIDR,
		"--default-address-pool", "base=" + PoolBase + ",size=24",
		"--log-level", "warn",
	}
	args = append(args, b.Engine.Args...)
	if b.Engine.IPv6 {
		args = append(args, "--ipv6", "--fixed-cidr-v6", BridgeCIDR6, "--ip6tables", "--experimental")
	}
	if b.Engine.FirewallBackend != "" {
		args = append(args, "--firewall-backend="+b.Engine.FirewallBackend)
		// With the nftables backend Docker leaves forwarding to the host;
		// this is the bed's own namespace, not the machine's.
		for _, k := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
			if out, err := run(ctx, "ip", "netns", "exec", b.HostNS, "sysctl", "-qw", k); err != nil {
				return fmt.Errorf("sysctl %s in %s: %w: %s", k, b.HostNS, err, out)
			}
		}
	}
	if b.node != "" {
		args = nodeWrap(args, b.node, filepath.Dir(b.Socket))
	}
	// nsenter and not `ip netns exec`: the latter remounts /sys and dockerd
	// then fails with "Devices cgroup isn't mounted".
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	path := os.Getenv("PATH")
	if b.Engine.PathDir != "" {
		path = b.Engine.PathDir + ":" + path
	}
	if b.Engine.Legacy {
		dir, err := legacyPathDir(filepath.Join(b.Dir, "legacy-bin"))
		if err != nil {
			return err
		}
		path = dir + ":" + path
	}
	cmd.Env = append(os.Environ(), "PATH="+path)
	if bus := b.BusAddress(); bus != "" {
		cmd.Env = append(cmd.Env, "DBUS_SYSTEM_BUS_ADDRESS="+bus)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", b.Engine.Dockerd, err)
	}
	logFile.Close()
	b.dockerd = cmd
	b.exited = make(chan error, 1)
	go func() { b.exited <- cmd.Wait() }()

	if b.Docker != nil {
		_ = b.Docker.Close()
	}
	b.Docker, err = client.New(client.WithHost("unix://" + b.Socket))
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := b.Docker.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-b.exited:
			b.dockerd = nil
			return fmt.Errorf("dockerd (%s) exited: %v; log:\n%s", b.Engine.Name, werr, b.DockerdLog())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd (%s) not ready after 60s: %w; log:\n%s", b.Engine.Name, err, b.DockerdLog())
		}
	}
	b.logf("%s: dockerd %s ready in netns %s (API %s)", b.Name, b.Engine.Name, b.HostNS, b.Docker.ClientVersion())
	return nil
}

// legacyPathDir makes a directory where iptables* mean iptables-legacy*.
func legacyPathDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, base := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			target, err := exec.LookPath(base + "-legacy" + suffix)
			if err != nil {
				return "", fmt.Errorf("legacy engine: %w", err)
			}
			if err := os.Symlink(target, filepath.Join(dir, base+suffix)); err != nil && !os.IsExist(err) {
				return "", err
			}
		}
	}
	return dir, nil
}

// Iptables is the iptables binary of the variant the bed's Docker uses.
func (b *Bed) Iptables() string {
	if b.Engine.Legacy {
		return "iptables-legacy"
	}
	return "iptables-nft"
}

// StopDockerd stops the bed's dockerd (its containers stop with it).
func (b *Bed) StopDockerd() error {
	if b.dockerd == nil || b.dockerd.Process == nil {
		return nil
	}
	if err := b.dockerd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping dockerd: %w", err)
	}
	select {
	case <-b.exited:
	case <-time.After(45 * time.Second):
		_ = syscall.Kill(-b.dockerd.Process.Pid, syscall.SIGKILL)
		<-b.exited
	}
	b.dockerd = nil
	return nil
}

// SignalDockerd sends a signal to dockerd (SIGSTOP/SIGCONT: a hung daemon).
func (b *Bed) SignalDockerd(sig syscall.Signal) error {
	if b.dockerd == nil || b.dockerd.Process == nil {
		return fmt.Errorf("dockerd not running")
	}
	return b.dockerd.Process.Signal(sig)
}

// StartDockerd starts dockerd again after StopDockerd (a reboot, a
// daemon restart); containers with a restart policy come back.
func (b *Bed) StartDockerd(ctx context.Context) error { return b.startDockerd(ctx) }

// DockerdLog returns the daemon's log so far.
func (b *Bed) DockerdLog() string {
	data, _ := os.ReadFile(filepath.Join(b.Dir, "dockerd.log"))
	return string(data)
}

// Close stops dockerd and removes the namespaces and state. Safe to call
// on a partly started bed and more than once.
func (b *Bed) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if b.dockerd != nil && b.dockerd.Process != nil {
		_ = b.dockerd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-b.dockerd.Process.Pid, syscall.SIGKILL)
			<-b.exited
		}
		b.dockerd = nil
	}
	if b.Docker != nil {
		_ = b.Docker.Close()
	}
	b.stopBus()
	// Anything dockerd left mounted below the state dirs.
	for _, d := range []string{b.Dir, filepath.Dir(b.Socket)} {
		unmountBelow(d)
	}
	for _, ns := range []string{b.lanNS, b.vpnNS, b.OutNS, b.HostNS} {
		if ns != "" {
			_, _ = run(ctx, "ip", "netns", "del", ns)
		}
	}
	_ = os.RemoveAll(filepath.Join("/etc/netns", b.HostNS))
	if os.Getenv("DOCKMOAT_KEEP_BED") == "" {
		_ = os.RemoveAll(b.Dir)
		_ = os.RemoveAll(filepath.Dir(b.Socket))
	}
}

func unmountBelow(dir string) {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// RouteLoopbackToHost makes the outside namespace a neighbour that sends
// packets for 127.0.0.1 to the host, as any machine on a VPS's link can:
// its own 127.0.0.1 is removed, 127.0.0.0/8 may leave and come back on
// its veth (route_localnet), and 127.0.0.1 is routed via HostIP. Only
// this bed's outside namespace changes.
func (b *Bed) RouteLoopbackToHost(ctx context.Context) error {
	vo := b.Name + "vo"
	for _, s := range [][]string{
		{"ip", "-n", b.OutNS, "addr", "del", "127.0.0.1/8", "dev", "lo"},
		{"ip", "netns", "exec", b.OutNS, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf." + vo + ".route_localnet=1"},
		{"ip", "-n", b.OutNS, "route", "add", "127.0.0.1/32", "via", HostIP.String(), "dev", vo},
	} {
		if out, err := run(ctx, s...); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// HostExec runs a command in the host namespace with `ip netns exec`, so
// /etc/netns/<host>/ files (ufw's) are bind-mounted over /etc.
func (b *Bed) HostExec(ctx context.Context, args ...string) (string, error) {
	out, err := run(ctx, append([]string{"ip", "netns", "exec", b.HostNS}, args...)...)
	if err != nil {
		return out, fmt.Errorf("in %s: %s: %w: %s", b.HostNS, strings.Join(args, " "), err, out)
	}
	return out, nil
}

// IptablesSave returns `iptables-save -t filter` of the host namespace
// without its timestamp comments, so two saves can be compared.
func (b *Bed) IptablesSave(ctx context.Context) (string, error) {
	out, err := b.HostExec(ctx, b.Iptables()+"-save", "-t", "filter")
	if err != nil {
		return "", err
	}
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "#") && l != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n"), nil
}

// ChainRules returns the -A lines of one chain from an iptables-save text.
func ChainRules(save, chain string) []string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			out = append(out, l)
		}
	}
	return out
}

var ufwMu sync.Mutex

// SetupUFW gives the host namespace its own copy of ufw's files
// (/etc/netns/<host>/ufw and …/default, bind-mounted by `ip netns exec`)
// so ufw never reads or writes the machine's own configuration.
func (b *Bed) SetupUFW(ctx context.Context) error {
	root := filepath.Join("/etc/netns", b.HostNS)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", root, err)
	}
	for _, d := range []string{"ufw", "default"} {
		if out, err := run(ctx, "cp", "-a", "/etc/"+d, filepath.Join(root, d)); err != nil {
			return fmt.Errorf("copying /etc/%s: %w: %s", d, err, out)
		}
	}
	// No sysctl changes and no module loading from ufw: those are global.
	empty := filepath.Join(root, "ufw", "sysctl-none.conf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return err
	}
	def := filepath.Join(root, "default", "ufw")
	data, err := os.ReadFile(def)
	if err != nil {
		return fmt.Errorf("reading ufw defaults: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "IPT_SYSCTL="):
			l = "IPT_SYSCTL=/etc/ufw/sysctl-none.conf"
		case strings.HasPrefix(l, "IPT_MODULES="):
			l = `IPT_MODULES=""`
		}
		lines = append(lines, l)
	}
	return os.WriteFile(def, []byte(strings.Join(lines, "\n")), 0o644)
}

// UFW runs ufw in the host namespace (serialised: ufw's lock is global).
func (b *Bed) UFW(ctx context.Context, args ...string) (string, error) {
	ufwMu.Lock()
	defer ufwMu.Unlock()
	return b.HostExec(ctx, append([]string{"ufw"}, args...)...)
}

func run(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Run runs a command in the root namespace (ip, cp…) and returns output.
func Run(ctx context.Context, args ...string) (string, error) { return run(ctx, args...) }
