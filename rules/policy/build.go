// Package policy lays out one family's policy from the decisions of
// package rules: the allows (container address, published port, source)
// grouped as set elements, OPEN and FROM, with the allowed published
// ports checked after the lookup (sets.go says why both are needed), or
// as linear rules where a set cannot be exact; the bindings docker-proxy
// serves and the input path that closes them all (proxy.go); the rate
// limits, egress policies and bridges the backends need (Result). Build
// computes it; Incremental returns Build's result while keeping its work
// between calls, for passes over thousands of containers; Memo saves
// re-deciding unchanged containers. Pure, like rules: the backends
// (netfilter/ipt, netfilter/nft) render Result.
package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// Options are facts about the host the rules depend on.
type Options struct {
	// Sets puts allows into ipsets (see sets.go) instead of one rule each;
	// the caller sets it where the kernel supports the set types.
	Sets bool
	// Memo, if set, saves re-deciding unchanged containers (see Memo).
	Memo *Memo
	// Inc, with Sets, keeps the grouping between calls too (see
	// Incremental); it must be the state of the family being built.
	Inc *Incremental
	// ProxyAll says Docker does not DNAT this family (no DOCKER chain in
	// its filter table): every binding of the family is served by
	// docker-proxy through INPUT, and Result.Proxied lists them all (see
	// proxy.go; the input chain closes every binding either way).
	ProxyAll bool
}

// Result is the output of Build: one family's policy, which the backends
// render (netfilter/ipt, netfilter/nft).
type Result struct {
	Family   rules.Family
	Problems []rules.Problem
	// Bridges are the snapshot's bridge names that are valid interface
	// names, sorted: the Docker networks the rules name.
	Bridges []string
	// Foreign are the host's own br-* bridges, sorted (foreign.go): the
	// catch-all for unseen networks must not take them for Docker's.
	Foreign []string
	// HostOut are the host's interfaces a DNATed connection may leave by
	// without meeting the ingress policy (HostOutIfaces); HostOutKnown is
	// false when the host's links are unknown (then none is checked).
	HostOut      []string
	HostOutKnown bool
	// Sets, with Options.Sets: the allows as set elements (OPEN and FROM).
	Sets []Set
	// lists holds the decisions and allows (see Decisions and Allows).
	lists *lists
	// With Options.Sets: the allowed published ports of the set elements,
	// and the allows that stay rules (see sets.go).
	Ports  []PortRange
	Linear []Allow
	// Proxied are the decisions of the bindings served by docker-proxy
	// (through INPUT) in this family even with Docker's DNAT in place, by
	// port (see proxy.go).
	Proxied []rules.Decision
	// Input is what the input chain closes: every binding (proxy.go).
	Input InputPath
	// Egress are the outbound policies of the containers whose egress is
	// deny, by name (egress.go).
	Egress []rules.Egress
	// Limits are the rate-limited open bindings of the family, sorted
	// (limit.go).
	Limits []rules.Limit
	// DNSFromHost, with Egress, are the resolvers on the host's loopback:
	// Docker queries them from the host, so no egress rule is involved.
	DNSFromHost []netip.Addr
}

// lists are a result's decisions and allows. Incremental keeps them per
// container and hands out its entries, in chunks it shares between
// results (entryChunks): the flat lists are made the first time someone
// asks, after the pass, so a change of one container among 10,000 copies
// neither the other 9,999 nor their pointers on the way to the firewall.
type lists struct {
	once      sync.Once
	ents      [][]*incEnt // set by Incremental; chunks and entries never change
	decisions []rules.Decision
	allows    []Allow
}

func (l *lists) flat() *lists {
	l.once.Do(func() {
		if l.ents == nil {
			return
		}
		n, m := 0, 0
		for _, chunk := range l.ents {
			for _, e := range chunk {
				n, m = n+len(e.decisions), m+len(e.allows)
			}
		}
		l.decisions, l.allows = make([]rules.Decision, 0, n), make([]Allow, 0, m)
		for _, chunk := range l.ents {
			for _, e := range chunk {
				l.decisions = append(l.decisions, e.decisions...)
				l.allows = append(l.allows, e.allows...)
			}
		}
		l.ents = nil
	})
	return l
}

