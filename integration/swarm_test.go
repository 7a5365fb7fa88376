package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/integration/testbed"
)

// TestSwarm proves the Swarm promise on a real cluster: three dockerds,
// each in its own namespaces, joined into one swarm, with dockmoat
// deployed by Swarm itself from deploy/stack.yaml and the built image.
// From an outside namespace on the cluster's link, on every node:
// host-mode published ports of services are closed unless their policy
// opens them, sources are honoured, the policy follows a task that is
// rescheduled when its node is drained, and a node that joins later is
// protected with no step on it. Each closed check has its control: the
// same ports answer from the same client before dockmoat is deployed.
//
// The ingress routing mesh needs IPVS, which this kernel lacks, so Docker
// does not program it here: the test writes the rules Docker would write
// and proves them up to the ingress sandbox (programMesh).
func TestSwarm(t *testing.T) {
	needBeds(t)
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("the docker CLI (package docker.io) is needed for `docker stack deploy`: %v", err)
	}
	eachBed(t, pickBeds(func(eng testbed.Engine) []testbed.Engine {
		if eng.Legacy {
			return nil
		}
		return []testbed.Engine{eng}
	}), swarmSuite)
}

// swarmEnv is one engine's swarm, with helpers that act on it.
type swarmEnv struct {
	ctx context.Context
	sw  *testbed.Swarm
	out string // the outside namespace's path
}

func swarmSuite(t *testing.T, eng testbed.Engine) {
	ctx := context.Background()
	sw, err := testbed.StartSwarm(ctx, eng, 2, t.Logf)
	if err != nil {
		t.Fatalf("starting the swarm: %v", err)
	}
	s := &swarmEnv{ctx: ctx, sw: sw, out: "/run/netns/" + sw.OutNS}
	t.Cleanup(func() {
		if t.Failed() {
			s.logState(t)
		}
		sw.Close()
	})
	for _, n := range sw.Nodes {
		s.prepareNode(t, n)
	}
	meshes := s.createServices(t)
	nodes := []int{0, 1}
	// Controls: without dockmoat every port answers every source.
	for _, src := range []netip.Addr{testbed.SwarmOutsideA, testbed.SwarmOutsideB} {
		for _, p := range []struct {
			port  int
			proto string
		}{{8090, "tcp"}, {8053, "udp"}, {8091, "tcp"}, {8054, "udp"}, {8095, "tcp"}, {8096, "tcp"}} {
			s.expect(t, s.checks(nodes, src, p.port, p.proto, true)...)
		}
	}

	start := time.Now()
	s.deployStack(t, "allow:\n  - service: moving\n    ports: [\"8092\"]\n"+
		"  - service: meshopen\n    ports: [\"8096\"]\n    from: [\""+testbed.SwarmOutsideA.String()+"\"]\n")
	s.eventually(t, "8090 closed on every node", s.checks(nodes, testbed.SwarmOutsideA, 8090, "tcp", false))
	t.Logf("%s: from docker stack deploy to every node closed: %s", eng.Name, time.Since(start).Round(time.Millisecond))
	s.waitTasks(t, "dockmoat_dockmoat", len(sw.Nodes)) // Running once healthy (the health check's first interval)

	t.Run("HostModeByPolicy", func(t *testing.T) { s.hostModeByPolicy(t, nodes) })
	t.Run("IngressMeshByConfig", func(t *testing.T) { s.ingressMeshByConfig(t, nodes, meshes) })
	t.Run("AuditSwarm", s.auditEveryNode)
	t.Run("RefusesNFTBackend", s.refusesNFT)
	t.Run("EgressBoundToInterface", s.egressBound)
	t.Run("PolicyFollowsRescheduledTask", s.policyFollowsTask)
	t.Run("NodeJoiningLaterIsProtected", s.nodeJoiningLater)
}

