package ipt

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
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/rules/rulestest"
	"github.com/dockmoat/dockmoat/setelem"
)

func TestSetsFilledBeforeRulesUseThem(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	if at, ok := fs.CreatedAt["DOCKMOAT-OPEN-V4"]; !ok || at != 0 {
		t.Errorf("OPEN set created after %d restores (want before the first)", at)
	}
	if !fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") || fs.Adds != 1 {
		t.Errorf("OPEN set %v, %d adds", fs.Sets["DOCKMOAT-OPEN-V4"], fs.Adds)
	}
	ing := strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n")
	if !strings.Contains(ing, "--match-set DOCKMOAT-OPEN-V4 dst,dst") || strings.Contains(ing, "172.17.0.2") {
		t.Errorf("ingress should look allows up in the set:\n%s", ing)
	}
	r.inSync(t)
}

func TestSetsContainerChangeIsElementChangeOnly(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	restores, lists := r.v4.Restores, fs.Lists
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.9")}})
	res := r.sync(t)
	if !res.Applied || r.v4.Restores != restores {
		t.Errorf("a container change should write set elements, not rules: applied %v, restores %d→%d", res.Applied, restores, r.v4.Restores)
	}
	if fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") || !fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.9,tcp:80") || fs.Dels != 1 || fs.Adds != 2 {
		t.Errorf("set after change: %v (adds %d dels %d)", fs.Sets["DOCKMOAT-OPEN-V4"], fs.Adds, fs.Dels)
	}
	if fs.Lists != lists {
		t.Errorf("a pass within setVerifyAge re-read the sets (%d lists)", fs.Lists-lists)
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
	delete(fs.Sets["DOCKMOAT-OPEN-V4"], setelem.Elem{Addr: rulestest.Web("172.17.0.2").Endpoints[0].IPv4, Proto: "tcp", Port: 80})
	fs.Sets["DOCKMOAT-OPEN-V4"][setelem.Elem{Addr: rulestest.Web("172.17.0.66").Endpoints[0].IPv4, Proto: "tcp", Port: 22}] = true
	plans, err := r.b.Plan(context.Background(), r.cfg, r.snap, true)
	if err != nil {
		t.Fatal(err)
	}
	if plans[0].InSync() || len(iptplan.DetailOf(plans[0]).SetAdd["DOCKMOAT-OPEN-V4"]) != 1 || len(iptplan.DetailOf(plans[0]).SetDel["DOCKMOAT-OPEN-V4"]) != 1 {
		t.Fatalf("plan should show one add and one delete: %+v %+v", iptplan.DetailOf(plans[0]).SetAdd, iptplan.DetailOf(plans[0]).SetDel)
	}
	res := r.sync(t)
	if !slices.Contains(res.Drift, "set DOCKMOAT-OPEN-V4 edited") {
		t.Errorf("drift not reported: %v", res.Drift)
	}
	if !fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") || fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.66,tcp:22") {
		t.Errorf("set not repaired: %v", fs.Sets["DOCKMOAT-OPEN-V4"])
	}
}

func TestSetsFailureLeavesRulesAndRereads(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	fs.FailAdd = errors.New("boom")
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.9")}})
	if _, err := r.try(); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("want the set error, got %v", err)
	}
	lists := fs.Lists
	fs.FailAdd = nil
	r.sync(t)
	if fs.Lists == lists || !fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.9,tcp:80") {
		t.Errorf("after a failed write the next pass must re-read the sets and finish (%d lists)", fs.Lists-lists)
	}
}

func TestSetsRecreatedWhenChainsRepaired(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	// iptables -F DOCKMOAT-INGRESS, then the unreferenced set destroyed.
	r.v4.SetChain(iptplan.ChainIngress)
	delete(fs.Sets, "DOCKMOAT-OPEN-V4")
	found, err := r.b.Repair(context.Background())
	if err != nil || len(found) == 0 {
		t.Fatalf("repair: %v %v", found, err)
	}
	if !fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") {
		t.Errorf("set not recreated by the repair: %v", fs.Sets)
	}
	r.inSync(t)
}

func TestUninstallDestroysSets(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	if err := r.b.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(fs.Sets) != 0 {
		t.Errorf("sets left: %v", fs.Sets)
	}
}

