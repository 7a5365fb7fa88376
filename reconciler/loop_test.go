package reconciler

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// fakeBackend is a netfilter.Backend that records the loop's calls: the
// loop's own behaviour is tested against it, whatever the backend.
type fakeBackend struct {
	mu       sync.Mutex
	calls    []string
	fresh    []bool
	snaps    []rules.Snapshot
	drift    []string // what the next Apply reports as changed by others
	repair   []string // what Repair finds (and puts back)
	intact   bool
	notifies bool
	applyErr error
}

func (f *fakeBackend) call(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

func (f *fakeBackend) Plan(_ context.Context, cfg config.Config, snap rules.Snapshot, fresh bool) ([]netfilter.FamilyPlan, error) {
	f.call("plan")
	f.fresh, f.snaps = append(f.fresh, fresh), append(f.snaps, snap)
	var plans []netfilter.FamilyPlan
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		plans = append(plans, netfilter.FamilyPlan{Family: fam, Tool: "fake",
			Result: policy.Build(cfg, snap, fam, policy.Options{})})
	}
	return plans, nil
}

func (f *fakeBackend) Apply(_ context.Context, plans []netfilter.FamilyPlan) (netfilter.Applied, error) {
	f.call("apply")
	out := netfilter.Applied{Wrote: true, Drift: f.drift}
	f.drift = nil
	for _, p := range plans {
		out.Families = append(out.Families, netfilter.Installed{Plan: p, Changed: true})
	}
	return out, f.applyErr
}

func (f *fakeBackend) Repair(context.Context) ([]string, error) {
	f.call("repair")
	found := f.repair
	f.repair = nil
	return found, nil
}

func (f *fakeBackend) Intact(context.Context) (bool, error) {
	f.call("intact")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.intact, nil
}

func (f *fakeBackend) Guard(context.Context, config.Config, netfilter.Boot) ([]string, error) {
	f.call("guard")
	return []string{"guarded"}, nil
}

func (f *fakeBackend) Uninstall(context.Context) error { f.call("uninstall"); return nil }

func (f *fakeBackend) Notifies() bool { return f.notifies }

func (f *fakeBackend) seen() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, " ")
}

func loopRig(t *testing.T) (*Reconciler, *fakeBackend, *fakeDocker, *test.Hook) {
	t.Helper()
	fb := &fakeBackend{intact: true}
	d := &fakeDocker{snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}}}
	log, hook := test.NewNullLogger()
	return New(fb, d, config.Default(), log), fb, d, hook
}

// A pass is: Docker, then the backend's Plan (not fresh) and Apply with
// the same snapshot; `plan` asks for a fresh read and never applies.
func TestLoopPassPlansThenApplies(t *testing.T) {
	rec, fb, _, _ := loopRig(t)
	res, err := rec.Sync(context.Background())
	if err != nil || !res.Applied || len(res.Plans) != 2 {
		t.Fatalf("pass: %+v %v", res, err)
	}
	if _, err := rec.Plan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fb.seen(); got != "plan apply plan" {
		t.Errorf("calls %q", got)
	}
	if fb.fresh[0] || !fb.fresh[1] {
		t.Errorf("fresh = %v; want a pass to use the backend's record and plan to read afresh", fb.fresh)
	}
	if len(fb.snaps[0].Containers) != 1 {
		t.Errorf("backend got snapshot %+v", fb.snaps[0])
	}
}

// Docker down: no new policy, only the last installed state is put back,
// and what was found is reported by that pass and never again.
func TestLoopDockerDownRepairsOnly(t *testing.T) {
	rec, fb, d, _ := loopRig(t)
	d.set(rules.Snapshot{}, errors.New("docker down"))
	fb.repair = []string{"IPv4: chain DOCKMOAT flushed"}
	res, err := rec.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "docker down") {
		t.Fatalf("err = %v", err)
	}
	if got := fb.seen(); got != "repair" {
		t.Errorf("calls %q; want only a repair", got)
	}
	if len(res.Drift) != 1 || res.Drift[0] != "IPv4: chain DOCKMOAT flushed" {
		t.Errorf("drift %q", res.Drift)
	}
	d.set(d.snap, nil)
	if res, _ := rec.Sync(context.Background()); len(res.Drift) != 0 {
		t.Errorf("drift reported twice: %q", res.Drift)
	}
}

// Drift repaired between passes (RepairLast) is reported by the next
// pass, before what the backend found itself.
func TestLoopReportsRepairedDriftOnce(t *testing.T) {
	rec, fb, _, hook := loopRig(t)
	fb.repair = []string{"IPv4: hook missing"}
	if found, err := rec.RepairLast(context.Background()); err != nil || len(found) != 1 {
		t.Fatalf("repair: %v %v", found, err)
	}
	if hook.LastEntry() == nil || !strings.Contains(hook.LastEntry().Message, "drift repaired") {
		t.Error("a repair is logged")
	}
	fb.drift = []string{"set DOCKMOAT-OPEN-V4 edited"}
	res, _ := rec.Sync(context.Background())
	if strings.Join(res.Drift, "|") != "IPv4: hook missing|set DOCKMOAT-OPEN-V4 edited" {
		t.Errorf("drift %q", res.Drift)
	}
	if res, _ := rec.Sync(context.Background()); len(res.Drift) != 0 {
		t.Errorf("drift reported twice: %q", res.Drift)
	}
}

