package policy

import (
	"cmp"
	"reflect"
	"runtime"
	"slices"
	"sync"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/setelem"
)

// Incremental computes Build's result with sets (Options.Sets) for one
// family, keeping its work between calls: a container equal to last time
// keeps its decisions and its share of the sets, and only the targets and
// published ports that a changed container touches are grouped again. A
// call where one of 10,000 containers changed therefore costs one
// decision and a few map updates, plus copying the result out.
//
// The result is Build's, element for element (TestIncrementalMatchesBuild
// replays random change sequences against Build); only the order of set
// elements may differ, and nothing reads that order. The snapshot is still
// read in full at every call: this is a cache of the recomputation, not a
// stream of events. Not safe for concurrent use.
type Incremental struct {
	fam rules.Family
	cfg config.Config
	ok  bool // cfg is set and the state below follows it

	ents  map[string]*incEnt // by container ID
	order []*incEnt          // sorted by name, ID
	gen   uint64

	groups map[target]*incGroup
	// byHost lists, per published port, the targets its bindings lead to
	// (with a count of bindings), and leads the container ports behind it.
	byHost map[hostPort]counts[target]
	leads  map[hostPort]counts[behind]

	// Outputs, kept up to date per group. The elements of each set are a
	// refcounted list (swap-delete) so the result copies a slice.
	open, from *elemList
	ports      map[hostPort]int
	portList   []hostPort // the keys of ports, sorted
	// Entries and ports added during a call, merged into order and
	// portList at its end (one by one when few, by a sort when many, so
	// a first call with 10,000 containers is not quadratic).
	newEnts  []*incEnt
	newPorts []hostPort
	linear   map[*incGroup]bool
	// input and proxied are the last InputPath and Proxied (proxy.go),
	// remade when some container's decisions or address families changed
	// (inputDirty) or ProxyAll did.
	input      InputPath
	proxied    []rules.Decision
	proxyAll   bool
	inputDirty bool
}

// incEnt is one container's share of the state. Its decisions, problems
// and allows never change once made (a changed container gets a new
// entry): results hand them out.
type incEnt struct {
	c         rules.Container
	decisions []rules.Decision // of the family
	problems  []rules.Problem
	allows    []Allow
	links     []incLink
	gen       uint64
}

// incLink is one binding of a container reaching one of its addresses.
type incLink struct {
	k      target
	hp     hostPort
	srcs   []string
	who    behind
	allows []Allow
}

// incRef names one link of one container.
type incRef struct {
	e  *incEnt
	li int
}

type incGroup struct {
	k     target
	links []incRef // the links of containers into this target
	// What the group puts into the outputs now.
	outElems []setelem.Elem
	outPorts []hostPort
}

// NewIncremental returns an empty state for one family.
func NewIncremental(fam rules.Family) *Incremental {
	return &Incremental{fam: fam}
}

// reset empties the state, sized for n containers.
func (inc *Incremental) reset(cfg config.Config, n int) {
	inc.cfg, inc.ok = cfg, true // inc.gen goes on counting
	inc.ents, inc.order = make(map[string]*incEnt, n), nil
	inc.groups = make(map[target]*incGroup, n)
	inc.byHost, inc.leads = make(map[hostPort]counts[target], n), make(map[hostPort]counts[behind], n)
	inc.open, inc.from = newElemList(n), newElemList(0)
	inc.ports, inc.portList = make(map[hostPort]int, n), nil
	inc.newEnts, inc.newPorts = nil, nil
	inc.linear = map[*incGroup]bool{}
	inc.input, inc.inputDirty = InputPath{}, true
}