// createServices creates the workloads on the swarm and the routing
// mesh's rules on every node.
func (s *swarmEnv) createServices(t *testing.T) []*mesh {
	s.docker(t, "network", "create", "-d", "overlay", "appnet")
	// closed: no policy, on the default bridge (Docker's plain DNAT).
	s.docker(t, "service", "create", "-d", "--name", "closed", "--mode", "global",
		"--publish", "mode=host,published=8090,target=90", "--publish", "mode=host,published=8053,target=53,protocol=udp",
		testbed.Image, "90", "53/udp")
	// open: labeled, for source A only, on an overlay network: its port
	// is DNATed to the task's docker_gwbridge endpoint.
	s.docker(t, "service", "create", "-d", "--name", "open", "--mode", "global", "--network", "appnet",
		"--container-label", "dockmoat.allow=8091,8054/udp", "--container-label", "dockmoat.from="+testbed.SwarmOutsideA.String(),
		"--publish", "mode=host,published=8091,target=91", "--publish", "mode=host,published=8054,target=54,protocol=udp",
		testbed.Image, "91", "54/udp")
	// moving: one replica, opened by the config file by service name.
	s.docker(t, "service", "create", "-d", "--name", "moving", "--replicas", "1", "--network", "appnet",
		"--publish", "mode=host,published=8092,target=92", testbed.Image, "92")
	// Routing mesh: on the manager only, so the worker runs no task of
	// them and learns them from the ingress network alone.
	for _, svc := range []struct{ name, port string }{{"mesh", "8095"}, {"meshopen", "8096"}} {
		s.docker(t, "service", "create", "-d", "--name", svc.name, "--replicas", "1", "--constraint", "node.role==manager",
			"--publish", "published="+svc.port+",target=95", testbed.Image, "95")
	}
	for svc, n := range map[string]int{"closed": len(s.sw.Nodes), "open": len(s.sw.Nodes), "moving": 1, "mesh": 1, "meshopen": 1} {
		s.waitTasks(t, svc, n)
	}
	meshes := make([]*mesh, len(s.sw.Nodes))
	for i, n := range s.sw.Nodes {
		meshes[i] = s.programMesh(t, n)
	}
	return meshes
}

func (s *swarmEnv) hostModeByPolicy(t *testing.T, nodes []int) {
	for _, src := range []netip.Addr{testbed.SwarmOutsideA, testbed.SwarmOutsideB} {
		s.expect(t, s.checks(nodes, src, 8090, "tcp", false)...)
		s.expect(t, s.checks(nodes, src, 8053, "udp", false)...)
	}
	s.expect(t, s.checks(nodes, testbed.SwarmOutsideA, 8091, "tcp", true)...)
	s.expect(t, s.checks(nodes, testbed.SwarmOutsideA, 8054, "udp", true)...)
	s.expect(t, s.checks(nodes, testbed.SwarmOutsideB, 8091, "tcp", false)...)
	s.expect(t, s.checks(nodes, testbed.SwarmOutsideB, 8054, "udp", false)...)
}

func (s *swarmEnv) ingressMeshByConfig(t *testing.T, nodes []int, meshes []*mesh) {
	before := make([]map[string]int, len(meshes))
	for i, m := range meshes {
		before[i] = m.counts(t)
	}
	for _, src := range []netip.Addr{testbed.SwarmOutsideA, testbed.SwarmOutsideB} {
		s.expect(t, s.checks(nodes, src, 8095, "tcp", false)...)
	}
	s.expect(t, s.checks(nodes, testbed.SwarmOutsideB, 8096, "tcp", false)...)
	s.expect(t, s.checks(nodes, testbed.SwarmOutsideA, 8096, "tcp", true)...)
	// The sandbox's own counters: nothing of the closed pairs reached
	// it, on the manager and on the worker that runs no task of them.
	for i, m := range meshes {
		after := m.counts(t)
		for _, k := range []string{countKey(8095, testbed.SwarmOutsideA), countKey(8095, testbed.SwarmOutsideB), countKey(8096, testbed.SwarmOutsideB)} {
			if after[k] != before[i][k] {
				t.Errorf("node %d: %d first packets of %s reached the ingress sandbox while closed", i, after[k]-before[i][k], k)
			}
		}
		k := countKey(8096, testbed.SwarmOutsideA)
		if after[k] <= before[i][k] {
			t.Errorf("node %d: the allowed %s never reached the ingress sandbox (%d → %d)", i, k, before[i][k], after[k])
		}
		t.Logf("node %d sandbox first packets (before dockmoat → now): %v → %v", i, before[i], after)
	}
}

