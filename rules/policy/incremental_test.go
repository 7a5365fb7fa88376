package policy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/setelem"
)

// randomContainer draws from small pools, so that addresses, published
// ports and container ports collide between containers: the cases where
// a target is published twice with different policies, a published port
// leads to two containers, or a new container takes an old address.
func randomContainer(r *rand.Rand, id string) rules.Container {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	c := rules.Container{ID: id, Name: pick("a", "b", "c", "d", "e", "f"), Labels: map[string]string{}}
	if v := pick("*", "80", "81,82", "8080/udp", "80-82", "nope", ""); v != "" {
		c.Labels[rules.LabelAllow] = v
	}
	if v := pick("", "", "198.51.100.0/24", "203.0.113.7, 2001:db8::/32", "0.0.0.0/0", "iface:wg0", "iface:tun*, 198.51.100.0/24"); v != "" {
		c.Labels[rules.LabelFrom] = v
	}
	if r.IntN(4) == 0 {
		c.Labels[rules.LabelAllow+".80"] = "192.0.2.0/24"
	}
	if r.IntN(3) == 0 {
		c.Labels["dockmoat.limit."+pick("80", "81/udp", "80-82")] = pick("10/minute", "5/second,burst=2", "bad")
	}
	for range 1 + r.IntN(3) {
		var host netip.Addr
		if h := pick("", "0.0.0.0", "::", "127.0.0.1", "192.0.2.1"); h != "" {
			host = netip.MustParseAddr(h)
		}
		c.Ports = append(c.Ports, rules.PortBinding{HostIP: host, HostPort: uint16(80 + r.IntN(3)), ContainerPort: uint16([]int{80, 443}[r.IntN(2)]), Proto: pick("tcp", "udp")})
	}
	for range r.IntN(3) {
		ep := rules.Endpoint{Network: pick("bridge", "net2")}
		if r.IntN(4) > 0 {
			ep.IPv4 = netip.AddrFrom4([4]byte{172, 17, 0, byte(2 + r.IntN(4))})
		}
		if r.IntN(2) == 0 {
			ep.IPv6 = netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(2 + r.IntN(2))})
		}
		c.Endpoints = append(c.Endpoints, ep)
	}
	return c
}

// normalized strips what may legitimately differ: the order of set
// elements, and how the decisions and allows are held.
func normalized(res Result) Result {
	l := &lists{decisions: res.Decisions(), allows: res.Allows()}
	if len(l.decisions) == 0 {
		l.decisions = nil
	}
	if len(l.allows) == 0 {
		l.allows = nil
	}
	res.lists = l
	for i, s := range res.Sets {
		s.Delta = nil
		s.elems, s.view = s.Sorted(), nil
		if len(s.elems) == 0 {
			s.elems = nil
		}
		res.Sets[i] = s
	}
	return res
}

// deltaGen is the generation a set's result was made at.
func deltaGen(s Set) uint64 {
	if s.Delta != nil {
		return s.Delta.Gen
	}
	return 0
}

func TestIncrementalMatchesBuild(t *testing.T) {
	cfgs := []config.Config{config.Default(), {UFW: config.UFWAuto, LogBlocked: true,
		TrustedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Allow: []config.AllowRule{{Container: "b", Ports: []config.PortSpec{{All: true}}, From: config.Sources{Any: true}},
			{Container: "c", Ports: []config.PortSpec{{From: 80, To: 81}}, From: config.Sources{Any: true}, Limit: config.RateLimit{Rate: 3, Per: time.Hour, Burst: 1}}}}}
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		incs := map[rules.Family]*Incremental{rules.IPv4: NewIncremental(rules.IPv4), rules.IPv6: NewIncremental(rules.IPv6)}
		snap := rules.Snapshot{Bridges: []string{"docker0"}}
		cfg := cfgs[0]
		next := 0
		// Half the seeds play a source that gives revisions (a new one
		// with each new content), as dockerwatch does.
		revs, rev := seed%2 == 1, uint64(0)
		fresh := func(id string) rules.Container {
			c := randomContainer(r, id)
			if revs {
				rev++
				c.Rev = rev
			}
			return c
		}
		// The previous elements per set, to check each Delta against.
		prev := map[string]map[setelem.Elem]bool{}
		prevGen := map[string]uint64{}
		for step := range 150 {
			cfgChanged := false
			switch k := r.IntN(10); {
			case k < 3 || len(snap.Containers) == 0:
				next++
				snap.Containers = append(snap.Containers, fresh(fmt.Sprint(next)))
			case k < 5:
				i := r.IntN(len(snap.Containers))
				snap.Containers = slices.Delete(snap.Containers, i, i+1)
			case k < 9:
				i := r.IntN(len(snap.Containers))
				// Same ID, new content: a recreated or relabeled container.
				snap.Containers[i] = fresh(snap.Containers[i].ID)
			default:
				old := cfg
				cfg = cfgs[r.IntN(len(cfgs))]
				cfgChanged = !reflect.DeepEqual(old, cfg)
			}
			if r.IntN(4) == 0 { // else in place: Build's positional fast path
				r.Shuffle(len(snap.Containers), func(i, j int) { snap.Containers[i], snap.Containers[j] = snap.Containers[j], snap.Containers[i] })
			}
			for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
				opt := Options{Sets: true}
				want := normalized(Build(cfg, snap, fam, opt))
				raw := incs[fam].Build(cfg, snap, opt)
				for _, set := range raw.Sets {
					key := fmt.Sprint(set.Kind, set.Family)
					now := map[setelem.Elem]bool{}
					for _, e := range set.Elems() {
						now[e] = true
					}
					if d := set.Delta; d != nil && d.Since != 0 {
						if d.Since != prevGen[key] {
							t.Fatalf("seed %d step %d %s: delta since %d, previous result was %d", seed, step, key, d.Since, prevGen[key])
						}
						applied := maps.Clone(prev[key])
						for _, e := range d.Removed {
							delete(applied, e)
						}
						for _, e := range d.Added {
							applied[e] = true
						}
						if !maps.Equal(applied, now) {
							t.Fatalf("seed %d step %d %s: previous + delta != elements: %v + %+v != %v", seed, step, key, prev[key], d, now)
						}
					} else if step > 0 && !cfgChanged {
						t.Fatalf("seed %d step %d %s: no delta", seed, step, set.Kind)
					}
					prev[key], prevGen[key] = now, deltaGen(set)
				}
				got := normalized(raw)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d step %d %s: incremental differs from Build\n got %+v\nwant %+v\nsnapshot %+v", seed, step, fam, got, want, snap.Containers)
				}
			}
		}
	}
}

