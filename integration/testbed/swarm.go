package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// A Swarm bed is N nodes on one link, as the hosts of a small cluster
// are: each node is a Bed without an outside namespace (its own network
// namespace, dockerd, data-root and exec-root, and also its own hostname
// and mount namespace, so that every node's Docker socket is at NodeRun
// for the containers it starts, as /var/run/docker.sock is on a real
// host). A switch namespace holds the link's bridge; one outside
// namespace on the same link plays the internet.
type Swarm struct {
	Engine   Engine
	Name     string
	SwitchNS string
	OutNS    string
	Nodes    []*Bed
	logf     func(string, ...any)
}

// Addresses of a Swarm bed's link (IPv4 and IPv6 documentation ranges).
var (
	SwarmOutsideA  = netip.MustParseAddr("198.51.100.100")
	SwarmOutsideB  = netip.MustParseAddr("198.51.100.101")
	SwarmOutsideA6 = netip.MustParseAddr("2001:db8:5::100")
	SwarmOutsideB6 = netip.MustParseAddr("2001:db8:5::101")
)

// NodeRun is where every Swarm node's dockerd sees its own socket
// directory (NodeRun/docker.sock): a bind mount inside the node's mount
// namespace, over an empty directory of the machine.
const NodeRun = "/run/dockmoat-node"

// NodeIP and NodeIP6 are node i's addresses (i from 0).
func NodeIP(i int) netip.Addr  { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}) }
func NodeIP6(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("2001:db8:5::%d", i+1)) }

