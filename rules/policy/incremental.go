package policy

import (
	"cmp"
	"maps"
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
	// prev are the entries by their position in the last snapshot, with
	// their ID and revision: a container where it was last time, at the
	// same revision, is known without hashing its ID or reading its entry.
	prev []prevRec

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
	// portWas records, for each port whose count changed during a call,
	// whether it was in portList before: portList changes at the end of
	// the call, by what came and went (a moved container's port leaves
	// and comes back, and the list of 10,000 need not move).
	portWas map[hostPort]bool
	bulk    bool // a call from an empty state: portList is made whole
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
	// Parts of the result kept while nothing they depend on changed, so
	// that a call where one container moved copies no list of N: the
	// containers' problems and limits (perDirty: an entry with some came
	// or went), the port ranges (portsDirty), order's copy in chunks
	// (orderOut, shared by results; a chunk that changes is copied anew).
	// egress are this call's containers with egress labels, in snapshot
	// order.
	problems   []rules.Problem
	limits     []rules.Limit
	perDirty   bool
	ranges     []PortRange
	portsDirty bool
	orderOut   [][]*incEnt
	egress     []rules.Container
}

type prevRec struct {
	id     string
	rev    uint64
	e      *incEnt
	egress bool // e.egress, without reading e
}

// incEnt is one container's share of the state. Its decisions, problems
// and allows never change once made (a changed container gets a new
// entry): results hand them out.
type incEnt struct {
	pos       int // its position in the last snapshot (Incremental.prev)
	c         rules.Container
	decisions []rules.Decision // of the family
	problems  []rules.Problem
	limits    []rules.Limit
	allows    []Allow
	links     []incLink
	egress    bool // has egress labels
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
	inc.ports, inc.portList, inc.portWas = make(map[hostPort]int, n), nil, map[hostPort]bool{}
	inc.newEnts, inc.newPorts = nil, nil
	inc.linear = map[*incGroup]bool{}
	inc.input, inc.inputDirty = InputPath{}, true
	inc.prev, inc.orderOut = nil, nil
	inc.perDirty, inc.portsDirty = true, true
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
	known := len(inc.prev)
	inc.prev = slices.Grow(inc.prev[:0], len(snap.Containers))[:len(snap.Containers)]
	inc.egress = inc.egress[:0]
	for i := range snap.Containers {
		c := &snap.Containers[i]
		e, had, same := inc.at(i, known, c)
		switch {
		case same:
			// Where it was, at the same revision: its entry is not even
			// read (10,000 cache misses are most of such a call).
			if inc.prev[i].egress {
				inc.egress = append(inc.egress, *c)
			}
			continue // prev[i] and e.pos stay as they are
		case had && inc.dup(e, i, snap.Containers):
			// Two containers with one ID (never from Docker): the state
			// is keyed by ID, so build from scratch and start over.
			inc.ok = false
			return Build(cfg, snap, inc.fam, opt)
		case had && sameContainer(&e.c, c):
			inc.seen(i, e, c)
			continue
		case !had:
			e = nil
		}
		ne := inc.shared(cfg, shares, i, c)
		inc.replace(i, c, e, ne, dirty)
	}
	inc.removeUnseen(len(snap.Containers), dirty)
	if all {
		inc.bulk = true // from empty: no port list to keep in step
		for k := range inc.groups {
			inc.regroup(k)
		}
	}
	for k := range dirty {
		inc.regroup(k)
	}
	inc.order, inc.newEnts = merge(inc.order, inc.newEnts, compareEnts)
	inc.settlePorts()
	return inc.result(cfg, snap, opt)
}

// shared is the entry of c, decided by shareAll already or now.
func (inc *Incremental) shared(cfg config.Config, shares []*incEnt, i int, c *rules.Container) *incEnt {
	if shares != nil {
		return shares[i]
	}
	return inc.share(cfg, c)
}