// auditEveryNode runs audit --swarm and checks every node's rows against
// real connections from A and B to that node; then Swarm's own ports.
func (s *swarmEnv) auditEveryNode(t *testing.T) {
	rep, code := s.auditSwarm(t)
	if code != 0 {
		t.Errorf("audit --swarm exit %d, want 0 (every port as intended)", code)
	}
	want := map[string]report.Exposure{"closed.:8090/tcp": report.Closed, "closed.:8053/udp": report.Closed,
		"open.:8091/tcp": report.Restricted, "open.:8054/udp": report.Restricted,
		"ingress/mesh:8095/tcp": report.Closed, "ingress/meshopen:8096/tcp": report.Restricted}
	for i, n := range s.sw.Nodes {
		nr := nodeReport(rep, n.Hostname())
		if nr == nil || nr.Err != "" || !nr.Report.Protected {
			t.Errorf("node %d (%s): %+v", i, n.Hostname(), nr)
			continue
		}
		for key, exp := range want {
			row := findRow(nr.Report, key)
			if row == nil {
				t.Errorf("node %d: no row %s", i, key)
				continue
			}
			if row.Exposure != exp {
				t.Errorf("node %d: %s is %s (%s), want %s", i, key, row.Exposure, row.Reason, exp)
			}
			for _, src := range []netip.Addr{testbed.SwarmOutsideA, testbed.SwarmOutsideB} {
				open := row.Exposure == report.Public || row.Exposure == report.Restricted &&
					slices.ContainsFunc(row.Sources, func(p string) bool { return sourceContains(p, src) })
				s.expect(t, s.checks([]int{i}, src, int(row.HostPort), row.Proto, open)...)
			}
		}
	}
	s.swarmPorts(t, rep)
}

// swarmPorts: Swarm's own ports flagged where outside sources reach
// them, proven by a connection; then fenced to the nodes on the manager,
// and no longer flagged nor reachable there.
func (s *swarmEnv) swarmPorts(t *testing.T, rep report.ClusterReport) {
	manager := nodeReport(rep, s.sw.Nodes[0].Hostname())
	worker := nodeReport(rep, s.sw.Nodes[1].Hostname())
	if manager == nil || worker == nil || !hasFinding(manager.Report, "Swarm port 2377/tcp") ||
		!hasFinding(manager.Report, "Swarm port 7946/tcp") || !hasFinding(worker.Report, "Swarm port 7946/tcp") ||
		hasFinding(worker.Report, "Swarm port 2377/tcp") {
		t.Fatalf("Swarm port findings: manager %+v worker %+v", manager, worker)
	}
	if err := s.dial(testbed.SwarmOutsideA, testbed.NodeIP(0), 2377); err != nil {
		t.Fatalf("audit says 2377/tcp is reachable, but: %v", err)
	}
	s.fence2377(t)
	rep, _ = s.auditSwarm(t)
	if m := nodeReport(rep, s.sw.Nodes[0].Hostname()); m == nil || hasFinding(m.Report, "Swarm port 2377/tcp") || !hasFinding(m.Report, "Swarm port 7946/tcp") {
		t.Errorf("after fencing 2377 to the nodes: %+v", m)
	}
	if err := s.dial(testbed.SwarmOutsideA, testbed.NodeIP(0), 2377); err == nil {
		t.Errorf("2377/tcp still reachable from %s after fencing", testbed.SwarmOutsideA)
	}
}

// refusesNFT: dockmoat told to use its nftables backend on a Swarm node
// refuses, with the reason, and writes nothing.
func (s *swarmEnv) refusesNFT(t *testing.T) {
	n := s.sw.Nodes[1]
	out, err := n.Exec(s.ctx, dockmoatBin, "plan", "--backend", "nftables")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out, "this node is in a Swarm") {
		t.Errorf("plan --backend nftables on a Swarm node: %v\n%s", err, out)
	}
	if tables, _ := n.HostExec(s.ctx, "nft", "list", "tables"); strings.Contains(tables, "dockmoat") {
		t.Errorf("a table was written anyway:\n%s", tables)
	}
}

