package rules

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/dockmoat/dockmoat/config"
)

// Chain names. iptables allows 28 characters.
const (
	ChainMain    = "DOCKMOAT"
	ChainIngress = "DOCKMOAT-INGRESS"
	// HookChain is Docker's chain for user rules; dockmoat adds exactly one
	// rule there (the hook) and never edits anything else in it.
	HookChain = "DOCKER-USER"
	// UFWChain holds `ufw route` rules.
	UFWChain = "ufw-user-forward"
	// CommentPrefix marks every rule dockmoat owns.
	CommentPrefix = "dockmoat:"
	// HookComment marks the hook rule in DOCKER-USER.
	HookComment = "dockmoat:hook"
	// LogPrefix is the kernel log prefix of blocked connections.
	LogPrefix = "[DOCKMOAT BLOCK] "
)

// IsOwnedChain reports whether a chain is one dockmoat creates. Names are
// matched exactly: a user's DOCKMOAT_LOG or DOCKMOAT-MINE is foreign and
// is never flushed, rewritten or deleted.
func IsOwnedChain(name string) bool {
	switch name {
	case ChainMain, ChainIngress, ChainPorts, ChainDeny, ChainInput:
		return true
	}
	return false
}

// HookSpec is the rule spec of the hook in DOCKER-USER.
func HookSpec() []string {
	return []string{"-m", "comment", "--comment", HookComment, "-j", ChainMain}
}

// Rule is one owned rule: a spec (matches then target) and a comment that
// carries its hash, so observed state is compared by hash and not by
// re-parsing iptables' text, which does not round-trip exactly.
type Rule struct {
	Spec []string
	Desc string
	Hash string
}

// Comment is the `-m comment` text of the rule.
func (r Rule) Comment() string { return CommentPrefix + r.Hash + " " + r.Desc }

// Chain is an owned chain with its rules in order.
type Chain struct {
	Name  string
	Rules []Rule
}

// Hashes lists the rule hashes in order.
func (c Chain) Hashes() []string {
	out := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		out[i] = r.Hash
	}
	return out
}

// Ruleset is the desired content of dockmoat's chains for one family,
// and of its sets when Options.Sets is on.
type Ruleset struct {
	Family Family
	Chains []Chain
	Sets   []Set
}

// Chain returns the named chain, if present.
func (rs Ruleset) Chain(name string) (Chain, bool) {
	for _, c := range rs.Chains {
		if c.Name == name {
			return c, true
		}
	}
	return Chain{}, false
}

// Decision records, per published port, whether and to whom it is open.
type Decision struct {
	Container string
	Binding   PortBinding
	Open      bool
	Sources   config.Sources // meaningful when Open
	Reason    string
}

// Options are facts about the host the rules depend on.
type Options struct {
	// UFWForward says whether to hand unmatched traffic to ufw-user-forward.
	// The caller decides from config.UFW and whether the chain exists.
	UFWForward bool
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
	// docker-proxy through INPUT (see proxy.go).
	ProxyAll bool
	// InputOnly builds DOCKMOAT-INPUT alone, for a family without a
	// DOCKER-USER chain to hook (Docker does not forward it to containers).
	InputOnly bool
}

// Result is the output of Build.
type Result struct {
	Ruleset  Ruleset
	Problems []Problem
	// lists holds the decisions and allows (see Decisions and Allows).
	lists *lists
	// With Options.Sets: the allowed published ports of the set elements,
	// and the allows that stay rules (see sets.go).
	Ports  []PortRange
	Linear []Allow
	// Proxied are the decisions of the bindings served by docker-proxy
	// (through INPUT) in this family, by port (see proxy.go).
	Proxied []Decision
}

// lists are a result's decisions and allows. Incremental keeps them per
// container and hands out its entries (a copy of 10,000 pointers): the
// flat lists are made the first time someone asks, after the pass, so a
// change of one container among 10,000 does not copy the other 9,999 on
// the way to the firewall.
type lists struct {
	once      sync.Once
	ents      []*incEnt // set by Incremental; its entries never change
	decisions []Decision
	allows    []Allow
}