// replace puts ne, the entry of c at position i of the snapshot, where
// e was (nil: c is new), and notes what the change makes dirty.
func (inc *Incremental) replace(i int, c *rules.Container, e, ne *incEnt, dirty map[target]bool) {
	// The input path and the proxied list change only with the decisions
	// and with the families a container has addresses in (a container
	// that moved to a new address leaves them as they are).
	if e == nil || !reflect.DeepEqual(e.decisions, ne.decisions) || rules.HasFamilyAddr(&e.c, inc.fam) != rules.HasFamilyAddr(c, inc.fam) {
		inc.inputDirty = true
	}
	placed := false
	if e != nil {
		placed = inc.remove(e, ne, dirty)
	}
	inc.insert(ne, placed, dirty)
	inc.seen(i, ne, c)
}

// removeUnseen removes the entries this snapshot (of n containers) does
// not have: prev holds its entries, each at its e.pos, so when they are
// all of the entries there is none to remove.
func (inc *Incremental) removeUnseen(n int, dirty map[target]bool) {
	if len(inc.ents) == n {
		return
	}
	for _, e := range inc.ents {
		if e.pos >= len(inc.prev) || inc.prev[e.pos].e != e {
			inc.remove(e, nil, dirty)
			inc.inputDirty = true
		}
	}
}

// at finds the entry of the container at position i of the snapshot: at
// the same position as last time (the first known of prev were), or by
// its ID. same: it is there with the same revision, so unchanged.
func (inc *Incremental) at(i, known int, c *rules.Container) (e *incEnt, ok, same bool) {
	if i < known {
		if r := inc.prev[i]; r.e != nil && r.id == c.ID {
			return r.e, true, r.rev != 0 && r.rev == c.Rev
		}
	}
	e, ok = inc.ents[c.ID]
	return e, ok, false
}

// dup reports whether e, found by ID for position i, is also another
// position's: one before i took it already, or the one where it was last
// time (e.pos) still holds its ID and will.
func (inc *Incremental) dup(e *incEnt, i int, cs []rules.Container) bool {
	j := e.pos
	return (j < i && inc.prev[j].e == e) || (j > i && j < len(cs) && cs[j].ID == e.c.ID)
}