func TestSetsSwitchedOffByConfig(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t)
	r.cfg = config.Config{UFW: config.UFWAuto, NoIPSet: true}
	r.sync(t)
	ing := strings.Join(r.v4.Rules(iptplan.ChainIngress), "\n")
	// The ban set stays (its elements are the user's), unreferenced.
	if _, ok := fs.Sets[iptplan.BanSet(rules.IPv4)]; strings.Contains(ing, "--match-set") || !strings.Contains(ing, "172.17.0.2") || r.v4.HasChain(iptplan.ChainPorts) || len(fs.Sets) != 1 || !ok {
		t.Errorf("ipset: off should give one rule per allow, no PORTS chain, no sets but the bans:\n%s\nsets %v", ing, fs.Sets)
	}
	r.inSync(t)
	r.cfg = config.Default()
	r.sync(t)
	if !fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.2,tcp:80") || !r.v4.HasChain(iptplan.ChainPorts) {
		t.Errorf("back to ipsets: %v", fs.Sets)
	}
	r.inSync(t)
}

// TestSetsFollowDesiredOverRandomChanges drives the reconciler through
// random container changes (and, now and then, someone editing a set or
// a failed write) and checks after every successful pass that the sets
// hold exactly what a fresh policy.Build wants: the record, the deltas and
// the periodic full read must never leave a stale element (an open port).
func TestSetsFollowDesiredOverRandomChanges(t *testing.T) {
	for seed := range uint64(10) {
		r, fs := setRig(t)
		rnd := rand.New(rand.NewPCG(seed, 7))
		var cs []rules.Container
		for step := range 120 {
			switch k := rnd.IntN(10); {
			case k < 4 || len(cs) == 0:
				c := rulestest.Web(fmt.Sprintf("172.17.%d.%d", rnd.IntN(2), 2+rnd.IntN(5)))
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
				for name := range fs.Sets {
					for e := range fs.Sets[name] {
						delete(fs.Sets[name], e)
						break
					}
					fs.Sets[name][setelem.Elem{Addr: netip.MustParseAddr("172.17.9.9"), Proto: "tcp", Port: 22}] = true
				}
				r.b.ForgetSets() // as if setVerifyAge had passed
			default:
				fs.FailAdd = errors.New("boom")
			}
			r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: slices.Clone(cs)})
			if _, err := r.try(); err != nil {
				if fs.FailAdd == nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
				fs.FailAdd = nil
				continue
			}
			want := policy.Build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}, Containers: cs}, rules.IPv4, policy.Options{Sets: true})
			for _, set := range want.Sets {
				wantElems := map[setelem.Elem]bool{}
				for _, e := range set.Elems() {
					wantElems[e] = true
				}
				if !maps.Equal(fs.Sets[iptplan.SetName(set.Kind, set.Family)], wantElems) {
					t.Fatalf("seed %d step %d: set %s holds %v, want %v", seed, step, iptplan.SetName(set.Kind, set.Family), fs.Sets[iptplan.SetName(set.Kind, set.Family)], wantElems)
				}
			}
		}
	}
}