func (l *lists) flat() *lists {
	l.once.Do(func() {
		if l.ents == nil {
			return
		}
		n, m := 0, 0
		for _, e := range l.ents {
			n, m = n+len(e.decisions), m+len(e.allows)
		}
		l.decisions, l.allows = make([]Decision, 0, n), make([]Allow, 0, m)
		for _, e := range l.ents {
			l.decisions = append(l.decisions, e.decisions...)
			l.allows = append(l.allows, e.allows...)
		}
		l.ents = nil
	})
	return l
}

// Decisions are the family's port decisions, sorted by container name
// and ID. The slice is shared: do not modify it.
func (r Result) Decisions() []Decision {
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
	Binding   PortBinding
	Addr      netip.Addr
	Source    string // CIDR, "" = anyone
}

var ifaceRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// Build computes the desired ruleset for one family.
func Build(cfg config.Config, snap Snapshot, fam Family, opt Options) Result {
	if inc := opt.Inc; opt.Sets && inc != nil && inc.fam == fam {
		opt.Inc = nil
		return inc.Build(cfg, snap, opt)
	}
	var res Result
	res.Ruleset.Family = fam
	main, ing := head(cfg, snap, fam, &res)

	// Sort pointers: a Container is large and there may be 10,000 of them.
	containers := make([]*Container, len(snap.Containers))
	for i := range snap.Containers {
		containers[i] = &snap.Containers[i]
	}
	slices.SortFunc(containers, compareContainers)
	if opt.Memo != nil {
		opt.Memo.begin(cfg)
		defer opt.Memo.end()
	}
	g := newGrouper(len(containers))
	l := &lists{decisions: make([]Decision, 0, len(containers))}
	res.lists = l
	if opt.Sets {
		l.allows = make([]Allow, 0, len(containers))
	}
	for _, c := range containers {
		decisions, problems := opt.Memo.decide(cfg, c)
		res.Problems = append(res.Problems, problems...)
		addrs := familyAddrs(*c, fam)
		for _, d := range decisions {
			if !bindingInFamily(d.Binding, fam) {
				continue
			}
			l.decisions = append(l.decisions, d)
			srcs := SourcesOf(d, fam)
			allows := expand(c.Name, d, addrs, srcs)
			l.allows = append(l.allows, allows...)
			if opt.Sets {
				g.add(addrs, d, srcs, allows)
			}
		}
	}
	if opt.Sets {
		var open, from Set
		var ports []hostPort
		open, from, ports, res.Linear = g.split(fam)
		res.Ruleset.Sets = []Set{open, from}
		res.Ports = portRanges(ports)
	}
	finish(cfg, snap, fam, opt, &res, main, ing)
	return res
}

func compareContainers(a, b *Container) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
}

