package reconciler

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptfake"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// fakeDocker is a Source whose state tests change between passes.
type fakeDocker struct {
	mu    sync.Mutex
	snap  rules.Snapshot
	err   error
	calls atomic.Int32
}

func (f *fakeDocker) Snapshot(context.Context) (rules.Snapshot, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap, f.err
}

func (f *fakeDocker) set(s rules.Snapshot, err error) {
	f.mu.Lock()
	f.snap, f.err = s, err
	f.mu.Unlock()
}

const foreign = `-s 192.0.2.99/32 -m comment --comment "admin rule" -j DROP`

type rig struct {
	v4, v6 *iptfake.Table
	docker *fakeDocker
	rec    *Reconciler
	nf     *ipt.Backend
	logs   *test.Hook
}

func newRig(t *testing.T, cfg config.Config) *rig {
	t.Helper()
	return newRigSets(t, cfg, nil)
}

// newRigSets is newRig with the backend on ipsets (sets may be nil).
func newRigSets(t *testing.T, cfg config.Config, sets ipt.SetStore) *rig {
	t.Helper()
	v4 := iptfake.New("DOCKER", "DOCKER-USER")
	v4.Append("FORWARD", "-j DOCKER-USER")
	v4.Append("DOCKER-USER", foreign)
	v4.Append("DOCKER-USER", "-j RETURN")
	v6 := iptfake.New() // Docker not managing IPv6
	d := &fakeDocker{snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}}}
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	nf := ipt.New(&ipt.Tables{IPTables: v4, Restorer: v4, Tool: "fake"}, &ipt.Tables{IPTables: v6, Restorer: v6, Tool: "fake6"}, sets, log)
	return &rig{v4: v4, v6: v6, docker: d, rec: New(nf, d, cfg, log), nf: nf, logs: hook}
}

func (r *rig) sync(t *testing.T) netfilter.SyncResult {
	t.Helper()
	res, err := r.rec.Sync(context.Background())
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	r.rec.WaitRevocations() // sessions are cut beside the pass
	return res
}

func (r *rig) inSync(t *testing.T) {
	t.Helper()
	plans, err := r.rec.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if !p.InSync() {
			t.Fatalf("%s not in sync after a pass:\n%s", p.Family, netfilter.FormatPlan(p))
		}
	}
}

func TestDockerErrorChangesNothing(t *testing.T) {
	r := newRig(t, config.Default())
	r.sync(t)
	before, _ := r.v4.Save(context.Background(), "filter")
	r.docker.set(rules.Snapshot{}, errors.New("connection refused"))
	if _, err := r.rec.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want the Docker error, got %v", err)
	}
	after, _ := r.v4.Save(context.Background(), "filter")
	if string(before) != string(after) {
		t.Errorf("a failed Docker call changed the firewall:\n%s\n---\n%s", before, after)
	}
}

func TestProblemsLoggedOnce(t *testing.T) {
	r := newRig(t, config.Default())
	bad := rulestest.Web("172.17.0.3")
	bad.Name, bad.Labels = "bad", map[string]string{"dockmoat.allow": "http"}
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{bad}}, nil)
	r.sync(t)
	r.sync(t)
	n := 0
	for _, e := range r.logs.AllEntries() {
		if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "container bad") {
			n++
			if e.Data["label"] != "dockmoat.allow" || e.Data["value"] != "http" {
				t.Errorf("log fields: %v", e.Data)
			}
		}
	}
	if n != 1 {
		t.Errorf("want the label error logged once, got %d", n)
	}
}