// Build returns Build(cfg, snap, fam, opt) with opt.Sets set.
func (inc *Incremental) Build(cfg config.Config, snap rules.Snapshot, opt Options) Result {
	opt.Sets = true
	if !inc.ok || !reflect.DeepEqual(inc.cfg, cfg) {
		inc.reset(cfg, len(snap.Containers))
	}
	inc.gen++
	// From an empty state every target is new: regroup them all at the
	// end instead of tracking each one.
	all := len(inc.ents) == 0
	dirty := map[target]bool{}
	var shares []*incEnt
	if all {
		dirty = nil
		shares = inc.shareAll(cfg, snap.Containers)
	}
	for i := range snap.Containers {
		c := &snap.Containers[i]
		var was []rules.Decision
		var wasFam bool
		e, had := inc.ents[c.ID]
		if had {
			if e.gen == inc.gen {
				// Two containers with one ID (never from Docker): the state
				// is keyed by ID, so build from scratch and start over.
				inc.ok = false
				return Build(cfg, snap, inc.fam, opt)
			}
			if sameContainer(&e.c, c) {
				e.gen = inc.gen
				continue
			}
			was, wasFam = e.decisions, rules.HasFamilyAddr(&e.c, inc.fam)
			inc.remove(e, dirty)
		}
		var ne *incEnt
		if shares != nil {
			ne = shares[i]
		} else {
			ne = inc.share(cfg, c)
		}
		// The input path and the proxied list change only with the
		// decisions and with the families a container has addresses in (a
		// container that moved to a new address leaves them as they are).
		if !had || !reflect.DeepEqual(was, ne.decisions) || wasFam != rules.HasFamilyAddr(c, inc.fam) {
			inc.inputDirty = true
		}
		inc.insert(ne, dirty)
	}
	// Every entry seen this time has the current generation; when they
	// are all of the snapshot, none is left to remove.
	if len(inc.ents) != len(snap.Containers) {
		for _, e := range inc.ents {
			if e.gen != inc.gen {
				inc.remove(e, dirty)
				inc.inputDirty = true
			}
		}
	}
	if all {
		for k := range inc.groups {
			inc.regroup(k)
		}
	}
	for k := range dirty {
		inc.regroup(k)
	}
	inc.order, inc.newEnts = merge(inc.order, inc.newEnts, compareEnts)
	inc.portList, inc.newPorts = merge(inc.portList, inc.newPorts, compareHostPorts)
	return inc.result(cfg, snap, opt)
}

// shareAll decides every container of a snapshot, on all cores: from an
// empty state (start, new configuration) that is the bulk of the work.
func (inc *Incremental) shareAll(cfg config.Config, cs []rules.Container) []*incEnt {
	out := make([]*incEnt, len(cs))
	workers := runtime.GOMAXPROCS(0)
	if len(cs) < 512 || workers < 2 {
		for i := range cs {
			out[i] = inc.share(cfg, &cs[i])
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(cs) + workers - 1) / workers
	for lo := 0; lo < len(cs); lo += chunk {
		hi := min(lo+chunk, len(cs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				out[i] = inc.share(cfg, &cs[i])
			}
		})
	}
	wg.Wait()
	return out
}

// share decides one container and lists its links; it only reads inc.
func (inc *Incremental) share(cfg config.Config, c *rules.Container) *incEnt {
	e := &incEnt{c: cloneContainer(*c), gen: inc.gen}
	decisions, problems := rules.Decide(cfg, *c)
	e.problems = problems
	addrs := rules.FamilyAddrs(*c, inc.fam)
	for _, d := range decisions {
		if !rules.InFamily(d.Binding, inc.fam) {
			continue
		}
		e.decisions = append(e.decisions, d)
		srcs := rules.SourcesOf(d, inc.fam)
		allows := expand(c.Name, d, addrs, srcs)
		e.allows = append(e.allows, allows...)
		for _, a := range addrs {
			l := incLink{k: target{a, d.Binding.Proto, d.Binding.ContainerPort}, hp: hostPort{d.Binding.Proto, d.Binding.HostPort},
				srcs: srcs, who: behind{container: d.Container, port: d.Binding.ContainerPort}}
			for _, al := range allows {
				if al.Addr == a {
					l.allows = append(l.allows, al)
				}
			}
			e.links = append(e.links, l)
		}
	}
	return e
}

// insert adds a container's links; every target whose grouping may change
// (its own, and the others behind the same published ports) goes to dirty.
func (inc *Incremental) insert(e *incEnt, dirty map[target]bool) {
	inc.ents[e.c.ID] = e
	inc.newEnts = append(inc.newEnts, e)
	for li, l := range e.links {
		g := inc.groups[l.k]
		if g == nil {
			g = &incGroup{k: l.k}
			inc.groups[l.k] = g
		}
		g.links = append(g.links, incRef{e, li})
		bump(inc.byHost, l.hp, l.k, 1)
		bump(inc.leads, l.hp, l.who, 1)
		inc.touch(l, dirty)
	}
}

