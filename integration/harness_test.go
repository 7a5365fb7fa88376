package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// env is one engine's bed with dockmoat running, shared by the behaviour
// subtests of that engine.
type env struct {
	ctx context.Context
	bed *testbed.Bed
	dm  *testbed.Dockmoat
}

const (
	closedTimeout = 1200 * time.Millisecond // a drop shows as no answer
	openTimeout   = 8 * time.Second         // an allow may take a pass to appear
)

// startEnv starts a bed for eng, builds the workload image, and registers
// cleanup (which prints the logs on failure).
// onVariants runs f in parallel subtests on the beds of one Docker build
// under both iptables variants (the legacy bed and its iptables-nft
// twin), for the tests about how dockmoat writes the kernel rather than
// about the engine.
func onVariants(t *testing.T, f func(t *testing.T, eng testbed.Engine, e *env)) {
	legacy := map[string]bool{}
	for _, eng := range engines {
		if eng.Legacy {
			legacy[eng.Dockerd] = true
		}
	}
	eachBed(t, pickBeds(func(eng testbed.Engine) []testbed.Engine {
		if legacy[eng.Dockerd] {
			return []testbed.Engine{eng}
		}
		return nil
	}), func(t *testing.T, eng testbed.Engine) { f(t, eng, startEnv(t, eng)) })
}

// pickBeds chooses a suite's beds by what the engines can do: each engine
// gives the beds f returns for it (none, itself, or variants of it).
func pickBeds(f func(testbed.Engine) []testbed.Engine) []testbed.Engine {
	var out []testbed.Engine
	for _, eng := range engines {
		out = append(out, f(eng)...)
	}
	return out
}

// requireBed fails t unless some bed is what ok asks: a machine missing
// an engine a suite is about fails it rather than quietly covering less.
func requireBed(t *testing.T, beds []testbed.Engine, what string, ok func(testbed.Engine) bool) {
	t.Helper()
	if !slices.ContainsFunc(beds, ok) {
		t.Fatalf("no bed %s among %d (engines: %v)", what, len(beds), engines)
	}
}

// eachBed runs suite in a parallel subtest per bed.
func eachBed(t *testing.T, beds []testbed.Engine, suite func(t *testing.T, eng testbed.Engine)) {
	for _, eng := range beds {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			suite(t, eng)
		})
	}
}

func nftBed(e testbed.Engine) bool    { return e.FirewallBackend == "nftables" }
func legacyBed(e testbed.Engine) bool { return e.Legacy }