func TestRunCoalescesAndStops(t *testing.T) {
	r := newRig(t, config.Default())
	ctx, cancel := context.WithCancel(context.Background())
	kick := make(chan struct{}, 1)
	var passes atomic.Int32
	done := make(chan error)
	go func() {
		done <- r.rec.Run(ctx, kick, RunOptions{Resync: time.Hour, MinInterval: 50 * time.Millisecond,
			OnSync: func(netfilter.SyncResult, error, time.Duration) { passes.Add(1) }})
	}()
	waitFor(t, func() bool { return passes.Load() == 1 })
	for i := 0; i < 20; i++ { // a burst of events
		select {
		case kick <- struct{}{}:
		default:
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, func() bool { return passes.Load() >= 2 })
	time.Sleep(150 * time.Millisecond)
	if n := passes.Load(); n > 3 {
		t.Errorf("a burst of 20 events caused %d passes; want it coalesced", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
	if !strings.Contains(r.v4.Rules("DOCKER-USER")[0], "dockmoat:hook") {
		t.Error("stopping removed the hook")
	}
}

func TestRunRetriesWithBackoff(t *testing.T) {
	r := newRig(t, config.Default())
	r.docker.set(rules.Snapshot{}, errors.New("docker down"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fails, oks atomic.Int32
	go func() {
		_ = r.rec.Run(ctx, nil, RunOptions{Resync: time.Hour, MaxBackoff: 100 * time.Millisecond,
			OnSync: func(_ netfilter.SyncResult, err error, _ time.Duration) {
				if err != nil {
					fails.Add(1)
				} else {
					oks.Add(1)
				}
			}})
	}()
	waitFor(t, func() bool { return fails.Load() >= 2 })
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}}, nil)
	waitFor(t, func() bool { return oks.Load() >= 1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type fakeCT struct {
	flows   []Flow
	deleted []Flow
}

func (f *fakeCT) Delete(_ rules.Family, match func(Flow) bool) (uint, error) {
	var keep []Flow
	for _, fl := range f.flows {
		if match(fl) {
			f.deleted = append(f.deleted, fl)
		} else {
			keep = append(keep, fl)
		}
	}
	f.flows = keep
	return uint(len(f.deleted)), nil
}

func TestRevocationCutsOnlyWithdrawnSessions(t *testing.T) {
	r := newRig(t, config.Default())
	ct := &fakeCT{}
	r.rec.SetConntrack(ct)
	w := rulestest.Web("172.17.0.2")
	w.Labels = map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.0/24, 203.0.113.0/24"}
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{w}}, nil)
	r.sync(t)
	flow := func(src string) Flow {
		return Flow{Proto: "tcp", Src: netip.MustParseAddr(src), OrigDstPort: 8080, ReplySrc: netip.MustParseAddr("172.17.0.2"), ReplySrcPort: 80}
	}
	ct.flows = []Flow{flow("198.51.100.5"), flow("203.0.113.9"),
		{Proto: "tcp", Src: netip.MustParseAddr("203.0.113.9"), OrigDstPort: 9999, ReplySrc: netip.MustParseAddr("172.17.0.7"), ReplySrcPort: 80}}
	// Narrow the sources: 203.0.113.0/24 loses access.
	w.Labels = map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.0/24"}
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{w}}, nil)
	r.sync(t)
	if n := r.rec.WaitRevocations(); n != 1 || len(ct.deleted) != 1 || ct.deleted[0].Src.String() != "203.0.113.9" || ct.deleted[0].OrigDstPort != 8080 {
		t.Fatalf("want only the 203.0.113.9 session to 8080 cut, got %+v (revoked %d)", ct.deleted, n)
	}
	// Container gone: its remaining session is cut too; foreign flows stay.
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}}, nil)
	r.sync(t)
	if len(ct.flows) != 1 || ct.flows[0].OrigDstPort != 9999 {
		t.Errorf("flows left: %+v", ct.flows)
	}
}

// blockingCT holds its first Delete until released, so passes queue up
// behind a busy revocation worker.
type blockingCT struct {
	fakeCT
	started, release chan struct{}
	calls            int
}

func (b *blockingCT) Delete(fam rules.Family, match func(Flow) bool) (uint, error) {
	// The first walk is the first pass's sweep; hold the second.
	if b.calls++; b.calls == 2 {
		close(b.started)
		<-b.release
	}
	return b.fakeCT.Delete(fam, match)
}