// Duplicate IDs (which Docker never produces) fall back to Build.
func TestIncrementalDuplicateID(t *testing.T) {
	inc := NewIncremental(rules.IPv4)
	a := ctr("a", map[string]string{rules.LabelAllow: "*"}, "172.17.0.2", pb(80, 80, "tcp"))
	b := ctr("b", map[string]string{rules.LabelAllow: "*"}, "172.17.0.3", pb(81, 80, "tcp"))
	b.ID = a.ID
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{a, b}}
	opt := Options{Sets: true}
	for range 2 {
		if got, want := normalized(inc.Build(config.Default(), snap, opt)), normalized(Build(config.Default(), snap, rules.IPv4, opt)); !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	}
	snap.Containers = snap.Containers[:1]
	if got, want := normalized(inc.Build(config.Default(), snap, opt)), normalized(Build(config.Default(), snap, rules.IPv4, opt)); !reflect.DeepEqual(got, want) {
		t.Fatalf("after: got %+v\nwant %+v", got, want)
	}
	// A duplicate after the state knew the containers' positions: the
	// copy found by ID comes before, or after, the one in its old place.
	a.Rev, b.Rev = 1, 2
	b.ID = "b"
	for _, seq := range [][][]rules.Container{{{b, a}, {a, a}}, {{a, b}, {a, a}}, {{a, b}, {b, a, a}}, {{a, b}, {a, b, b}}} {
		inc := NewIncremental(rules.IPv4)
		for step, cs := range seq {
			snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: cs}
			if got, want := normalized(inc.Build(config.Default(), snap, opt)), normalized(Build(config.Default(), snap, rules.IPv4, opt)); !reflect.DeepEqual(got, want) {
				t.Fatalf("%v step %d: got %+v\nwant %+v", seq, step, got, want)
			}
		}
		// And back to no duplicate: nothing of the copies stays.
		snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{b}}
		if got, want := normalized(inc.Build(config.Default(), snap, opt)), normalized(Build(config.Default(), snap, rules.IPv4, opt)); !reflect.DeepEqual(got, want) {
			t.Fatalf("%v after: got %+v\nwant %+v", seq, got, want)
		}
	}
}

// From an empty state the containers are decided on all cores; the result
// is still Build's (run with -race to check the sharing too).
func TestIncrementalLargeFirstCall(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 42))
	snap := rules.Snapshot{Bridges: []string{"docker0"}}
	for i := range 1500 {
		snap.Containers = append(snap.Containers, randomContainer(r, fmt.Sprint(i)))
	}
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		opt := Options{Sets: true}
		want := normalized(Build(config.Default(), snap, fam, opt))
		got := normalized(NewIncremental(fam).Build(config.Default(), snap, opt))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: incremental differs from Build", fam)
		}
	}
}

// The chunked list against a map, across many chunks, with views taken
// along the way: a view keeps the content it had when it was taken.
func TestElemListChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	l := newElemList(0)
	model := map[setelem.Elem]int{}
	type kept struct {
		v    *elemView
		want map[setelem.Elem]bool
	}
	var views []kept
	elem := func() setelem.Elem {
		return setelem.Elem{Addr: netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(8)), byte(r.IntN(256))}), Proto: "tcp", Port: 80}
	}
	for step := range 20000 {
		e := elem()
		if r.IntN(3) > 0 || model[e] == 0 { // grow to a few chunks, then churn
			l.add(e, 1)
			model[e]++
		} else {
			l.add(e, -1)
			if model[e]--; model[e] == 0 {
				delete(model, e)
			}
		}
		if step%97 == 0 {
			want := map[setelem.Elem]bool{}
			for e := range model {
				want[e] = true
			}
			views = append(views, kept{l.view(), want})
		}
	}
	if l.n != len(model) || len(l.at) != len(model) {
		t.Fatalf("list holds %d (%d indexed), model %d", l.n, len(l.at), len(model))
	}
	for i := range l.n {
		if e := l.get(i); l.at[e] != i || l.counts[i] != model[e] {
			t.Fatalf("position %d: %v indexed at %d, count %d, want %d", i, e, l.at[e], l.counts[i], model[e])
		}
	}
	if l.n < 3*elemChunkSize {
		t.Fatalf("only %d elements: the test needs several chunks", l.n)
	}
	for i, k := range views {
		got := map[setelem.Elem]bool{}
		for _, e := range k.v.flat() {
			got[e] = true
		}
		if len(k.v.flat()) != len(got) || !maps.Equal(got, k.want) {
			t.Fatalf("view %d changed after it was taken: %d elements, want %d", i, len(got), len(k.want))
		}
	}
}
