package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt"
	"github.com/dockmoat/dockmoat/rules"
)

// fakeSets is an in-memory SetStore that counts element writes and can
// tell when each set was created relative to the fake's restores.
type fakeSets struct {
	sets       map[string]map[rules.SetElem]bool
	adds, dels int
	lists      int
	failAdd    error
	// before reports how many restores the rig had done at each Create.
	restoresAt func() int
	createdAt  map[string]int
}

func newFakeSets() *fakeSets {
	return &fakeSets{sets: map[string]map[rules.SetElem]bool{}, createdAt: map[string]int{}}
}

func (f *fakeSets) Create(name, typ string, fam rules.Family) error {
	if _, ok := f.sets[name]; !ok {
		f.sets[name] = map[rules.SetElem]bool{}
		if f.restoresAt != nil {
			f.createdAt[name] = f.restoresAt()
		}
	}
	return nil
}

func (f *fakeSets) List(name string) ([]rules.SetElem, bool, error) {
	f.lists++
	s, ok := f.sets[name]
	return slices.Collect(maps.Keys(s)), ok, nil
}

func (f *fakeSets) Add(name string, elems []rules.SetElem) error {
	if f.failAdd != nil && len(elems) > 0 {
		return f.failAdd
	}
	for _, e := range elems {
		f.sets[name][e] = true
		f.adds++
	}
	return nil
}

func (f *fakeSets) Del(name string, elems []rules.SetElem) error {
	for _, e := range elems {
		delete(f.sets[name], e)
		f.dels++
	}
	return nil
}

func (f *fakeSets) Destroy(name string) error {
	delete(f.sets, name)
	return nil
}

func (f *fakeSets) has(name, elem string) bool {
	for e := range f.sets[name] {
		if e.String() == elem {
			return true
		}
	}
	return false
}

func setRig(t *testing.T) (*rig, *fakeSets) {
	fs := newFakeSets()
	r := newRigSets(t, config.Default(), fs)
	fs.restoresAt = func() int { return r.v4.Restores }
	return r, fs
}

func TestSetsFilledBeforeRulesUseThem(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	if at, ok := fs.createdAt["DOCKMOAT-OPEN-V4"]; !ok || at != 0 {
		t.Errorf("OPEN set created after %d restores (want before the first)", at)
	}
	if !fs.has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") || fs.adds != 1 {
		t.Errorf("OPEN set %v, %d adds", fs.sets["DOCKMOAT-OPEN-V4"], fs.adds)
	}
	ing := strings.Join(r.v4.Rules(rules.ChainIngress), "\n")
	if !strings.Contains(ing, "--match-set DOCKMOAT-OPEN-V4 dst,dst") || strings.Contains(ing, "172.17.0.2") {
		t.Errorf("ingress should look allows up in the set:\n%s", ing)
	}
	r.inSync(t)
}

func TestSetsContainerChangeIsElementChangeOnly(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	restores, lists := r.v4.Restores, fs.lists
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{web("172.17.0.9")}}, nil)
	res := r.sync(t)
	if !res.Applied || r.v4.Restores != restores {
		t.Errorf("a container change should write set elements, not rules: applied %v, restores %d→%d", res.Applied, restores, r.v4.Restores)
	}
	if fs.has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") || !fs.has("DOCKMOAT-OPEN-V4", "172.17.0.9,tcp:80") || fs.dels != 1 || fs.adds != 2 {
		t.Errorf("set after change: %v (adds %d dels %d)", fs.sets["DOCKMOAT-OPEN-V4"], fs.adds, fs.dels)
	}
	if fs.lists != lists {
		t.Errorf("a pass within setVerifyAge re-read the sets (%d lists)", fs.lists-lists)
	}
	res = r.sync(t)
	if res.Applied {
		t.Error("an in-sync pass wrote")
	}
}

func TestSetsEditedBySomeoneElseRepaired(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	// Someone deletes our element and adds one of theirs; plan (which
	// reads the sets in full) sees it, and the next pass puts it back.
	delete(fs.sets["DOCKMOAT-OPEN-V4"], rules.SetElem{Addr: web("172.17.0.2").Endpoints[0].IPv4, Proto: "tcp", Port: 80})
	fs.sets["DOCKMOAT-OPEN-V4"][rules.SetElem{Addr: web("172.17.0.66").Endpoints[0].IPv4, Proto: "tcp", Port: 22}] = true
	plans, err := r.rec.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if plans[0].InSync() || len(ipt.DetailOf(plans[0]).SetAdd["DOCKMOAT-OPEN-V4"]) != 1 || len(ipt.DetailOf(plans[0]).SetDel["DOCKMOAT-OPEN-V4"]) != 1 {
		t.Fatalf("plan should show one add and one delete: %+v %+v", ipt.DetailOf(plans[0]).SetAdd, ipt.DetailOf(plans[0]).SetDel)
	}
	res := r.sync(t)
	if !slices.Contains(res.Drift, "set DOCKMOAT-OPEN-V4 edited") {
		t.Errorf("drift not reported: %v", res.Drift)
	}
	if !fs.has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") || fs.has("DOCKMOAT-OPEN-V4", "172.17.0.66,tcp:22") {
		t.Errorf("set not repaired: %v", fs.sets["DOCKMOAT-OPEN-V4"])
	}
}

func TestSetsFailureLeavesRulesAndRereads(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	fs.failAdd = errors.New("boom")
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{web("172.17.0.9")}}, nil)
	if _, err := r.rec.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("want the set error, got %v", err)
	}
	lists := fs.lists
	fs.failAdd = nil
	r.sync(t)
	if fs.lists == lists || !fs.has("DOCKMOAT-OPEN-V4", "172.17.0.9,tcp:80") {
		t.Errorf("after a failed write the next pass must re-read the sets and finish (%d lists)", fs.lists-lists)
	}
}