func startEnv(t *testing.T, eng testbed.Engine) *env {
	t.Helper()
	ctx := context.Background()
	bed, err := testbed.Start(ctx, eng, t.Logf)
	if err != nil {
		t.Fatalf("starting test bed: %v", err)
	}
	e := &env{ctx: ctx, bed: bed}
	t.Cleanup(func() {
		if t.Failed() {
			if e.dm != nil {
				t.Logf("dockmoat log (%s):\n%s", eng.Name, e.dm.Logs())
			}
			if save, err := bed.IptablesSave(ctx); err == nil {
				t.Logf("iptables-save -t filter (%s):\n%s", eng.Name, save)
			}
		}
		if e.dm != nil {
			_ = e.dm.Stop(9)
		}
		bed.Close()
	})
	if err := bed.BuildImage(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// startDockmoat runs `dockmoat run` in the bed; resync is short so that
// changes Docker does not announce (ufw) are picked up quickly.
func (e *env) startDockmoat(t *testing.T, cfg string) {
	t.Helper()
	dm, err := e.bed.StartDockmoat(dockmoatBin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.dm = dm
	e.sync(t)
}

// dockmoat runs a dockmoat command in the bed against its state
// directory, failing t when it fails; it returns the output.
func (e *env) dockmoat(t *testing.T, args ...string) string {
	t.Helper()
	msg, err := e.bed.Exec(e.ctx, dockmoatBin, append(args, "--state-dir", e.dm.StateDir())...)
	if err != nil {
		t.Fatalf("dockmoat %v: %v\n%s", args, err, msg)
	}
	return msg
}

func (e *env) sync(t *testing.T) {
	t.Helper()
	if err := e.dm.WaitInSync(e.ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

func (e *env) reload(t *testing.T, cfg string) {
	t.Helper()
	if err := e.dm.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	// SIGHUP is asynchronous: give the daemon a beat before asking plan,
	// which reads the new file at once.
	time.Sleep(200 * time.Millisecond)
	e.sync(t)
}

// run starts a container, removed when the subtest ends.
func (e *env) run(t *testing.T, s testbed.Spec) testbed.Container {
	t.Helper()
	return e.runFor(t, t, s)
}

// runFor starts a container that outlives the subtest t: it is removed
// when owner (an enclosing test) ends. Failures are t's.
func (e *env) runFor(t, owner *testing.T, s testbed.Spec) testbed.Container {
	t.Helper()
	c, err := e.bed.RunContainer(e.ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() { _ = e.bed.Remove(context.Background(), c.ID) })
	return c
}

// check is one expectation: a connection attempt and whether it must work.
type check struct {
	proto   string
	src     netip.Addr
	srcPort int
	dst     netip.AddrPort
	open    bool
	who     string // container name expected in the greeting, when open
	fromNS  string // namespace path; "" = outside
	// synFlags, when set, tries a raw TCP first packet with these flags
	// (SYN plus PSH or URG) and wants a SYN-ACK, instead of a connection.
	synFlags byte
}

func out(proto string, src netip.Addr, port int, open bool, who string) check {
	return check{proto: proto, src: src, dst: netip.AddrPortFrom(testbed.HostIP, uint16(port)), open: open, who: who}
}

// expect runs the checks concurrently (closed ones cost their timeout) and
// reports every wrong one with the caller's line.
func (e *env) expect(t *testing.T, checks ...check) {
	t.Helper()
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if msg := e.try(c); msg != "" {
				mu.Lock()
				failures = append(failures, msg)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
}

func (e *env) try(c check) string {
	ns := c.fromNS
	if ns == "" {
		ns = e.bed.OutNSPath()
	}
	p := testbed.Probe{Proto: c.proto, Src: c.src, SrcPort: c.srcPort, Dst: c.dst}
	if c.synFlags != 0 {
		return e.trySYN(ns, c)
	}
	if !c.open {
		answer, err := testbed.Try(e.ctx, ns, p, closedTimeout)
		if err == nil {
			return fmt.Sprintf("%s: want closed, but it answered %q", p, answer)
		}
		return ""
	}
	deadline := time.Now().Add(openTimeout)
	var err error
	var answer string
	for time.Now().Before(deadline) {
		answer, err = testbed.Try(e.ctx, ns, p, 1500*time.Millisecond)
		if err == nil {
			if c.who != "" && !strings.Contains(answer, "hello from "+c.who+" ") {
				return fmt.Sprintf("%s: answered by the wrong server: %q (want %s)", p, answer, c.who)
			}
			return ""
		}
		if !errors.Is(err, testbed.ErrNoAnswer) {
			time.Sleep(200 * time.Millisecond)
		}
	}
	return fmt.Sprintf("%s: want open, got %v", p, err)
}

// serverUp proves a container really answers on a port, from the host
// namespace straight to the container's address, so that a "closed"
// verdict elsewhere is the firewall's doing and not a dead server.
func (e *env) serverUp(t *testing.T, c testbed.Container, proto string, port int) {
	t.Helper()
	e.expect(t, check{proto: proto, src: netip.IPv4Unspecified(), dst: netip.AddrPortFrom(c.IP, uint16(port)),
		open: true, who: c.Name, fromNS: e.bed.HostNSPath()})
}

// fromHost is a check made from the host namespace itself.
func (e *env) fromHost(proto string, dst netip.Addr, port int, open bool, who string) check {
	return check{proto: proto, src: netip.IPv4Unspecified(), dst: netip.AddrPortFrom(dst, uint16(port)),
		open: open, who: who, fromNS: e.bed.HostNSPath()}
}

// prober hammers a set of checks from the outside until stopped, counting
// answers on ports that must be closed (breaches) and silence on ports that
// must be open (misses). Bounded: each worker waits for its attempt, so the
// rate is at most workers/timeout per second.
type prober struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	attempts map[string]int
	breaches []string
	misses   map[string]int
}

func (e *env) startProber(checks []check, workersPerCheck int) *prober {
	p := &prober{stop: make(chan struct{}), attempts: map[string]int{}, misses: map[string]int{}}
	for _, c := range checks {
		for w := 0; w < workersPerCheck; w++ {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				probe := testbed.Probe{Proto: c.proto, Src: c.src, Dst: c.dst}
				for {
					select {
					case <-p.stop:
						return
					default:
					}
					start := time.Now()
					answer, err := testbed.Try(e.ctx, e.bed.OutNSPath(), probe, 300*time.Millisecond)
					p.mu.Lock()
					p.attempts[probe.String()]++
					if err == nil && !c.open {
						p.breaches = append(p.breaches, fmt.Sprintf("%s answered %q at %s", probe, answer, start.Format("15:04:05.000")))
					}
					// A connection made but not greeted in time got through
					// the firewall: a slow server on a busy machine, not a miss.
					if err != nil && c.open && !errors.Is(err, testbed.ErrNoGreeting) {
						p.misses[probe.String()]++
					}
					p.mu.Unlock()
					if d := 100*time.Millisecond - time.Since(start); d > 0 {
						time.Sleep(d) // at most 10 attempts/s per worker
					}
				}
			}()
		}
	}
	return p
}

// sum adds up per-probe attempt counts.
// noneThrough fails t for every connection the prober got through (when
// says when it happened) and for every check it tried fewer than 10
// times: too few to prove a port closed.
func noneThrough(t *testing.T, attempts map[string]int, breaches []string, when string) {
	t.Helper()
	for _, b := range breaches {
		t.Errorf("reachable %s: %s", when, b)
	}
	for k, n := range attempts {
		if n < 10 {
			t.Errorf("prober made only %d attempts on %s: the test proves nothing", n, k)
		}
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (p *prober) finish() (attempts map[string]int, breaches []string, misses map[string]int) {
	close(p.stop)
	p.wg.Wait()
	return p.attempts, p.breaches, p.misses
}

// restartDockerd stops and starts the bed's dockerd while a prober
// hammers checks, waits for dockmoat to be in sync again plus settle, and
// returns the time from the stop until in sync and the prober's counts.
func (e *env) restartDockerd(t *testing.T, checks []check, settle time.Duration) (time.Duration, map[string]int, []string) {
	t.Helper()
	p := e.startProber(checks, 2)
	start := time.Now()
	if err := e.bed.StopDockerd(); err != nil {
		p.finish()
		t.Fatal(err)
	}
	if err := e.bed.StartDockerd(e.ctx); err != nil {
		p.finish()
		t.Fatal(err)
	}
	e.sync(t)
	took := time.Since(start)
	time.Sleep(settle)
	attempts, breaches, _ := p.finish()
	return took, attempts, breaches
}

// trySYN is try for a raw first packet: closed wants no SYN-ACK within
// closedTimeout; open wants one within openTimeout.
func (e *env) trySYN(ns string, c check) string {
	what := fmt.Sprintf("tcp %s -> %s with flags %#x", c.src, c.dst, c.synFlags)
	if !c.open {
		if ok, err := testbed.TrySYN(e.ctx, ns, c.src, c.dst, c.synFlags, closedTimeout); err != nil || ok {
			return fmt.Sprintf("%s: want no SYN-ACK, got %v %v", what, ok, err)
		}
		return ""
	}
	deadline := time.Now().Add(openTimeout)
	for time.Now().Before(deadline) {
		ok, err := testbed.TrySYN(e.ctx, ns, c.src, c.dst, c.synFlags, time.Second)
		if err != nil {
			return fmt.Sprintf("%s: %v", what, err)
		}
		if ok {
			return ""
		}
	}
	return what + ": want a SYN-ACK, got none"
}

// step is one named step of a suite. A suite's steps share one bed (and
// usually one daemon) and run in order, each in its own subtest, so a
// failing step names itself and the next ones still run.
type step struct {
	name string
	run  func(t *testing.T)
}

// runSteps runs a suite's steps in order.
func runSteps(t *testing.T, steps []step) {
	for _, s := range steps {
		t.Run(s.name, s.run)
	}
}

// listenOutside listens on TCP port of A in the outside namespace, a
// server on the internet for the bed's containers; t's cleanup closes it.
func (e *env) listenOutside(t *testing.T, port uint16) net.Listener {
	t.Helper()
	var l net.Listener
	err := testbed.InNetns(e.bed.OutNSPath(), func() (err error) {
		l, err = net.Listen("tcp", netip.AddrPortFrom(A, port).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