func (inc *Incremental) remove(e *incEnt, dirty map[target]bool) {
	delete(inc.ents, e.c.ID)
	if i, found := slices.BinarySearchFunc(inc.order, e, compareEnts); found && inc.order[i] == e {
		inc.order = slices.Delete(inc.order, i, i+1)
	} else {
		inc.newEnts = slices.DeleteFunc(inc.newEnts, func(x *incEnt) bool { return x == e })
	}
	for _, l := range e.links {
		if g := inc.groups[l.k]; g != nil {
			g.links = slices.DeleteFunc(g.links, func(r incRef) bool { return r.e == e })
		}
		bump(inc.byHost, l.hp, l.k, -1)
		bump(inc.leads, l.hp, l.who, -1)
		inc.touch(l, dirty)
	}
}

func (inc *Incremental) touch(l incLink, dirty map[target]bool) {
	if dirty == nil {
		return // regrouping everything anyway
	}
	dirty[l.k] = true
	for _, x := range inc.byHost[l.hp] {
		dirty[x.k] = true
	}
}

// counts is a small multiset: a published port leads to one or two
// targets, so a slice beats a map per port.
type counts[K comparable] []count[K]

type count[K comparable] struct {
	k K
	n int
}

func bump[K comparable](m map[hostPort]counts[K], hp hostPort, k K, by int) {
	c := m[hp]
	i := slices.IndexFunc(c, func(x count[K]) bool { return x.k == k })
	if i < 0 {
		c = append(c, count[K]{k: k})
		i = len(c) - 1
	}
	if c[i].n += by; c[i].n <= 0 {
		c = slices.Delete(c, i, i+1)
	}
	if len(c) == 0 {
		delete(m, hp)
		return
	}
	m[hp] = c
}

// regroup recomputes what one target puts into the sets, the published
// ports and the linear rules, as grouper.split decides it.
func (inc *Incremental) regroup(k target) {
	g := inc.groups[k]
	if g == nil {
		return
	}
	// Take back what the group put in.
	for _, e := range g.outElems {
		inc.list(e).add(e, -1)
	}
	for _, hp := range g.outPorts {
		if inc.ports[hp]--; inc.ports[hp] <= 0 {
			delete(inc.ports, hp)
			if i, found := slices.BinarySearchFunc(inc.portList, hp, compareHostPorts); found {
				inc.portList = slices.Delete(inc.portList, i, i+1)
			} else {
				inc.newPorts = slices.DeleteFunc(inc.newPorts, func(x hostPort) bool { return x == hp })
			}
		}
	}
	g.outElems, g.outPorts = nil, nil
	delete(inc.linear, g)
	if len(g.links) == 0 {
		delete(inc.groups, k)
		return
	}
	var srcs []string
	first, mixed, several := true, false, false
	var hosts []hostPort
	for _, ref := range g.links {
		l := ref.e.links[ref.li]
		if first {
			srcs, first = l.srcs, false
		} else if !slices.Equal(srcs, l.srcs) {
			mixed = true
		}
		hosts = append(hosts, l.hp)
		if len(inc.leads[l.hp]) > 1 {
			several = true
		}
	}
	if len(srcs) == 0 && !mixed {
		return
	}
	if mixed || several || hasIface(srcs) {
		inc.linear[g] = true
		return
	}
	for _, s := range srcs {
		e, ok := elemOf(k, s)
		if !ok {
			continue
		}
		g.outElems = append(g.outElems, e)
		inc.list(e).add(e, 1)
	}
	for _, hp := range hosts {
		if inc.ports[hp]++; inc.ports[hp] == 1 {
			inc.newPorts = append(inc.newPorts, hp)
		}
	}
	g.outPorts = hosts
}

func (inc *Incremental) list(e setelem.Elem) *elemList {
	if e.Src.IsValid() {
		return inc.from
	}
	return inc.open
}

// elemList is a refcounted set of elements kept as a slice, recording
// which elements came or went since the last delta.
type elemList struct {
	elems   []setelem.Elem
	counts  []int                 // refcount of each element of elems
	at      map[setelem.Elem]int  // index in elems
	was     map[setelem.Elem]bool // presence before the first change since the last delta
	lastGen uint64
	fresh   bool // no previous result to be a delta of
}