// Access opened and withdrawn again while the worker is busy still counts
// as withdrawn: the worker replays every queued result, not only the last.
func TestRevocationSeesQueuedIntermediateAccess(t *testing.T) {
	r := newRig(t, config.Default())
	ct := &blockingCT{started: make(chan struct{}), release: make(chan struct{})}
	r.rec.SetConntrack(ct)
	w := rulestest.Web("172.17.0.2")
	w.Labels = map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.0/24"}
	set := func(labels map[string]string) {
		w.Labels = labels
		r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{w}}, nil)
		if _, err := r.rec.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	set(w.Labels)
	// The first pass's sweep walks first; wait for it.
	r.rec.WaitRevocations()
	set(map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.7/32"}) // narrowed: the worker walks, and blocks
	select {
	case <-ct.started:
	case <-time.After(10 * time.Second):
		t.Fatal("narrowing the sources made no walk of the conntrack table")
	}
	// While it is blocked: 203.0.113.9 gets access, opens a session, loses access.
	set(map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.7/32, 203.0.113.0/24"})
	ct.flows = append(ct.flows, Flow{Proto: "tcp", Src: netip.MustParseAddr("203.0.113.9"), OrigDstPort: 8080, ReplySrc: netip.MustParseAddr("172.17.0.2"), ReplySrcPort: 80},
		Flow{Proto: "tcp", Src: netip.MustParseAddr("198.51.100.7"), OrigDstPort: 8080, ReplySrc: netip.MustParseAddr("172.17.0.2"), ReplySrcPort: 80})
	set(map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.7/32"})
	close(ct.release)
	r.rec.WaitRevocations()
	if len(ct.flows) != 1 || ct.flows[0].Src.String() != "198.51.100.7" {
		t.Errorf("want only the 198.51.100.7 session left, got %+v (cut %+v)", ct.flows, ct.deleted)
	}
	if ct.calls != 3 {
		t.Errorf("want the first pass's sweep, one walk for the blocked pass and one for the two queued ones, got %d", ct.calls)
	}
}

func TestDriftRepairedWhileDockerDown(t *testing.T) {
	r := newRig(t, config.Default())
	r.sync(t)
	want := r.v4.Rules(iptplan.ChainIngress)
	r.docker.set(rules.Snapshot{}, errors.New("docker down"))
	r.v4.SetChain("DOCKER-USER", foreign) // hook gone
	r.v4.SetChain(iptplan.ChainIngress)   // flushed
	res, err := r.rec.Sync(context.Background())
	if err == nil {
		t.Fatal("want the Docker error reported")
	}
	if len(res.Drift) == 0 {
		t.Error("drift not reported")
	}
	if got := r.v4.Rules(iptplan.ChainIngress); !slices.Equal(got, want) {
		t.Errorf("ingress not restored from the last state: %q", got)
	}
	if du := r.v4.Rules("DOCKER-USER"); len(du) != 3 || !strings.Contains(du[0], "dockmoat:hook") || !strings.Contains(du[1], "dockmoat:check") {
		t.Errorf("hook not restored: %q", du)
	}
}

// Sessions no state of dockmoat's allowed (opened before its first pass,
// or while its rules were flushed) are cut by the first pass, or the pass
// that repairs the drift; the host's own, Docker networks', trusted and
// allowed sessions, and ones that were not DNATed, stay.
func TestSweepCutsSessionsOpenedWhileUnprotected(t *testing.T) {
	r := newRig(t, config.Config{TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}})
	r.rec.localNets = func([]string) []netip.Prefix {
		return []netip.Prefix{netip.MustParsePrefix("172.17.0.0/16"), netip.MustParsePrefix("203.0.113.1/32")}
	}
	ct := &fakeCT{}
	r.rec.SetConntrack(ct)
	db := rulestest.Web("172.17.0.3")
	db.ID, db.Name, db.Labels = "d", "db", nil
	db.Ports[0].HostPort, db.Ports[0].ContainerPort = 5432, 5432
	w := rulestest.Web("172.17.0.2")
	w.Labels = map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "198.51.100.0/24"}
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{w, db}}, nil)
	flow := func(src string, port uint16, ctr string, cport uint16) Flow {
		return Flow{Proto: "tcp", Src: netip.MustParseAddr(src), OrigDst: netip.MustParseAddr("203.0.113.1"), OrigDstPort: port,
			ReplySrc: netip.MustParseAddr(ctr), ReplySrcPort: cport}
	}
	cut := []Flow{flow("203.0.113.10", 5432, "172.17.0.3", 5432), flow("203.0.113.10", 8080, "172.17.0.2", 80)}
	kept := []Flow{
		flow("198.51.100.5", 8080, "172.17.0.2", 80),  // allowed
		flow("10.77.0.10", 5432, "172.17.0.3", 5432),  // trusted
		flow("172.17.0.2", 5432, "172.17.0.3", 5432),  // another container
		flow("203.0.113.1", 5432, "172.17.0.3", 5432), // the host itself
		flow("127.0.0.1", 5432, "172.17.0.3", 5432),   // loopback
		flow("203.0.113.10", 22, "203.0.113.1", 22),   // not DNATed (SSH to the host)
		flow("203.0.113.10", 9999, "172.17.0.9", 80),  // not a published port
	}
	ct.flows = append(slices.Clone(cut), kept...)
	r.sync(t)
	if !slices.Equal(ct.deleted, cut) || !slices.Equal(ct.flows, kept) {
		t.Fatalf("first pass: cut %+v, kept %+v", ct.deleted, ct.flows)
	}
	// Someone flushes the rules; a session gets in; the repair sweeps.
	ct.deleted = nil
	r.v4.SetChain(iptplan.ChainIngress)
	ct.flows = append(ct.flows, cut[0])
	res := r.sync(t)
	if len(res.Drift) == 0 || !slices.Equal(ct.deleted, cut[:1]) {
		t.Errorf("repair pass (drift %v): cut %+v", res.Drift, ct.deleted)
	}
}