// StartSwarm creates the link and n nodes, inits the swarm on node 0 and
// joins the others as workers.
func StartSwarm(ctx context.Context, eng Engine, n int, logf func(string, ...any)) (*Swarm, error) {
	id := fmt.Sprintf("dm%d%ds", os.Getpid()%10000, seq.Add(1))
	s := &Swarm{Engine: eng, Name: id, SwitchNS: id + "w", OutNS: id + "o", logf: logf}
	if err := s.setupLink(ctx); err != nil {
		s.Close()
		return nil, err
	}
	for range n {
		if _, err := s.AddNode(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	if err := s.Init(ctx); err != nil {
		s.Close()
		return nil, err
	}
	for _, b := range s.Nodes[1:] {
		if err := s.Join(ctx, b); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Swarm) setupLink(ctx context.Context) error {
	if err := os.MkdirAll(NodeRun, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", NodeRun, err)
	}
	vo := s.Name + "vo"
	steps := [][]string{
		{"ip", "netns", "add", s.SwitchNS},
		{"ip", "netns", "add", s.OutNS},
		{"ip", "-n", s.SwitchNS, "link", "add", "sw", "type", "bridge"},
		{"ip", "-n", s.SwitchNS, "link", "set", "sw", "up"},
		{"ip", "link", "add", vo, "netns", s.OutNS, "type", "veth", "peer", "name", "po", "netns", s.SwitchNS},
		{"ip", "-n", s.SwitchNS, "link", "set", "po", "master", "sw", "up"},
		{"ip", "-n", s.OutNS, "link", "set", "lo", "up"},
		{"ip", "-n", s.OutNS, "link", "set", vo, "up"},
	}
	for _, a := range []netip.Addr{SwarmOutsideA, SwarmOutsideB} {
		steps = append(steps, []string{"ip", "-n", s.OutNS, "addr", "add", a.String() + "/24", "dev", vo})
	}
	for _, a := range []netip.Addr{SwarmOutsideA6, SwarmOutsideB6} {
		steps = append(steps, []string{"ip", "-n", s.OutNS, "addr", "add", a.String() + "/64", "dev", vo, "nodad"})
	}
	return runSteps(ctx, steps)
}

// AddNode starts one more node on the link (not yet in the swarm).
func (s *Swarm) AddNode(ctx context.Context) (*Bed, error) {
	i := len(s.Nodes)
	name := fmt.Sprintf("%sn%d", s.Name, i+1)
	b := &Bed{Engine: s.Engine, Name: name, HostNS: name + "h", logf: s.logf, node: name}
	b.Dir = filepath.Join("/var/lib/dockmoat-test", name)
	b.Socket = filepath.Join("/run/dockmoat-test", name, "docker.sock")
	s.Nodes = append(s.Nodes, b)
	vh, port := name+"v", fmt.Sprintf("p%d", i+1)
	steps := [][]string{
		{"ip", "netns", "add", b.HostNS},
		{"ip", "link", "add", vh, "netns", b.HostNS, "type", "veth", "peer", "name", port, "netns", s.SwitchNS},
		{"ip", "-n", s.SwitchNS, "link", "set", port, "master", "sw", "up"},
		{"ip", "-n", b.HostNS, "link", "set", "lo", "up"},
		{"ip", "-n", b.HostNS, "addr", "add", NodeIP(i).String() + "/24", "dev", vh},
		{"ip", "-n", b.HostNS, "addr", "add", NodeIP6(i).String() + "/64", "dev", vh, "nodad"},
		{"ip", "-n", b.HostNS, "link", "set", vh, "up"},
	}
	if err := runSteps(ctx, steps); err != nil {
		return b, err
	}
	return b, b.startDockerd(ctx)
}

// Init makes node 0 the swarm's manager.
func (s *Swarm) Init(ctx context.Context) error {
	m := s.Nodes[0]
	addr := NodeIP(0).String()
	if _, err := m.Docker.SwarmInit(ctx, client.SwarmInitOptions{ListenAddr: addr + ":2377", AdvertiseAddr: addr}); err != nil {
		return fmt.Errorf("swarm init on %s: %w", m.Name, err)
	}
	return nil
}

// Join joins a node to the swarm as a worker and waits until the
// manager lists it ready.
func (s *Swarm) Join(ctx context.Context, b *Bed) error {
	m := s.Nodes[0]
	info, err := m.Docker.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return fmt.Errorf("swarm inspect: %w", err)
	}
	i := s.index(b)
	if _, err := b.Docker.SwarmJoin(ctx, client.SwarmJoinOptions{
		ListenAddr: NodeIP(i).String() + ":2377", AdvertiseAddr: NodeIP(i).String(),
		RemoteAddrs: []string{NodeIP(0).String() + ":2377"}, JoinToken: info.Swarm.JoinTokens.Worker,
	}); err != nil {
		return fmt.Errorf("swarm join of %s: %w", b.Name, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		nodes, err := m.Docker.NodeList(ctx, client.NodeListOptions{})
		if err == nil {
			for _, n := range nodes.Items {
				if n.Description.Hostname == b.node && n.Status.State == swarm.NodeStateReady {
					s.logf("%s: joined the swarm as node %s", b.Name, n.ID)
					return nil
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready in the swarm after 60s", b.Name)
}

func (s *Swarm) index(b *Bed) int {
	for i, n := range s.Nodes {
		if n == b {
			return i
		}
	}
	return -1
}

// NodeID is the swarm node ID of a node.
func (b *Bed) NodeID(ctx context.Context) (string, error) {
	info, err := b.Docker.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("docker info on %s: %w", b.Name, err)
	}
	return info.Info.Swarm.NodeID, nil
}

// DockerNetns is the path of a network namespace dockerd created (a
// sandbox such as "ingress_sbox"), reached through dockerd's own mount
// namespace: on a Swarm node it is not mounted in the machine's.
func (b *Bed) DockerNetns(name string) (string, error) {
	if b.dockerd == nil || b.dockerd.Process == nil {
		return "", fmt.Errorf("%s: dockerd not running", b.Name)
	}
	return filepath.Join("/proc", fmt.Sprint(b.dockerd.Process.Pid), "root", b.execRoot(), "netns", name), nil
}

// Hostname is a Swarm node's hostname ("" for a plain bed).
func (b *Bed) Hostname() string { return b.node }

// Close stops every node and removes the link.
func (s *Swarm) Close() {
	for _, b := range s.Nodes {
		b.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range []string{s.OutNS, s.SwitchNS} {
		_, _ = run(ctx, "ip", "netns", "del", ns)
	}
}

// nodeWrap runs dockerd (args after nsenter's "--") in a new mount and
// UTS namespace: hostname name, and the node's socket directory dir
// bound at NodeRun. Propagation is slave: the machine's mounts are seen,
// the node's own (containers' root filesystems) stay the node's. The bind
// at NodeRun is shared within the node, as /run is on a systemd host: the
// stack binds the containers' namespaces from it with rslave propagation.
func nodeWrap(args []string, name, dir string) []string {
	i := 0
	for i < len(args) && args[i] != "--" {
		i++
	}
	script := `hostname "$1" && mount --bind "$2" "$3" && mount --make-shared "$3" && shift 3 && exec "$@"`
	wrapped := append([]string{}, args[:i+1]...)
	wrapped = append(wrapped, "unshare", "--mount", "--uts", "--propagation", "slave", "--",
		"sh", "-c", script, "sh", name, dir, NodeRun)
	return append(wrapped, args[i+1:]...)
}

func runSteps(ctx context.Context, steps [][]string) error {
	for _, st := range steps {
		if out, err := run(ctx, st...); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(st, " "), err, out)
		}
	}
	return nil
}