// Decisions are the family's port decisions, sorted by container name
// and ID. The slice is shared: do not modify it.
func (r Result) Decisions() []rules.Decision {
	if r.lists == nil {
		return nil
	}
	return r.lists.flat().decisions
}

// Allows is the expanded allow list of the family, in rule order: one
// entry per container address and source. The slice is shared: do not
// modify it.
func (r Result) Allows() []Allow {
	if r.lists == nil {
		return nil
	}
	return r.lists.flat().allows
}

// Allow is one allowed (source, container address, published port).
type Allow struct {
	Container string
	Binding   rules.PortBinding
	Addr      netip.Addr
	Source    string // CIDR, "" = anyone
}

// Build computes the desired ruleset for one family.
func Build(cfg config.Config, snap rules.Snapshot, fam rules.Family, opt Options) Result {
	snap = rules.TrustImageLabels(cfg, snap)
	if inc := opt.Inc; opt.Sets && inc != nil && inc.fam == fam {
		opt.Inc = nil
		return inc.Build(cfg, snap, opt)
	}
	res := Result{Family: fam}
	bridges(snap, &res)
	res.Problems = append(res.Problems, rules.SnapshotProblems(snap)...)

	// Sort pointers: a Container is large and there may be 10,000 of them.
	containers := make([]*rules.Container, len(snap.Containers))
	for i := range snap.Containers {
		containers[i] = &snap.Containers[i]
	}
	slices.SortFunc(containers, rules.CompareContainers)
	if opt.Memo != nil {
		opt.Memo.begin(cfg)
		defer opt.Memo.end()
	}
	g := newGrouper(len(containers))
	l := &lists{decisions: make([]rules.Decision, 0, len(containers))}
	res.lists = l
	if opt.Sets {
		l.allows = make([]Allow, 0, len(containers))
	}
	for _, c := range containers {
		decisions, problems := opt.Memo.decide(cfg, c)
		res.Problems = append(res.Problems, problems...)
		addrs := rules.FamilyAddrs(*c, fam)
		first := len(l.decisions)
		for _, d := range decisions {
			if !rules.InFamily(d.Binding, fam) {
				continue
			}
			l.decisions = append(l.decisions, d)
			srcs := rules.SourcesOf(d, fam)
			allows := expand(c.Name, d, addrs, srcs)
			l.allows = append(l.allows, allows...)
			if opt.Sets {
				g.add(addrs, d, srcs, allows)
			}
		}
		res.Proxied = proxiedAppend(res.Proxied, c, l.decisions[first:], fam, opt.ProxyAll)
		res.Limits = appendLimits(res.Limits, l.decisions[first:])
	}
	sortLimits(res.Limits)
	if opt.Sets {
		var open, from Set
		var ports []hostPort
		open, from, ports, res.Linear = g.split(fam)
		res.Sets = []Set{open, from}
		res.Ports = portRanges(ports)
	}
	sortProxied(res.Proxied)
	res.Input = inputPath(l.decisions)
	addEgress(&res, cfg, snap)
	return res
}

// bridges fills res.Bridges with the snapshot's valid bridge names and
// reports the others.
func bridges(snap rules.Snapshot, res *Result) {
	res.Bridges = rules.ValidBridges(snap)
	res.Foreign = rules.ForeignBridges(snap.Links, res.Bridges)
	res.HostOut, res.HostOutKnown = rules.HostOutIfaces(snap, res.Bridges, res.Foreign), snap.Links != nil
	all := slices.Clone(snap.Bridges)
	slices.Sort(all)
	for _, b := range slices.Compact(all) {
		if !rules.ValidIface(b) {
			res.Problems = append(res.Problems, rules.Problem{Container: "-", Label: "network bridge", Value: b, Msg: "not a valid interface name; ignored"})
		}
	}
}

// expand makes one Allow per container address and source.
func expand(name string, d rules.Decision, addrs []netip.Addr, srcs []string) []Allow {
	var out []Allow
	for _, a := range addrs {
		for _, s := range srcs {
			out = append(out, Allow{Container: name, Binding: d.Binding, Addr: a, Source: s})
		}
	}
	return out
}

// Describe is the human part of an allow rule's comment.
func (a Allow) Describe() string {
	text := fmt.Sprintf("allow %s %d/%s", a.Container, a.Binding.HostPort, a.Binding.Proto)
	if a.Source != "" {
		text += " from " + a.Source
	}
	return rules.Desc(text)
}