// A session on a port open to an interface (iface:NAME) is told by the
// interface the host routes its source by: the sweep keeps a VPN
// client's and a trusted interface's, cuts the public one's, and when the
// label moves to another interface the VPN session is revoked too.
func TestSweepAndRevokeByInterface(t *testing.T) {
	r := newRig(t, config.Config{TrustedIfaces: []string{"tail*"}})
	r.rec.localNets = func([]string) []netip.Prefix { return nil }
	routes := map[string]string{"10.8.0.5": "wg0", "100.64.0.9": "tailscale0", "203.0.113.10": "eth0"}
	r.rec.routeIface = func(a netip.Addr) string { return routes[a.String()] }
	ct := &fakeCT{}
	r.rec.SetConntrack(ct)
	w := rulestest.Web("172.17.0.2")
	w.Labels = map[string]string{"dockmoat.allow": "8080", "dockmoat.from": "iface:wg*"}
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{w}}, nil)
	flow := func(src string) Flow {
		return Flow{Proto: "tcp", Src: netip.MustParseAddr(src), OrigDst: netip.MustParseAddr("203.0.113.1"), OrigDstPort: 8080,
			ReplySrc: netip.MustParseAddr("172.17.0.2"), ReplySrcPort: 80}
	}
	vpn, trusted, public := flow("10.8.0.5"), flow("100.64.0.9"), flow("203.0.113.10")
	ct.flows = []Flow{vpn, trusted, public}
	r.sync(t)
	r.rec.WaitRevocations()
	if !slices.Equal(ct.deleted, []Flow{public}) {
		t.Fatalf("sweep cut %+v, want only the public session", ct.deleted)
	}
	ct.deleted = nil
	w.Labels["dockmoat.from"] = "iface:tun0"
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{w}}, nil)
	r.sync(t)
	r.rec.WaitRevocations()
	if !slices.Equal(ct.deleted, []Flow{vpn}) || !slices.Equal(ct.flows, []Flow{trusted}) {
		t.Errorf("after the move to tun0: cut %+v, kept %+v", ct.deleted, ct.flows)
	}
}

// TestDisableThenEnable: disable installs the bypass and cuts nothing;
// a SIGHUP-style config change keeps it; enable removes only the bypass
// and sweeps the sessions opened meanwhile to ports the policy closes.
func TestDisableThenEnable(t *testing.T) {
	r := newRig(t, config.Default())
	r.rec.localNets = func([]string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("172.17.0.0/16")} }
	ct := &fakeCT{}
	r.rec.SetConntrack(ct)
	db := rulestest.Web("172.17.0.3")
	db.Labels = nil
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{db}}, nil)
	r.sync(t)
	enabled := r.v4.Rules(iptplan.ChainMain)

	if !r.rec.SetDisabled(true) || r.rec.SetDisabled(true) {
		t.Fatal("SetDisabled reports a change only when there is one")
	}
	r.rec.SetConfig(config.Default()) // a reload does not re-enable
	opened := Flow{Proto: "tcp", Src: netip.MustParseAddr("198.51.100.9"), OrigDstPort: 8080, ReplySrc: netip.MustParseAddr("172.17.0.3"), ReplySrcPort: 80}
	ct.flows = []Flow{opened}
	r.sync(t)
	got := r.v4.Rules(iptplan.ChainMain)
	if len(got) != len(enabled)+1 || !strings.Contains(got[0], "dockmoat enable") || !strings.HasSuffix(got[0], "-g "+iptplan.ChainPass) || !slices.Equal(got[1:], enabled) {
		t.Fatalf("disabled DOCKMOAT:\n%s\nwant the bypass, then:\n%s", strings.Join(got, "\n"), strings.Join(enabled, "\n"))
	}
	r.sync(t)
	if len(ct.deleted) != 0 {
		t.Fatalf("disabled: nothing may be cut, cut %+v", ct.deleted)
	}
	r.inSync(t)

	r.rec.SetDisabled(false)
	r.sync(t)
	if got := r.v4.Rules(iptplan.ChainMain); !slices.Equal(got, enabled) {
		t.Errorf("enabled again:\n%s", strings.Join(got, "\n"))
	}
	if !slices.Equal(ct.deleted, []Flow{opened}) {
		t.Errorf("enable: the session opened while disabled must be cut, cut %+v", ct.deleted)
	}
}