func TestSetsRecreatedWhenChainsRepaired(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	// iptables -F DOCKMOAT-INGRESS, then the unreferenced set destroyed.
	r.v4.SetChain(rules.ChainIngress)
	delete(fs.sets, "DOCKMOAT-OPEN-V4")
	found, err := r.rec.RepairLast(context.Background())
	if err != nil || len(found) == 0 {
		t.Fatalf("repair: %v %v", found, err)
	}
	if !fs.has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") {
		t.Errorf("set not recreated by the repair: %v", fs.sets)
	}
	r.inSync(t)
}

func TestUninstallDestroysSets(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	if err := r.rec.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(fs.sets) != 0 {
		t.Errorf("sets left: %v", fs.sets)
	}
}

func TestSetsSwitchedOffByConfig(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	r.rec.SetConfig(config.Config{UFW: config.UFWAuto, NoIPSet: true})
	r.sync(t)
	ing := strings.Join(r.v4.Rules(rules.ChainIngress), "\n")
	if strings.Contains(ing, "--match-set") || !strings.Contains(ing, "172.17.0.2") || r.v4.HasChain(rules.ChainPorts) || len(fs.sets) != 0 {
		t.Errorf("ipset: off should give one rule per allow, no PORTS chain, no sets:\n%s\nsets %v", ing, fs.sets)
	}
	r.inSync(t)
	r.rec.SetConfig(config.Default())
	r.sync(t)
	if !fs.has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") || !r.v4.HasChain(rules.ChainPorts) {
		t.Errorf("back to ipsets: %v", fs.sets)
	}
	r.inSync(t)
}

// TestSetsFollowDesiredOverRandomChanges drives the reconciler through
// random container changes (and, now and then, someone editing a set or
// a failed write) and checks after every successful pass that the sets
// hold exactly what a fresh rules.Build wants: the record, the deltas and
// the periodic full read must never leave a stale element (an open port).
func TestSetsFollowDesiredOverRandomChanges(t *testing.T) {
	for seed := range uint64(10) {
		r, fs := setRig(t)
		rnd := rand.New(rand.NewPCG(seed, 7))
		var cs []rules.Container
		for step := range 120 {
			switch k := rnd.IntN(10); {
			case k < 4 || len(cs) == 0:
				c := web(fmt.Sprintf("172.17.%d.%d", rnd.IntN(2), 2+rnd.IntN(5)))
				c.ID, c.Name = fmt.Sprint("id", step), fmt.Sprint("c", rnd.IntN(6))
				c.Ports[0].HostPort = uint16(8080 + rnd.IntN(4))
				if rnd.IntN(3) == 0 {
					c.Labels = map[string]string{"dockmoat.allow": "*", "dockmoat.from": "198.51.100.0/24"}
				}
				cs = append(cs, c)
			case k < 6:
				i := rnd.IntN(len(cs))
				cs = slices.Delete(cs, i, i+1)
			case k < 8:
				i := rnd.IntN(len(cs))
				c := cs[i]
				c.Endpoints = []rules.Endpoint{{Network: "bridge", IPv4: netip.AddrFrom4([4]byte{172, 17, 0, byte(2 + rnd.IntN(5))})}}
				cs[i] = c
			case k < 9:
				// Someone deletes or adds an element by hand.
				for name := range fs.sets {
					for e := range fs.sets[name] {
						delete(fs.sets[name], e)
						break
					}
					fs.sets[name][rules.SetElem{Addr: netip.MustParseAddr("172.17.9.9"), Proto: "tcp", Port: 22}] = true
				}
				r.nf.ForgetSets() // as if setVerifyAge had passed
			default:
				fs.failAdd = errors.New("boom")
			}
			r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: slices.Clone(cs)}, nil)
			if _, err := r.rec.Sync(context.Background()); err != nil {
				if fs.failAdd == nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
				fs.failAdd = nil
				continue
			}
			want := rules.Build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: cs}, rules.IPv4, rules.Options{Sets: true})
			for _, set := range want.Sets {
				wantElems := map[rules.SetElem]bool{}
				for _, e := range set.Elems {
					wantElems[e] = true
				}
				if !maps.Equal(fs.sets[set.Name], wantElems) {
					t.Fatalf("seed %d step %d: set %s holds %v, want %v", seed, step, set.Name, fs.sets[set.Name], wantElems)
				}
			}
		}
	}
}

// Opening a port withdraws nothing: the conntrack table is not walked.
// Closing one does.
func TestRevocationOnlyWhenSomethingWithdrawn(t *testing.T) {
	r, _ := setRig(t)
	ct := &countingCT{}
	r.rec.SetConntrack(ct)
	r.sync(t)
	if ct.calls != 1 {
		t.Errorf("the first pass sweeps sessions opened before it: want one walk, got %d", ct.calls)
	}
	ct.calls = 0
	second := web("172.17.0.3")
	second.ID, second.Name = "w2", "web2"
	second.Ports[0].HostPort = 8081
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{web("172.17.0.2"), second}}, nil)
	r.sync(t)
	if ct.calls != 0 {
		t.Errorf("a port opened, yet the conntrack table was walked %d time(s)", ct.calls)
	}
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{second}}, nil)
	r.sync(t)
	if ct.calls != 1 {
		t.Errorf("a port closed: want one walk of the conntrack table, got %d", ct.calls)
	}
}

type countingCT struct{ calls int }

func (c *countingCT) Delete(rules.Family, func(Flow) bool) (uint, error) {
	c.calls++
	return 0, nil
}