// head starts a ruleset: the DOCKMOAT chain for the bridges (problems with
// their names go to res) and INGRESS with the trusted sources.
func head(cfg config.Config, snap Snapshot, fam Family, res *Result) (Chain, Chain) {
	bridges := slices.Clone(snap.Bridges)
	slices.Sort(bridges)
	bridges = slices.Compact(bridges)

	main := Chain{Name: ChainMain}
	main.add(Desc("replies and related traffic"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	var valid []string
	for _, b := range bridges {
		if !ifaceRe.MatchString(b) {
			res.Problems = append(res.Problems, Problem{Container: "-", Label: "network bridge", Value: b, Msg: "not a valid interface name; ignored"})
			continue
		}
		valid = append(valid, b)
		main.add(Desc("leaving docker network "+b), "-i", b, "-j", "RETURN")
	}
	for _, b := range valid {
		main.add(Desc("entering docker network "+b), "-o", b, "-j", ChainIngress)
	}
	unseenNetworks(&main, valid)

	ing := Chain{Name: ChainIngress}
	for _, src := range SortedPrefixes(cfg.TrustedSources) {
		if fam.Has(src.Addr()) {
			ing.add(Desc("trusted source "+src.String()), "-s", src.String(), "-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN")
		}
	}
	return main, ing
}

// DefaultBridges are the interface patterns of bridges Docker names
// itself: docker0 and br-<network id>.
var DefaultBridges = []string{"docker0", "br-+"}

// unseenNetworks ends DOCKMOAT with rules for networks the ruleset does
// not name: one created while dockmoat is stopped, hung or failing must
// be closed too, so the installed rules cannot depend on knowing every
// bridge. Traffic leaving any default-named bridge returns as for a known
// one (containers keep talking out and to each other); new connections
// into one go to INGRESS, where no allow names them. Only Docker's own
// name patterns are matched, so the user's bridges (virbr0, br0) and
// their own port forwards are not touched; a network given its own bridge
// name (com.docker.network.bridge.name) is closed once dockmoat has seen
// it, not before (README, security model).
func unseenNetworks(main *Chain, known []string) {
	for _, b := range UnseenBridges(known) {
		main.add(Desc("leaving a docker network not seen yet "+BridgePattern(b)), "-i", b, "-j", "RETURN")
	}
	for _, b := range UnseenBridges(known) {
		main.add(Desc("entering a docker network not seen yet "+BridgePattern(b)), "-o", b, "-j", ChainIngress)
	}
}

// UnseenBridges lists the DefaultBridges patterns that the known bridges do not
// already name (docker0 is usually known; br-+ never is).
func UnseenBridges(known []string) []string {
	return slices.DeleteFunc(slices.Clone(DefaultBridges), func(b string) bool { return slices.Contains(known, b) })
}

// BridgePattern shows an iptables interface pattern (br-+) as a glob (br-*).
func BridgePattern(iface string) string { return strings.ReplaceAll(iface, "+", "*") }

// finish writes the allows into INGRESS (set lookups and the allows that
// stay rules with sets; every allow without), the tail, and the chains,
// then DOCKMOAT-INPUT for the bindings docker-proxy serves.
func finish(cfg config.Config, snap Snapshot, fam Family, opt Options, res *Result, main, ing Chain) {
	res.Proxied = proxied(cfg, snap, fam, opt)
	input, hasInput := inputChain(cfg, ValidBridges(snap), fam, res.Proxied)
	if opt.InputOnly {
		res.Ruleset.Chains, res.Ruleset.Sets = nil, nil
		if hasInput {
			res.Ruleset.Chains = []Chain{input}
		}
		return
	}
	defer func() {
		if hasInput {
			res.Ruleset.Chains = append(res.Ruleset.Chains, input)
		}
	}()
	var linear []Allow
	if !opt.Sets {
		linear = res.Allows()
	} else {
		linear = res.Linear
		setRules(&ing, fam)
	}
	for _, a := range linear {
		addAllow(&ing, a, fam)
	}
	// The tail: ufw route rules, log, drop. With sets it is a chain of
	// its own, shared by INGRESS and PORTS.
	tail := &ing
	deny := Chain{Name: ChainDeny}
	if opt.Sets {
		ing.add(Desc("not allowed"), "-j", ChainDeny)
		tail = &deny
	}
	if opt.UFWForward {
		tail.add(Desc("ufw route rules"), "-j", UFWChain)
	}
	if cfg.LogBlocked {
		tail.add(Desc("log blocked"), "-m", "limit", "--limit", "10/min", "--limit-burst", "20",
			"-j", "LOG", "--log-prefix", LogPrefix)
	}
	tail.add(Desc("default deny"), "-j", "DROP")
	res.Ruleset.Chains = []Chain{main, ing}
	if opt.Sets {
		res.Ruleset.Chains = append(res.Ruleset.Chains, portsChain(res.Ports), deny)
	}
}

// bindingInFamily: Docker reports 0.0.0.0 and :: bindings separately; an
// empty host address means every family.
func bindingInFamily(b PortBinding, fam Family) bool {
	return !b.HostIP.IsValid() || fam.Has(b.HostIP)
}

// familyAddrs lists a container's addresses of the family, sorted.
func familyAddrs(c Container, fam Family) []netip.Addr {
	var addrs []netip.Addr
	for _, ep := range c.Endpoints {
		for _, a := range []netip.Addr{ep.IPv4, ep.IPv6} {
			if fam.Has(a) && !slices.Contains(addrs, a.Unmap()) {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs
}

// anySource is the source list of a port open to everyone.
var anySource = []string{""}

// SourcesOf lists the sources of the family a decision allows: "" means
// anyone; nil means closed (or open only to sources of the other family).
func SourcesOf(d Decision, fam Family) []string {
	if !d.Open {
		return nil
	}
	if d.Sources.Any {
		return anySource
	}
	var srcs []string
	for _, p := range SortedPrefixes(d.Sources.Prefixes) {
		if fam.Has(p.Addr()) {
			srcs = append(srcs, p.String())
		}
	}
	return srcs
}

// expand makes one Allow per container address and source.
func expand(name string, d Decision, addrs []netip.Addr, srcs []string) []Allow {
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
	return Desc(text)
}

func addAllow(ch *Chain, a Allow, fam Family) {
	b := a.Binding
	bits := fam.bits()
	var spec []string
	if a.Source != "" {
		spec = append(spec, "-s", a.Source)
	}
	spec = append(spec, "-d", a.Addr.String()+bits, "-p", b.Proto, "-m", b.Proto,
		"--dport", strconv.Itoa(int(b.ContainerPort)),
		"-m", "conntrack", "--ctstate", "DNAT")
	if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
		spec = append(spec, "--ctorigdst", b.HostIP.Unmap().String()+bits)
	}
	spec = append(spec, "--ctorigdstport", strconv.Itoa(int(b.HostPort)), "-j", "RETURN")
	ch.add(a.Describe(), spec...)
}

func (f Family) bits() string {
	if f == IPv6 {
		return "/128"
	}
	return "/32"
}

// decide applies labels and config to each published port of a container.
func decide(cfg config.Config, c Container) ([]Decision, []Problem) {
	labelGrants, problems := parseLabels(c)
	fatal := len(problems) > 0
	var cfgGrants []grant
	for i, r := range cfg.Allow {
		if !r.Matches(c.Name, c.Labels) {
			continue
		}
		for _, spec := range r.Ports {
			cfgGrants = append(cfgGrants, grant{spec: spec, sources: r.From, fromConfig: true, origin: fmt.Sprintf("config allow[%d]", i)})
		}
	}

	bindings := slices.Clone(c.Ports)
	slices.SortFunc(bindings, comparePorts)
	bindings = slices.CompactFunc(bindings, func(a, b PortBinding) bool { return comparePorts(a, b) == 0 })

	var out []Decision
	for _, b := range bindings {
		d := Decision{Container: c.Name, Binding: b, Reason: "closed by dockmoat default deny"}
		switch {
		case b.HostIP.IsValid() && b.HostIP.IsLoopback():
			d.Reason = "bound to " + b.HostIP.String() + ": local only"
		case fatal:
			d.Reason = "closed: invalid dockmoat label"
		default:
			var srcs config.Sources
			var origins []string
			// Per-port labels override dockmoat.from for their ports.
			perPort := slices.ContainsFunc(labelGrants, func(g grant) bool { return g.perPort && g.spec.Matches(b.HostPort, b.Proto) })
			for _, g := range append(slices.Clone(labelGrants), cfgGrants...) {
				if !g.spec.Matches(b.HostPort, b.Proto) || (perPort && !g.perPort && !g.fromConfig) {
					continue
				}
				if len(origins) == 0 {
					srcs = g.sources
				} else {
					srcs = srcs.Union(g.sources)
				}
				origins = append(origins, g.origin)
			}
			if len(origins) > 0 {
				d.Open, d.Sources = true, srcs
				d.Reason = "allowed by " + strings.Join(slices.Compact(origins), "; ")
			}
		}
		out = append(out, d)
	}
	if !fatal {
		problems = append(problems, unmatched(c, labelGrants, bindings)...)
	}
	if n := entries(c, out); n > MaxContainerEntries {
		// Too large to install (the sets hold 2^20 elements for every
		// container together): closed and reported, so that this one
		// container cannot fail the pass for all the others.
		for i := range out {
			if out[i].Open {
				out[i] = Decision{Container: c.Name, Binding: out[i].Binding, Reason: "closed: policy too large to install"}
			}
		}
		problems = append(problems, Problem{Container: c.Name, Label: LabelFrom, Value: c.Labels[LabelFrom], Fatal: true,
			Msg: fmt.Sprintf("its allows expand to %d entries (published ports x container addresses x sources), more than dockmoat installs for one container (%d): open fewer ports, or name sources as wider CIDRs or trusted_sources", n, MaxContainerEntries)})
	}
	return out, problems
}

// MaxContainerEntries bounds the allow entries of one container.
const MaxContainerEntries = 1 << 16

// entries counts the allow entries a container's open decisions expand
// to, over both families (an upper bound of what Build installs for it).
func entries(c Container, decisions []Decision) int {
	addrs := 0
	for _, ep := range c.Endpoints {
		if ep.IPv4.IsValid() {
			addrs++
		}
		if ep.IPv6.IsValid() {
			addrs++
		}
	}
	n := 0
	for _, d := range decisions {
		if d.Open {
			n += max(addrs, 1) * max(len(d.Sources.Prefixes), 1)
		}
	}
	return n
}

// unmatched warns about label entries that name no published port, with a
// hint when the user wrote the container port instead of the host port.
func unmatched(c Container, grants []grant, bindings []PortBinding) []Problem {
	var out []Problem
	for _, g := range grants {
		if g.spec.All || slices.ContainsFunc(bindings, func(b PortBinding) bool { return g.spec.Matches(b.HostPort, b.Proto) }) {
			continue
		}
		label, value := LabelAllow, c.Labels[LabelAllow]
		if g.perPort {
			label = labelPortPfx + g.spec.String()
			value = c.Labels[label]
		}
		msg := fmt.Sprintf("port %s is not published by this container, so it opens nothing", g.spec)
		for _, b := range bindings {
			if g.spec.Matches(b.ContainerPort, b.Proto) {
				msg += fmt.Sprintf("; labels name the published (host) port: did you mean %d (published %d->%d/%s)?", b.HostPort, b.HostPort, b.ContainerPort, b.Proto)
				break
			}
		}
		out = append(out, Problem{Container: c.Name, Label: label, Value: value, Msg: msg})
	}
	return out
}

func comparePorts(a, b PortBinding) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.HostPort, b.HostPort),
		a.HostIP.Compare(b.HostIP), cmp.Compare(a.ContainerPort, b.ContainerPort))
}

// SortedPrefixes sorts prefixes by address then length, without duplicates.
func SortedPrefixes(in []netip.Prefix) []netip.Prefix {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return slices.Compact(out)
}

var unsafeComment = regexp.MustCompile(`[^A-Za-z0-9_.:/ ,*-]`)

// Desc makes a comment text that needs no quoting beyond double quotes and
// stays well under iptables' 256-byte comment limit with the hash.
func Desc(s string) string {
	s = unsafeComment.ReplaceAllString(s, "_")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func (c *Chain) add(text string, spec ...string) {
	h := sha256.New()
	h.Write([]byte(c.Name))
	for _, s := range spec {
		h.Write([]byte{0})
		h.Write([]byte(s))
	}
	h.Write([]byte{1})
	h.Write([]byte(text))
	c.Rules = append(c.Rules, Rule{Spec: spec, Desc: text, Hash: hex.EncodeToString(h.Sum(nil))[:16]})
}

// BuildGuard is the boot-time ruleset of `dockmoat guard`, installed
// before Docker starts, when neither the bridges nor the containers are
// known yet. It closes every new connection Docker would DNAT to a
// container, and everything routed into docker0 or a default-named br-*
// bridge, except from trusted sources. `dockmoat run` replaces it with the
// exact ruleset on its first pass.
func BuildGuard(cfg config.Config, fam Family) Ruleset {
	main := Chain{Name: ChainMain}
	main.add(Desc("replies and related traffic"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	for _, b := range []string{"docker0", "br-+"} {
		main.add(Desc("guard: leaving docker network "+b), "-i", b, "-j", "RETURN")
	}
	main.add(Desc("guard: published ports"), "-m", "conntrack", "--ctstate", "DNAT", "-j", ChainIngress)
	for _, b := range []string{"docker0", "br-+"} {
		main.add(Desc("guard: entering docker network "+b), "-o", b, "-j", ChainIngress)
	}
	ing := Chain{Name: ChainIngress}
	for _, src := range SortedPrefixes(cfg.TrustedSources) {
		if fam.Has(src.Addr()) {
			ing.add(Desc("trusted source "+src.String()), "-s", src.String(), "-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN")
		}
	}
	ing.add(Desc("guard: default deny until dockmoat run"), "-j", "DROP")
	return Ruleset{Family: fam, Chains: []Chain{main, ing}}
}