// seen records e as the entry of c, at position i of this snapshot.
func (inc *Incremental) seen(i int, e *incEnt, c *rules.Container) {
	e.pos = i
	inc.prev[i] = prevRec{id: c.ID, rev: c.Rev, e: e, egress: e.egress}
	if e.egress {
		inc.egress = append(inc.egress, *c)
	}
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
	e := &incEnt{c: cloneContainer(*c), egress: rules.HasEgressLabels(c.Labels)}
	decisions, problems := rules.Decide(cfg, *c)
	e.problems = problems
	addrs := rules.FamilyAddrs(*c, inc.fam)
	for _, d := range decisions {
		if !rules.InFamily(d.Binding, inc.fam) {
			continue
		}
		e.decisions = append(e.decisions, d)
		e.limits = appendLimits(e.limits, []rules.Decision{d})
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
// placed: remove already put e in order, where its predecessor was.
func (inc *Incremental) insert(e *incEnt, placed bool, dirty map[target]bool) {
	inc.ents[e.c.ID] = e
	if !placed {
		inc.newEnts = append(inc.newEnts, e)
	}
	inc.changedEnt(e)
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

// remove takes e's links out. A successor that sorts where e does (the
// same container, changed; a rename does not) takes e's place in order,
// which saves moving 10,000 pointers twice; remove reports whether it did.
func (inc *Incremental) remove(e, successor *incEnt, dirty map[target]bool) (placed bool) {
	delete(inc.ents, e.c.ID)
	inc.changedEnt(e)
	if i, found := slices.BinarySearchFunc(inc.order, e, compareEnts); found && inc.order[i] == e {
		if successor != nil && compareEnts(e, successor) == 0 {
			inc.order[i], placed = successor, true
		} else {
			inc.order = slices.Delete(inc.order, i, i+1)
		}
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
	return placed
}

// changedEnt notes what a result must remake when e comes or goes.
func (inc *Incremental) changedEnt(e *incEnt) {
	if len(e.problems) > 0 || len(e.limits) > 0 {
		inc.perDirty = true
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
		inc.countPort(hp, -1)
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
		inc.countPort(hp, 1)
	}
	g.outPorts = hosts
}

// countPort counts a group's use of a published port; portList follows
// at the end of the call (settlePorts).
func (inc *Incremental) countPort(hp hostPort, by int) {
	if _, seen := inc.portWas[hp]; !seen && !inc.bulk {
		inc.portWas[hp] = inc.ports[hp] > 0
	}
	if inc.ports[hp] += by; inc.ports[hp] <= 0 {
		delete(inc.ports, hp)
	}
}

// settlePorts brings portList in line with the counts: the ports that
// came or went since the last call, and only those, move in or out.
func (inc *Incremental) settlePorts() {
	if inc.bulk {
		inc.portList = slices.SortedFunc(maps.Keys(inc.ports), compareHostPorts)
		inc.bulk, inc.portsDirty = false, true
	}
	for hp, was := range inc.portWas {
		switch now := inc.ports[hp] > 0; {
		case was && !now:
			if i, found := slices.BinarySearchFunc(inc.portList, hp, compareHostPorts); found {
				inc.portList = slices.Delete(inc.portList, i, i+1)
			}
			inc.portsDirty = true
		case now && !was:
			inc.newPorts = append(inc.newPorts, hp)
			inc.portsDirty = true
		}
	}
	clear(inc.portWas)
	inc.portList, inc.newPorts = merge(inc.portList, inc.newPorts, compareHostPorts)
}

func (inc *Incremental) list(e setelem.Elem) *elemList {
	if e.Src.IsValid() {
		return inc.from
	}
	return inc.open
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

// orderChunk is how many entries a chunk of orderOut holds.
const orderChunk = 256

// entryChunks brings chunks in line with order: a chunk whose entries
// differ is replaced by a new one (results hold the old), the others are
// kept. Comparing 10,000 pointers in a row costs a few microseconds;
// copying them, with the garbage it leaves, costs far more.
func entryChunks(chunks [][]*incEnt, order []*incEnt) [][]*incEnt {
	n := (len(order) + orderChunk - 1) / orderChunk
	chunks = slices.Grow(chunks, n)[:n]
	for i := range chunks {
		want := order[i*orderChunk : min(len(order), (i+1)*orderChunk)]
		if !slices.Equal(chunks[i], want) {
			chunks[i] = slices.Clone(want)
		}
	}
	return chunks
}

// result copies the state out as Build's Result.
func (inc *Incremental) result(cfg config.Config, snap rules.Snapshot, opt Options) Result {
	res := Result{Family: inc.fam}
	bridges(snap, &res)
	res.Problems = append(res.Problems, rules.SnapshotProblems(snap)...)
	if inc.perDirty {
		inc.problems, inc.limits = nil, nil
		for _, e := range inc.order {
			inc.problems = append(inc.problems, e.problems...)
			inc.limits = append(inc.limits, e.limits...)
		}
		sortLimits(inc.limits)
		inc.perDirty = false
	}
	res.Problems = append(res.Problems, inc.problems...)
	res.Limits = inc.limits // read-only, like Input below
	inc.orderOut = entryChunks(inc.orderOut, inc.order)
	res.lists = &lists{ents: slices.Clone(inc.orderOut)}
	open := Set{Kind: SetOpen, Family: inc.fam, view: inc.open.view(), Delta: inc.open.delta(inc.gen)}
	from := Set{Kind: SetFrom, Family: inc.fam, view: inc.from.view(), Delta: inc.from.delta(inc.gen)}
	res.Sets = []Set{open, from}
	for g := range inc.linear {
		for _, ref := range g.links {
			res.Linear = append(res.Linear, ref.e.links[ref.li].allows...)
		}
	}
	slices.SortFunc(res.Linear, compareAllows)
	if inc.portsDirty {
		inc.ranges, inc.portsDirty = rangesOf(inc.portList), false // kept sorted and distinct
	}
	res.Ports = inc.ranges
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
	if len(cfg.Egress.Rules) == 0 {
		// Only containers with egress labels have a policy: decide those.
		snap.Containers = inc.egress
	}
	addEgress(&res, cfg, snap)
	return res
}