// Problems come from every plan, are logged once while they last, and a
// failed Apply still reports them and returns its error.
func TestLoopProblemsAndApplyErrors(t *testing.T) {
	rec, fb, d, hook := loopRig(t)
	bad := rulestest.Web("172.17.0.3")
	bad.ID, bad.Name, bad.Labels = "b", "bad", map[string]string{"dockmoat.allow": "nope"}
	d.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{bad}}, nil)
	fb.applyErr = errors.New("restore failed")
	res, err := rec.Sync(context.Background())
	if err == nil || len(res.Problems) == 0 {
		t.Fatalf("want the apply error and the label problem: %+v %v", res.Problems, err)
	}
	logged := 0
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "nope") {
			logged++
		}
	}
	if _, err := rec.Sync(context.Background()); err == nil {
		t.Fatal("apply error lost")
	}
	again := 0
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "nope") {
			again++
		}
	}
	if logged != 1 || again != 1 {
		t.Errorf("problem logged %d then %d times; want once", logged, again)
	}
}

// Every installed family goes to the revocation worker.
func TestLoopRevokesPerInstalledFamily(t *testing.T) {
	rec, _, d, _ := loopRig(t)
	ct := &fakeCT{flows: []Flow{{Proto: "tcp", Src: netip.MustParseAddr("198.51.100.7"), ReplySrc: netip.MustParseAddr("172.17.0.2"), ReplySrcPort: 80,
		OrigDst: netip.MustParseAddr("192.0.2.1"), OrigDstPort: 8080}}}
	rec.SetConntrack(ct)
	rec.localNets = func([]string) []netip.Prefix { return nil }
	if _, err := rec.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.WaitRevocations()
	closed := rulestest.Web("172.17.0.2")
	closed.Labels = nil
	d.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{closed}}, nil)
	if _, err := rec.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := rec.WaitRevocations(); n != 1 || len(ct.deleted) != 1 {
		t.Errorf("cut %d sessions (%v); want the one to the port just closed", n, ct.deleted)
	}
}

// Drift watch: a backend whose changes are not announced is polled; a
// check that finds the rules changed repairs at once and kicks a pass.
func TestLoopWatchDriftPollsAndRepairs(t *testing.T) {
	rec, fb, _, _ := loopRig(t)
	fb.mu.Lock()
	fb.intact = false
	fb.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kicked := make(chan string, 1)
	go func() {
		_ = rec.WatchDrift(ctx, 5*time.Millisecond, func(reason string) {
			select {
			case kicked <- reason:
			default:
			}
		})
	}()
	select {
	case reason := <-kicked:
		if reason != "drift" {
			t.Errorf("kick reason %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no kick after a failed intact check")
	}
	if got := fb.seen(); !strings.HasPrefix(got, "intact repair") {
		t.Errorf("calls %q; want a check then a repair", got)
	}
}

// Guard and Uninstall go straight to the backend.
func TestLoopGuardUninstall(t *testing.T) {
	rec, fb, _, _ := loopRig(t)
	done, err := rec.Guard(context.Background(), config.Default(), netfilter.Boot{})
	if err != nil || len(done) != 1 {
		t.Fatal(done, err)
	}
	if err := rec.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fb.seen(); got != "guard uninstall" {
		t.Errorf("calls %q", got)
	}
}

// The watchdog callback runs while the loop waits and after each pass,
// and not while a pass is stuck (here: in a Docker call that never
// returns), so systemd restarts a daemon whose loop no longer turns.
func TestLoopAliveOnlyWhileTurning(t *testing.T) {
	rec, _, d, _ := loopRig(t)
	var alive atomic.Int32
	kick := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rec.Run(ctx, kick, RunOptions{Resync: time.Hour, AliveEvery: 2 * time.Millisecond, Alive: func() { alive.Add(1) }})
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return alive.Load() >= 5 })

	d.mu.Lock() // the next Docker call hangs
	calls := d.calls.Load()
	kick <- struct{}{}
	waitFor(t, func() bool { return d.calls.Load() > calls })
	stuck := alive.Load()
	time.Sleep(50 * time.Millisecond)
	if n := alive.Load(); n != stuck {
		t.Errorf("%d pings while the pass was stuck", n-stuck)
	}
	d.mu.Unlock()
	waitFor(t, func() bool { return alive.Load() > stuck+2 })
}