// TestEnableWhileDockerHangs: enable is applied at once from the last
// snapshot (it only closes), not when Docker answers again; the pass
// still reports Docker's error.
func TestEnableWhileDockerHangs(t *testing.T) {
	r := newRig(t, config.Default())
	db := rulestest.Web("172.17.0.3")
	db.Labels = nil
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{db}}
	r.docker.set(snap, nil)
	r.sync(t)
	enabled := r.v4.Rules(iptplan.ChainMain)
	r.rec.SetDisabled(true)
	r.sync(t)
	if got := r.v4.Rules(iptplan.ChainMain); len(got) != len(enabled)+1 {
		t.Fatalf("disabled: %v", got)
	}
	r.docker.set(rules.Snapshot{}, errors.New("dockerd hung"))
	if _, err := r.rec.Sync(context.Background()); err == nil {
		t.Fatal("Docker's error must be reported")
	}
	if got := r.v4.Rules(iptplan.ChainMain); len(got) != len(enabled)+1 {
		t.Fatalf("still disabled while Docker hangs: the bypass stays: %v", got)
	}
	r.rec.SetDisabled(false)
	if _, err := r.rec.Sync(context.Background()); err == nil {
		t.Fatal("Docker's error must be reported")
	}
	if got := r.v4.Rules(iptplan.ChainMain); !slices.Equal(got, enabled) {
		t.Errorf("enable while Docker hangs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(enabled, "\n"))
	}
}

// TestObserveThenEnforce: observing lets through and cuts nothing; the
// mode set by command wins over the file's; enforce swaps the drop back
// in and sweeps the sessions the policy refuses that were opened while
// observing, and only those.
func TestObserveThenEnforce(t *testing.T) {
	r := newRig(t, config.Default())
	r.rec.localNets = func([]string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("172.17.0.0/16")} }
	ct := &fakeCT{}
	r.rec.SetConntrack(ct)
	db := rulestest.Web("172.17.0.3")
	db.ID, db.Name, db.Labels = "d", "db", nil
	w := rulestest.Web("172.17.0.2")
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{w, db}}, nil)
	if !r.rec.SetMode(ModeObserve) || r.rec.SetMode(ModeObserve) {
		t.Fatal("SetMode reports a change only when there is one")
	}
	r.rec.SetConfig(config.Default()) // a reload keeps the command's mode
	r.sync(t)
	if ing := strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n"); !strings.Contains(ing, "CONNMARK") {
		t.Fatalf("observing, yet no observe rule:\n%s", ing)
	}
	refused := Flow{Proto: "tcp", Src: netip.MustParseAddr("198.51.100.9"), OrigDstPort: 8080, ReplySrc: netip.MustParseAddr("172.17.0.3"), ReplySrcPort: 80}
	allowed := Flow{Proto: "tcp", Src: netip.MustParseAddr("198.51.100.9"), OrigDstPort: 8080, ReplySrc: netip.MustParseAddr("172.17.0.2"), ReplySrcPort: 80}
	ct.flows = []Flow{refused, allowed}
	r.sync(t)
	if len(ct.deleted) != 0 {
		t.Fatalf("observing: nothing may be cut, cut %+v", ct.deleted)
	}
	r.inSync(t)

	r.rec.SetMode(ModeEnforce)
	cfg := config.Default()
	cfg.Observe = true // the file says observe; the command's enforce wins
	r.rec.SetConfig(cfg)
	r.sync(t)
	if ing := strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n"); strings.Contains(ing, "CONNMARK") || !strings.HasSuffix(ing, "-j DROP") {
		t.Errorf("enforcing:\n%s", ing)
	}
	if !slices.Equal(ct.deleted, []Flow{refused}) {
		t.Errorf("enforce: only the session the policy refuses is cut, cut %+v", ct.deleted)
	}
}