// The generation counts Build calls and never restarts, so a Since of a
// reset state cannot match a caller's record of an older one.

func newElemList(n int) *elemList {
	return &elemList{at: make(map[setelem.Elem]int, n), was: map[setelem.Elem]bool{}, fresh: true}
}

// has reports whether e is in the list.
func (l *elemList) has(e setelem.Elem) bool {
	_, ok := l.at[e]
	return ok
}

func (l *elemList) add(e setelem.Elem, by int) {
	i, before := l.at[e]
	if !l.fresh {
		if _, seen := l.was[e]; !seen {
			l.was[e] = before // a fresh list has no delta to record
		}
	}
	switch {
	case !before && by > 0:
		l.at[e] = len(l.elems)
		l.elems = append(l.elems, e)
		l.counts = append(l.counts, by)
	case before:
		if l.counts[i] += by; l.counts[i] > 0 {
			return
		}
		last := len(l.elems) - 1
		l.elems[i], l.counts[i] = l.elems[last], l.counts[last]
		l.at[l.elems[i]] = i
		l.elems, l.counts = l.elems[:last], l.counts[:last]
		delete(l.at, e)
	}
}

// delta returns what changed since the previous call and starts anew.
func (l *elemList) delta(gen uint64) *SetDelta {
	d := &SetDelta{Gen: gen}
	if !l.fresh {
		d.Since = l.lastGen
		for e, was := range l.was {
			switch now := l.has(e); {
			case now && !was:
				d.Added = append(d.Added, e)
			case was && !now:
				d.Removed = append(d.Removed, e)
			}
		}
	}
	clear(l.was)
	l.fresh, l.lastGen = false, gen
	return d
}

func compareEnts(a, b *incEnt) int { return rules.CompareContainers(&a.c, &b.c) }

// merge adds the new items to a sorted list: by binary insertion when they
// are few, else by appending and sorting once.
func merge[T any](list, add []T, cmp func(a, b T) int) ([]T, []T) {
	if len(add) > 32 {
		list = append(list, add...)
		slices.SortFunc(list, cmp)
		return list, add[:0]
	}
	for _, x := range add {
		i, _ := slices.BinarySearchFunc(list, x, cmp)
		list = slices.Insert(list, i, x)
	}
	return list, add[:0]
}

func compareHostPorts(a, b hostPort) int {
	return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
}

// result copies the state out as Build's Result.
func (inc *Incremental) result(cfg config.Config, snap rules.Snapshot, opt Options) Result {
	res := Result{Family: inc.fam}
	bridges(snap, &res)
	res.Problems = append(res.Problems, rules.SnapshotProblems(snap)...)
	for _, e := range inc.order {
		res.Problems = append(res.Problems, e.problems...)
		res.Limits = appendLimits(res.Limits, e.decisions)
	}
	sortLimits(res.Limits)
	res.lists = &lists{ents: slices.Clone(inc.order)}
	open := Set{Kind: SetOpen, Family: inc.fam, Elems: slices.Clone(inc.open.elems), Delta: inc.open.delta(inc.gen)}
	from := Set{Kind: SetFrom, Family: inc.fam, Elems: slices.Clone(inc.from.elems), Delta: inc.from.delta(inc.gen)}
	res.Sets = []Set{open, from}
	for g := range inc.linear {
		for _, ref := range g.links {
			res.Linear = append(res.Linear, ref.e.links[ref.li].allows...)
		}
	}
	slices.SortFunc(res.Linear, compareAllows)
	res.Ports = rangesOf(inc.portList) // kept sorted and distinct
	if inc.inputDirty || inc.proxyAll != opt.ProxyAll {
		chunks := make([][]rules.Decision, len(inc.order))
		var px []rules.Decision
		for i, e := range inc.order {
			chunks[i] = e.decisions
			px = proxiedAppend(px, &e.c, e.decisions, inc.fam, opt.ProxyAll)
		}
		sortProxied(px)
		inc.input, inc.proxied, inc.proxyAll, inc.inputDirty = inputPath(chunks...), px, opt.ProxyAll, false
	}
	// Read-only: shared by the results until they change.
	res.Input, res.Proxied = inc.input, inc.proxied
	addEgress(&res, cfg, snap)
	return res
}