// The ban set: made before the first rules that look it up, refused
// first in INGRESS and DOCKMOAT-INPUT, its elements (the user's) never
// touched by a pass or a repair, and destroyed by Uninstall alone.
func TestBanSet(t *testing.T) {
	r, fs := setRig(t)
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2"), rulestest.Dual("db", 5432, nil)}})
	r.sync(t)
	ban := iptplan.BanSet(rules.IPv4)
	if at, ok := fs.CreatedAt[ban]; !ok || at != 0 {
		t.Fatalf("ban set created at restore %d (%v): it must exist before the chains that look it up", at, ok)
	}
	if ing := r.v4.Rules(iptplan.ChainIngress); !strings.Contains(ing[0], "--match-set "+ban+" src") || !strings.HasSuffix(ing[0], "-j DROP") {
		t.Errorf("INGRESS does not refuse the banned first: %q", ing[0])
	}
	if in := strings.Join(r.v6.Rules(iptplan.ChainInput), "\n"); !strings.Contains(in, "--match-set "+iptplan.BanSet(rules.IPv6)+" src") {
		t.Errorf("DOCKMOAT-INPUT (IPv6, docker-proxy path) does not refuse the banned:\n%s", in)
	}
	banned := setelem.Elem{Src: netip.MustParsePrefix("203.0.113.7/32")}
	fs.Sets[ban][banned] = true         // ipset add dockmoat-ban4 203.0.113.7
	r.v4.SetChain(iptplan.ChainIngress) // drift: flushed
	r.sync(t)
	if _, err := r.b.Repair(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !fs.Sets[ban][banned] || len(fs.Sets[ban]) != 1 {
		t.Errorf("a pass or a repair touched the user's bans: %v", fs.Sets[ban])
	}
	r.inSync(t)
	if err := r.b.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := fs.Sets[ban]; ok {
		t.Error("uninstall left the ban set")
	}
}

// TestSetOnlyChangeListsNothing: while the tables' generation has not
// moved, a pass trusts its last listing, so a container change that is
// only set elements execs nothing; a change by someone else moves the
// generation, and the next pass lists, sees it and repairs it. Without a
// generation (legacy tables) every pass lists.
func TestSetOnlyChangeListsNothing(t *testing.T) {
	r, fs := setRig(t)
	r.sync(t) // installs: the generation moves
	r.sync(t) // lists once more, writes nothing
	saves := r.v4.Saves
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.9")}})
	if res := r.sync(t); !res.Applied || !fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.9,tcp:80") {
		t.Fatalf("the change was not applied: %+v, set %v", res, fs.Sets["DOCKMOAT-OPEN-V4"])
	}
	if r.v4.Saves != saves {
		t.Errorf("a set-only change listed the table %d time(s)", r.v4.Saves-saves)
	}
	r.v4.Append(iptplan.ChainIngress, "-j ACCEPT") // someone else's rule
	res := r.sync(t)
	if r.v4.Saves != saves+1 || len(res.Drift) == 0 {
		t.Errorf("after a foreign change: %d listing(s), drift %v", r.v4.Saves-saves, res.Drift)
	}
	r.inSync(t)

	r.b.families[rules.IPv4].Generation = nil
	saves = r.v4.Saves
	r.sync(t)
	r.sync(t)
	if r.v4.Saves != saves+2 {
		t.Errorf("without a generation, two passes listed %d time(s)", r.v4.Saves-saves)
	}
}

// quietLog is a ChangeLog that answers as told.
type quietLog struct {
	quiet bool
	asked int
}

func (q *quietLog) Quiet(from, to uint32) bool { q.asked++; return q.quiet }

// TestQuietGenerationsListNothing: where the notifications say a new
// generation touched nothing the listing reads (Docker's connect), the
// pass keeps its listing; where they say otherwise, or the listing is
// older than listingAge, it lists, and sees and repairs drift.
func TestQuietGenerationsListNothing(t *testing.T) {
	r, fs := setRig(t)
	log := &quietLog{} // dockmoat's own restores are in the chains it reads
	r.b.families[rules.IPv4].Changes = log
	r.sync(t)
	r.sync(t)
	saves := r.v4.Saves
	log.quiet = true
	r.v4.Append("DOCKER", "-d 172.17.0.9/32 -p tcp -m tcp --dport 80 -j ACCEPT") // Docker's, at the connect
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.9")}})
	if res := r.sync(t); !res.Applied || !fs.Has("DOCKMOAT-OPEN-V4", "172.17.0.9,tcp:80") {
		t.Fatalf("the change was not applied: %+v", res)
	}
	if r.v4.Saves != saves || log.asked == 0 {
		t.Errorf("a quiet generation: %d listing(s), the log asked %d time(s)", r.v4.Saves-saves, log.asked)
	}
	log.quiet = false
	r.v4.Append(iptplan.ChainIngress, "-j ACCEPT") // someone else's rule in ours
	if res := r.sync(t); r.v4.Saves != saves+1 || len(res.Drift) == 0 {
		t.Errorf("a relevant generation: %d listing(s), drift %v", r.v4.Saves-saves, res.Drift)
	}
	r.inSync(t)
	log.quiet = true
	l := r.b.listed[rules.IPv4]
	l.at = l.at.Add(-listingAge)
	r.b.listed[rules.IPv4] = l
	r.v4.Append("DOCKER", "-j RETURN")
	saves = r.v4.Saves
	if r.sync(t); r.v4.Saves != saves+1 {
		t.Errorf("a listing older than %v was kept: %d listing(s)", listingAge, r.v4.Saves-saves)
	}
}