// policyFollowsTask drains the node running "moving": Swarm starts it on
// the other node, whose dockmoat opens it there (the config file's rule).
func (s *swarmEnv) policyFollowsTask(t *testing.T) {
	from := s.taskNode(t, "moving")
	to := 1 - from
	s.expect(t, s.checks([]int{from}, testbed.SwarmOutsideB, 8092, "tcp", true)...)
	id, err := s.sw.Nodes[from].NodeID(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.docker(t, "node", "update", "--availability", "drain", id)
	t.Cleanup(func() { s.docker(t, "node", "update", "--availability", "active", id) })
	s.eventually(t, "moving answers on the node it moved to", s.checks([]int{to}, testbed.SwarmOutsideB, 8092, "tcp", true))
	if got := s.taskNode(t, "moving"); got != to {
		t.Fatalf("moving runs on node %d after draining node %d", got, from)
	}
	// Draining stopped the drained node's dockmoat task too: its rules
	// stay in the kernel (nothing is removed on exit).
	save, err := s.sw.Nodes[from].IptablesSave(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	hook := slices.ContainsFunc(testbed.ChainRules(save, "DOCKER-USER"), func(r string) bool {
		return strings.Contains(r, "dockmoat:hook") && strings.HasSuffix(r, "-j DOCKMOAT")
	})
	if !hook || len(testbed.ChainRules(save, "DOCKMOAT-DENY")) == 0 {
		t.Errorf("the drained node lost dockmoat's rules:\n%s", save)
	}
}

// nodeJoiningLater adds a third node: Swarm starts dockmoat there (global
// service), which protects it without any step on the node.
func (s *swarmEnv) nodeJoiningLater(t *testing.T) {
	s.allow2377(t, testbed.NodeIP(len(s.sw.Nodes)))
	n, err := s.sw.AddNode(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.prepareNode(t, n)
	joined := time.Now()
	if err := s.sw.Join(s.ctx, n); err != nil {
		t.Fatal(err)
	}
	i := len(s.sw.Nodes) - 1
	s.waitTasks(t, "closed", len(s.sw.Nodes))
	s.eventually(t, "the new node closes 8090", s.checks([]int{i}, testbed.SwarmOutsideA, 8090, "tcp", false))
	t.Logf("from join to the new node closed: %s", time.Since(joined).Round(time.Millisecond))
	for _, svc := range []string{"open", "dockmoat_dockmoat"} {
		s.waitTasks(t, svc, len(s.sw.Nodes))
	}
	s.expect(t, s.checks([]int{i}, testbed.SwarmOutsideA, 8091, "tcp", true)...)
	s.expect(t, s.checks([]int{i}, testbed.SwarmOutsideB, 8091, "tcp", false)...)
	s.expect(t, s.checks([]int{i}, testbed.SwarmOutsideB, 8053, "udp", false)...)
	s.expect(t, s.checks([]int{i}, testbed.SwarmOutsideA, 8054, "udp", true)...)
}

// mesh is one node's ingress routing mesh as the test programs it.
type mesh struct {
	s       *swarmEnv
	node    *testbed.Bed
	sandbox string // the ingress sandbox's network namespace path
}

// programMesh writes, in a node's namespace, the rules Docker writes for
// ingress-mode ports where the kernel has IPVS (moby's generated
// documentation, integration/network/bridge/iptablesdoc/generated/
// swarm-portmap.md): nat PREROUTING → DOCKER-INGRESS, a DNAT to the
// ingress sandbox's docker_gwbridge address with the published port kept;
// filter FORWARD → DOCKER-INGRESS right after DOCKER-USER, accepting the
// port. Docker cannot write them here (no IPVS), and without IPVS nothing
// in the sandbox would balance to the tasks: the test server answers in
// the sandbox instead, and counter rules there count first packets per
// port and source. Everything up to the sandbox is Docker's real path.
func (s *swarmEnv) programMesh(t *testing.T, n *testbed.Bed) *mesh {
	t.Helper()
	sbox := s.sandboxAddr(t, n)
	ipt := n.Iptables()
	cmds := [][]string{
		{ipt, "-t", "nat", "-N", "DOCKER-INGRESS"},
		{ipt, "-t", "nat", "-I", "PREROUTING", "1", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER-INGRESS"},
		{ipt, "-t", "filter", "-N", "DOCKER-INGRESS"},
		{ipt, "-t", "filter", "-I", "FORWARD", "2", "-j", "DOCKER-INGRESS"},
	}
	for _, port := range []string{"8095", "8096"} {
		cmds = append(cmds,
			[]string{ipt, "-t", "nat", "-A", "DOCKER-INGRESS", "-p", "tcp", "-m", "tcp", "--dport", port, "-j", "DNAT", "--to-destination", sbox + ":" + port},
			[]string{ipt, "-t", "filter", "-A", "DOCKER-INGRESS", "-p", "tcp", "-m", "tcp", "--dport", port, "-j", "ACCEPT"},
			[]string{ipt, "-t", "filter", "-A", "DOCKER-INGRESS", "-p", "tcp", "-m", "tcp", "--sport", port, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"})
	}
	cmds = append(cmds, []string{ipt, "-t", "nat", "-A", "DOCKER-INGRESS", "-j", "RETURN"}, []string{ipt, "-t", "filter", "-A", "DOCKER-INGRESS", "-j", "RETURN"})
	for _, c := range cmds {
		if _, err := n.HostExec(s.ctx, c...); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := n.DockerNetns("ingress_sbox")
	if err != nil {
		t.Fatal(err)
	}
	m := &mesh{s: s, node: n, sandbox: ns}
	for _, port := range []int{8095, 8096} {
		for _, src := range []netip.Addr{testbed.SwarmOutsideA, testbed.SwarmOutsideB} {
			m.sandboxExec(t, ipt, "-t", "raw", "-A", "PREROUTING", "-s", src.String(), "-p", "tcp", "--dport", fmt.Sprint(port), "--syn",
				"-m", "comment", "--comment", countKey(port, src))
		}
	}
	stop, err := n.ServeIn(ns, "mesh-"+n.Name, "8095/tcp", "8096/tcp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return m
}

// sandboxAddr waits for the node's ingress sandbox on docker_gwbridge.
func (s *swarmEnv) sandboxAddr(t *testing.T, n *testbed.Bed) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		res, err := n.Docker.NetworkInspect(s.ctx, "docker_gwbridge", client.NetworkInspectOptions{})
		if err == nil {
			if ep, ok := res.Network.Containers["ingress-sbox"]; ok && ep.IPv4Address.IsValid() {
				return ep.IPv4Address.Addr().String()
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: no ingress sandbox on docker_gwbridge after 60s", n.Name)
	return ""
}

func countKey(port int, src netip.Addr) string { return fmt.Sprintf("dmcount-%d-%s", port, src) }

func (m *mesh) sandboxExec(t *testing.T, args ...string) string {
	t.Helper()
	out, err := testbed.Run(m.s.ctx, append([]string{"nsenter", "--net=" + m.sandbox, "--"}, args...)...)
	if err != nil {
		t.Fatalf("in %s's ingress sandbox: %s: %v\n%s", m.node.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// counts reads the sandbox's counter rules: first packets per port/source.
func (m *mesh) counts(t *testing.T) map[string]int {
	t.Helper()
	out := m.sandboxExec(t, m.node.Iptables()+"-save", "-c", "-t", "raw")
	counts := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, "dmcount-")
		if !strings.HasPrefix(line, "[") || i < 0 {
			continue
		}
		var pkts, bytes int
		if _, err := fmt.Sscanf(line, "[%d:%d]", &pkts, &bytes); err == nil {
			counts[strings.Trim(strings.Fields(line[i:])[0], `"`)] = pkts
		}
	}
	return counts
}

// auditSwarm runs `dockmoat audit --swarm` on the manager, as a user
// would (the job runs the stack's image on every node), and logs the table.
func (s *swarmEnv) auditSwarm(t *testing.T) (report.ClusterReport, int) {
	t.Helper()
	run := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(s.ctx, 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, dockmoatBin, append([]string{"audit", "--swarm"}, args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+s.sw.Nodes[0].Socket)
		out, err := cmd.Output()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("--format", "json")
	var rep report.ClusterReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("audit --swarm output is not JSON (exit %d): %v\n%s", code, err, out)
	}
	table, tcode := run()
	t.Logf("audit --swarm (exit %d):\n%s", tcode, table)
	return rep, code
}

func hasFinding(rep report.Report, prefix string) bool {
	return slices.ContainsFunc(rep.Findings, func(f string) bool { return strings.HasPrefix(f, prefix) })
}

// dial opens a TCP connection from the outside namespace (Swarm's ports
// send no greeting: a completed handshake is the proof).
func (s *swarmEnv) dial(src, dst netip.Addr, port int) error {
	return testbed.InNetns(s.out, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.DialContext(s.ctx, "tcp", netip.AddrPortFrom(dst, uint16(port)).String())
		if err == nil {
			c.Close()
		}
		return err
	})
}

// fence2377 lets only the current nodes reach the manager's 2377/tcp:
// the fix audit's finding names. The cluster speaks IPv4 here (its peers
// are IPv4 addresses), so IPv6 is dropped whole.
func (s *swarmEnv) fence2377(t *testing.T) {
	t.Helper()
	m := s.sw.Nodes[0]
	ip6 := strings.Replace(m.Iptables(), "iptables", "ip6tables", 1)
	for _, ipt := range []string{m.Iptables(), ip6} {
		if _, err := m.HostExec(s.ctx, ipt, "-I", "INPUT", "1", "-p", "tcp", "--dport", "2377", "-j", "DROP"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range s.sw.Nodes {
		s.allow2377(t, testbed.NodeIP(i))
	}
}

// allow2377 lets one more node reach the manager's 2377/tcp (before it
// joins, as an admin who fenced the port would).
func (s *swarmEnv) allow2377(t *testing.T, node netip.Addr) {
	t.Helper()
	m := s.sw.Nodes[0]
	if _, err := m.HostExec(s.ctx, m.Iptables(), "-I", "INPUT", "1", "-s", node.String(), "-p", "tcp", "--dport", "2377", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
}

func nodeReport(rep report.ClusterReport, node string) *report.NodeReport {
	for i := range rep.Nodes {
		if rep.Nodes[i].Node == node {
			return &rep.Nodes[i]
		}
	}
	return nil
}

// findRow finds the IPv4 row "<container prefix>:<port>/<proto>".
func findRow(rep report.Report, key string) *report.Row {
	prefix, rest, _ := strings.Cut(key, ":")
	for i, r := range rep.Rows {
		if strings.HasPrefix(r.Container, prefix) && fmt.Sprintf("%d/%s", r.HostPort, r.Proto) == rest && !strings.Contains(r.HostIP, ":") {
			return &rep.Rows[i]
		}
	}
	return nil
}

// prepareNode builds the workload image and loads dockmoat's image on a
// node: there is no registry, so every node gets its copy (a real
// cluster pulls both).
func (s *swarmEnv) prepareNode(t *testing.T, n *testbed.Bed) {
	t.Helper()
	if err := n.BuildImage(s.ctx); err != nil {
		t.Fatal(err)
	}
	sidecarImage(t, &env{ctx: s.ctx, bed: n})
}

// docker runs the docker CLI against the manager.
func (s *swarmEnv) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.dockerEnv(nil, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *swarmEnv) dockerEnv(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(append(os.Environ(), "DOCKER_HOST=unix://"+s.sw.Nodes[0].Socket), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// deployStack deploys deploy/stack.yaml as shipped, with the variables it
// documents: this bed's image, its config, and the nodes' socket.
func (s *swarmEnv) deployStack(t *testing.T, cfg string) {
	t.Helper()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	stack, err := filepath.Abs("../deploy/stack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.dockerEnv([]string{"DOCKMOAT_IMAGE=" + sidecarTag, "DOCKMOAT_CONFIG=" + cfgFile,
		"DOCKER_SOCKET=" + testbed.NodeRun + "/docker.sock", "DOCKER_NETNS=" + testbed.NodeRun + "/exec/netns"}, "stack", "deploy", "-c", stack, "dockmoat")
	if err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
}

// waitTasks waits until a service has n running tasks.
func (s *swarmEnv) waitTasks(t *testing.T, service string, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var out string
	for time.Now().Before(deadline) {
		var err error
		out, err = s.dockerEnv(nil, "service", "ps", "-q", "-f", "desired-state=running", "--format", "{{.CurrentState}}", service)
		if err == nil && strings.Count(out, "Running") == n {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	ps, _ := s.dockerEnv(nil, "service", "ps", "--no-trunc", service)
	t.Fatalf("service %s: want %d running tasks, have:\n%s", service, n, ps)
}

// taskNode is the index of the node running a one-replica service.
func (s *swarmEnv) taskNode(t *testing.T, service string) int {
	t.Helper()
	for i, n := range s.sw.Nodes {
		id, err := n.NodeID(s.ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := s.docker(t, "service", "ps", "-q", "-f", "desired-state=running", "-f", "node="+id, service)
		if strings.TrimSpace(out) != "" {
			return i
		}
	}
	t.Fatalf("no node runs %s", service)
	return -1
}

// checks are one probe per node, to its address of the source's family.
func (s *swarmEnv) checks(nodes []int, src netip.Addr, port int, proto string, open bool) []check {
	var cs []check
	for _, i := range nodes {
		dst := testbed.NodeIP(i)
		if src.Is6() {
			dst = testbed.NodeIP6(i)
		}
		cs = append(cs, check{proto: proto, src: src, dst: netip.AddrPortFrom(dst, uint16(port)), open: open, fromNS: s.out})
	}
	return cs
}

func (s *swarmEnv) expect(t *testing.T, checks ...check) {
	t.Helper()
	(&env{ctx: s.ctx, bed: s.sw.Nodes[0]}).expect(t, checks...)
}

// eventually waits (60 s at most) until every check holds: dockmoat's
// tasks start when Swarm schedules them, not at a moment the test knows.
func (s *swarmEnv) eventually(t *testing.T, what string, checks []check) {
	t.Helper()
	e := &env{ctx: s.ctx, bed: s.sw.Nodes[0]}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var failed []string
		for _, c := range checks {
			if msg := e.try(c); msg != "" {
				failed = append(failed, msg)
			}
		}
		if len(failed) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 60s: %s", what, strings.Join(failed, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// logState prints what a failure needs: services, tasks, dockmoat's logs
// and each node's ruleset.
func (s *swarmEnv) logState(t *testing.T) {
	for _, args := range [][]string{{"service", "ls"}, {"node", "ls"}, {"service", "ps", "--no-trunc", "dockmoat_dockmoat"},
		{"service", "logs", "--tail", "50", "dockmoat_dockmoat"}} {
		out, _ := s.dockerEnv(nil, args...)
		t.Logf("docker %s:\n%s", strings.Join(args, " "), out)
	}
	for _, n := range s.sw.Nodes {
		node := []string{"DOCKER_HOST=unix://" + n.Socket}
		ps, _ := s.dockerEnv(node, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Status}}")
		t.Logf("%s containers:\n%s", n.Name, ps)
		for _, line := range strings.Split(ps, "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "dockmoat_") {
				logs, _ := s.dockerEnv(node, "logs", "--tail", "30", f[0])
				health, _ := s.dockerEnv(node, "inspect", "--format", "{{json .State}}", f[0])
				t.Logf("%s %s logs:\n%s\nstate: %s", n.Name, f[1], logs, health)
			}
		}
		if save, err := n.IptablesSave(s.ctx); err == nil {
			t.Logf("%s iptables-save -t filter:\n%s", n.Name, save)
		}
		t.Logf("%s dockerd log (tail):\n%s", n.Name, lastLines(n.DockerdLog(), 20))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// egressBound: the stack's dockmoat reads containers' namespaces (the
// DOCKER_NETNS bind): a deny container started on a node has its veth
// bound to its addresses in that node's table bridge dockmoat.
func (s *swarmEnv) egressBound(t *testing.T) {
	n := s.sw.Nodes[0]
	c, err := n.RunContainer(s.ctx, testbed.Spec{Name: "denied", Labels: map[string]string{"dockmoat.egress": "deny"}, Serve: []string{"80"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = n.Remove(s.ctx, c.ID) }()
	var table string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		table, _ = n.HostExec(s.ctx, "nft", "list", "table", "bridge", "dockmoat")
		if strings.Contains(table, "ip saddr != "+c.IP.String()+" drop") {
			return
		}
	}
	t.Errorf("%s: no binding of %s in table bridge dockmoat:\n%s", n.Name, c.IP, table)
}
