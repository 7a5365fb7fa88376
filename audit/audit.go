// Package audit answers "who can really reach each published port, and
// why" from the live state: Docker's port bindings and the installed
// netfilter ruleset, evaluated for a new connection from outside by
// audit/ipteval (iptables text) or audit/nfteval (the nftables JSON
// listing), both behind verdict.Ruleset. Above that seam, the same for
// both: source classes, packet variants, reasons, explain, Swarm and
// egress. The answer's types and printers are in audit/report. It reuses
// package rules for what dockmoat intends and compares, and checks
// whether dockmoat's own protection is intact with iptplan.PlanFamily (pure:
// no exec).
package audit

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/audit/ipteval"
	"github.com/dockmoat/dockmoat/audit/nfteval"
	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/setelem"
)

// Iface is an interface packets from outside can arrive on.
type Iface struct {
	Name  string
	Addrs []netip.Addr
}

// FamilyState is what was read of one address family's ruleset.
type FamilyState struct {
	Family rules.Family
	Tool   string // the iptables binary read ("iptables-nft"…)
	Save   string // iptables-save output of filter, nat and raw (if any); "" if unreadable
	Err    error  // why Save is empty
	// Sets holds dockmoat's ipsets of the family as read from the kernel
	// (absent sets are not in the map).
	Sets map[string][]setelem.Elem
}

// Input is everything audit reads.
type Input struct {
	Config   config.Config
	Snapshot rules.Snapshot
	Families []FamilyState
	Ifaces   []Iface // external interfaces with their addresses
	// NFT, when set, is the whole nftables ruleset (Docker's nftables
	// backend): both families are evaluated from it, and Findings and
	// Protected come from the caller; Families is then unused.
	NFT       *nftjson.Ruleset
	Findings  []string
	Protected bool
	// Explain names the ports whose paths to tell (explain.go); nil: none.
	Explain *report.Target
}

// meshOnly marks a row to drop: a routing-mesh protocol Docker does not
// DNAT (the ingress network lists both protocols of a published port).
const meshOnly report.Exposure = ""

type famCtx struct {
	st     FamilyState
	filter *iptsave.Table
	nat    *iptsave.Table
	raw    *iptsave.Table // nil when the host has no raw table
	plan   netfilter.FamilyPlan
	// policy is the family's policy (also for a family dockmoat does not
	// manage): the decisions per port, the egress of deny containers.
	policy    policy.Result
	installed bool // the hook exists
	decisions map[string]rules.Decision
	rs        verdict.Ruleset      // what is evaluated; nil: unreadable
	spans     []verdict.Span       // the source ranges the rules name
	reps      []netip.Addr         // one source per equivalence class
	generic   netip.Addr           // a source no rule names: "anyone"
	variants  map[string][]variant // per protocol, the default first (variants.go)
	ufwChain  bool
	setDiff   []string // how dockmoat's sets differ from the policy
	limits    []string // comments of the installed rate limit rules (limit.go)
}

// setRuleset makes rs the family's ruleset, with its source classes and
// the variants of a first packet it tells apart.
func (fc *famCtx) setRuleset(rs verdict.Ruleset) {
	fam := fc.st.Family
	fc.rs = rs
	fc.spans = sortSpans(rs.Sources(fam))
	fc.reps, fc.generic = representatives(fc.spans, fam)
	sports, flags, recent := rs.Choices()
	fc.variants = map[string][]variant{}
	for _, proto := range []string{"tcp", "udp", "sctp"} {
		fc.variants[proto] = variantsOf(sports, flags, recent, proto)
	}
}

// usesSets reports whether dockmoat's chains look allows up in ipsets.
func usesSets(t *iptsave.Table) bool {
	ch := t.Chains[iptplan.ChainIngress]
	return ch != nil && slices.ContainsFunc(ch.Rules, func(r iptsave.Rule) bool {
		return strings.Contains(r.Raw, "--match-set "+iptplan.SetName(policy.SetOpen, rules.IPv4)) ||
			strings.Contains(r.Raw, "--match-set "+iptplan.SetName(policy.SetOpen, rules.IPv6))
	})
}

// usesBans reports whether dockmoat's chains refuse the ban set first.
func usesBans(t *iptsave.Table, fam rules.Family) bool {
	ch := t.Chains[iptplan.ChainIngress]
	if ch == nil {
		ch = t.Chains[iptplan.ChainInput]
	}
	return ch != nil && slices.ContainsFunc(ch.Rules, func(r iptsave.Rule) bool {
		return strings.Contains(r.Raw, "--match-set "+iptplan.BanSet(fam)+" src")
	})
}

// setDiff compares the sets the policy wants with the sets read.
func setDiff(want []policy.Set, have map[string][]setelem.Elem) []string {
	var out []string
	for _, s := range want {
		name := iptplan.SetName(s.Kind, s.Family)
		got, ok := have[name]
		if !ok {
			out = append(out, "ipset "+name+" missing")
			continue
		}
		missing, extra := setelem.Diff(s.Elems(), setelem.Index(got))
		if len(missing) > 0 || len(extra) > 0 {
			out = append(out, fmt.Sprintf("ipset %s differs from the policy (%d allowed element(s) missing, %d extra)", name, len(missing), len(extra)))
		}
	}
	return out
}

// Run evaluates every published port.
func Run(in Input) report.Report {
	if in.NFT != nil {
		return runNFT(in)
	}
	var rep report.Report
	fams := map[rules.Family]*famCtx{}
	rep.Protected = true
	managed := 0
	for _, st := range in.Families {
		fc := &famCtx{st: st, decisions: map[string]rules.Decision{}, policy: policy.Build(in.Config, in.Snapshot, st.Family, policy.Options{})}
		fams[st.Family] = fc
		if st.Err != nil || st.Save == "" {
			rep.Findings = append(rep.Findings, fmt.Sprintf("%s: cannot read the ruleset (%v): its ports are reported unknown", st.Family, st.Err))
			if st.Family == rules.IPv4 {
				rep.Protected = false
			}
			continue
		}
		tables := iptsave.Parse([]byte(st.Save))
		fc.filter, fc.nat, fc.raw = tables["filter"], tables["nat"], tables["raw"]
		if fc.filter == nil {
			fc.filter = &iptsave.Table{Name: "filter", Chains: map[string]*iptsave.Chain{}}
		}
		fc.filter.Sets = st.Sets
		obs := iptplan.ObserveFilter(fc.filter)
		fc.plan = iptplan.PlanFamily(in.Config, in.Snapshot, st.Family, st.Tool, obs, policy.Options{Sets: usesSets(fc.filter)}, usesBans(fc.filter, st.Family))
		fc.setDiff = setDiff(fc.plan.Result.Sets, st.Sets)
		fc.installed = len(obs.Hook) > 0 || len(obs.ForwardHook) > 0
		fc.ufwChain = obs.Chains[iptplan.UFWChain(st.Family)]
		// The policy per port, also for a family dockmoat does not manage.
		for _, d := range fc.policy.Decisions() {
			fc.decisions[decisionKey(d.Container, d.Binding)] = d
		}
		fc.setRuleset(ipteval.Ruleset{Filter: fc.filter, NAT: fc.nat, Raw: fc.raw})
		fc.limits = limitComments(fc, nil)
		rep.Findings = append(rep.Findings, protectionFindings(fc, obs)...)
		if fc.plan.Skipped == "" && !iptplan.DetailOf(fc.plan).InputOnly {
			managed++
			if !fc.installed || !fc.plan.InSync() || len(fc.setDiff) > 0 {
				rep.Protected = false
			}
		}
	}
	if managed == 0 {
		rep.Protected = false
	}
	rep.Findings = append(rep.Findings, hostFindings(in, fams)...)
	rep.Rows = rows(in, fams)
	rep.Egress = egressRows(in, fams)
	return rep
}

// runNFT evaluates the whole nftables ruleset for both families.
func runNFT(in Input) report.Report {
	rep := report.Report{Protected: in.Protected, Findings: in.Findings}
	fams := map[rules.Family]*famCtx{}
	installed := in.NFT.Chain("inet", "dockmoat", "forward") != nil
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		res := policy.Build(in.Config, in.Snapshot, fam, policy.Options{})
		fc := &famCtx{st: FamilyState{Family: fam, Tool: "nft"}, decisions: map[string]rules.Decision{}, installed: installed, policy: res}
		fc.plan.Result = res
		for _, d := range res.Decisions() {
			fc.decisions[decisionKey(d.Container, d.Binding)] = d
		}
		fc.setRuleset(nfteval.Ruleset{Live: in.NFT, Fam: fam})
		fc.limits = limitComments(fc, in.NFT)
		fams[fam] = fc
	}
	rep.Findings = append(rep.Findings, hostFindings(in, fams)...)
	rep.Rows = rows(in, fams)
	rep.Egress = egressRows(in, fams)
	return rep
}

// rows evaluates every published port in each family, problems first.
func rows(in Input, fams map[rules.Family]*famCtx) []report.Row {
	var out []report.Row
	containers := slices.Clone(in.Snapshot.Containers)
	slices.SortFunc(containers, func(a, b rules.Container) int { return cmp.Compare(a.Name, b.Name) })
	for _, c := range containers {
		ports := slices.Clone(c.Ports)
		slices.SortFunc(ports, func(a, b rules.PortBinding) int {
			return cmp.Or(cmp.Compare(a.HostPort, b.HostPort), cmp.Compare(a.Proto, b.Proto), a.HostIP.Compare(b.HostIP))
		})
		ports = slices.Compact(ports)
		for _, b := range ports {
			for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
				if b.HostIP.IsValid() && !fam.Has(b.HostIP) {
					continue
				}
				if row := evalPort(in, fams[fam], fam, c, b); row.Exposure != meshOnly {
					out = append(out, row)
				}
			}
		}
	}
	// Problems first: beyond policy, then not intended, then by exposure.
	slices.SortStableFunc(out, func(a, b report.Row) int {
		return cmp.Or(-cmp.Compare(btoi(a.Beyond), btoi(b.Beyond)), cmp.Compare(btoi(a.Intended), btoi(b.Intended)))
	})
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func decisionKey(name string, b rules.PortBinding) string {
	return name + "|" + b.HostIP.String() + "|" + strconv.Itoa(int(b.HostPort)) + "|" + b.Proto
}

// portEval is one published port of one family under evaluation.
type portEval struct {
	in      Input
	fc      *famCtx
	fam     rules.Family
	c       rules.Container
	b       rules.PortBinding
	dec     rules.Decision // dockmoat's decision, if haveDec
	haveDec bool
}

// outcome is the verdict for a first packet from src, shaped as vr.
type outcome struct {
	src netip.Addr
	in  string // the interface the packet arrived on
	vr  variant
	v   verdict.Verdict
}

// evalPort answers, for one published port in one family, who can reach
// it from outside and why, and whether that is what the policy says.
func evalPort(in Input, fc *famCtx, fam rules.Family, c rules.Container, b rules.PortBinding) report.Row {
	row := report.Row{Container: c.Name, HostPort: b.HostPort, Proto: b.Proto, ContainerPort: b.ContainerPort, HostIP: hostIPString(b, fam)}
	row.Service = config.ServiceOf(c.Labels)
	pe := portEval{in: in, fc: fc, fam: fam, c: c, b: b}
	if fc != nil {
		pe.dec, pe.haveDec = fc.decisions[decisionKey(c.Name, b)]
	}
	openToAll := pe.haveDec && pe.dec.Open && pe.dec.Sources.Any
	if b.HostIP.IsValid() && b.HostIP.IsLoopback() && (b.HostIP.Is6() || fc != nil && fc.rs != nil) {
		pe.loopback(&row)
		return row
	}
	if fc == nil || fc.rs == nil {
		row.Exposure, row.Reason = report.Unknowable, fmt.Sprintf("the %s ruleset could not be read", fam)
		row.Beyond = !openToAll
		return row
	}
	addrs := pe.outsideAddrs()
	if len(addrs) == 0 {
		row.Exposure, row.Reason = report.Closed, fmt.Sprintf("no %s address on an outside interface matches the binding %s", fam, row.HostIP)
		row.Intended = !(pe.haveDec && pe.dec.Open)
		return row
	}
	all, accepted, dnat := pe.tryPaths(addrs)
	if !dnat && c.Mesh {
		// The mesh's ports are listed in both protocols (the ingress
		// network does not say which); Docker DNATs only the published one.
		row.Exposure = meshOnly
		return row
	}
	pathNote := ""
	if !dnat {
		pathNote = "no DNAT for this binding: docker-proxy answers on the host, so connections go through INPUT; "
	}
	for _, o := range all {
		if o.v.Result == verdict.Unknown {
			row.Exposure = report.Unknowable
			row.Reason = pathNote + "cannot evaluate: " + o.v.Why
			if o.v.Rule != "" {
				row.Reason += " (rule: " + o.v.Rule + ")"
			}
			row.Beyond = !openToAll
			if in.Explain.Matches(b) {
				pe.explain(&row, all)
			}
			return row
		}
	}
	pe.judge(&row, all, accepted)
	row.Reason = pathNote + row.Reason
	if in.Explain.Matches(b) {
		pe.explain(&row, all)
	}
	return row
}

// outsideAddrs are the host's addresses on outside interfaces that the
// binding listens on.
func (pe portEval) outsideAddrs() []netip.Addr {
	var addrs []netip.Addr
	b := pe.b
	for _, ifc := range pe.in.Ifaces {
		for _, a := range ifc.Addrs {
			if pe.fam.Has(a) && (!b.HostIP.IsValid() || b.HostIP.IsUnspecified() || a == b.HostIP) {
				addrs = append(addrs, a)
			}
		}
	}
	return addrs
}

// tryPaths evaluates the first packet of a connection from every source
// class to every outside address, on the path it takes: Docker's DNAT
// (FORWARD), or docker-proxy on the host (INPUT) when no DNAT covers the
// binding (dnat false).
func (pe portEval) tryPaths(addrs []netip.Addr) (all, accepted []outcome, dnat bool) {
	fc, b := pe.fc, pe.b
	ctrIP, bridge, dnat := dnatTarget(fc.rs, pe.c, b, pe.in.Snapshot)
	variants := fc.variants[b.Proto]
	if len(variants) == 0 {
		variants = []variant{{sport: 40000}}
	}
	for _, src := range append([]netip.Addr{fc.generic}, fc.reps...) {
		for _, ifc := range pe.in.Ifaces {
			for _, hostAddr := range addrs {
				if !slices.Contains(ifc.Addrs, hostAddr) && len(pe.in.Ifaces) > 1 {
					continue // a packet to an address arrives on its interface
				}
				for _, vr := range variants {
					p := verdict.Packet{Src: src, Proto: b.Proto, SPort: vr.sport, Flags: vr.flags, Recent: vr.recent,
						In: ifc.Name, OrigDst: hostAddr, OrigDstPort: b.HostPort}
					hook := "input"
					if dnat {
						p.Dst, p.DPort, p.Out = ctrIP, b.ContainerPort, bridge
						p.States = []string{"NEW", "DNAT"}
						hook = "forward"
					} else {
						p.Dst, p.DPort, p.DstLocal = hostAddr, b.HostPort, true
						p.States = []string{"NEW"}
					}
					o := outcome{src, ifc.Name, vr, fc.rs.Eval(hook, p)}
					all = append(all, o)
					if o.v.Result == verdict.Accept {
						accepted = append(accepted, o)
					}
				}
			}
		}
	}
	return all, accepted, dnat
}

// allowed reports whether the policy lets src, arriving on interface in,
// in by the path of v: the admin's own `ufw route allow`, a trusted
// source or interface, or the decision.
func (pe portEval) allowed(src netip.Addr, in string, v verdict.Verdict) bool {
	cfg := pe.in.Config
	if viaUFW(v) && cfg.UFW != config.UFWOff {
		return true
	}
	if slices.ContainsFunc(cfg.TrustedSources, func(p netip.Prefix) bool { return p.Contains(src) }) || config.IfaceIn(cfg.TrustedIfaces, in) {
		return true
	}
	if !pe.haveDec || !pe.dec.Open {
		return false
	}
	return pe.dec.Sources.Any || slices.ContainsFunc(pe.dec.Sources.Prefixes, func(p netip.Prefix) bool { return p.Contains(src) }) ||
		config.IfaceIn(pe.dec.Sources.Ifaces, in)
}

// anyoneOn lists the interfaces on which a source no rule names got in,
// and whether that is every interface a packet was tried on: a port open
// to an interface (iface:NAME) is open to anyone there, and only there.
func (pe portEval) anyoneOn(all, accepted []outcome) (ifaces []string, everywhere bool) {
	tried := map[string]bool{}
	for _, o := range all {
		tried[o.in] = true
	}
	for _, o := range accepted {
		if o.src == pe.fc.generic && !slices.Contains(ifaces, o.in) {
			ifaces = append(ifaces, o.in)
		}
	}
	slices.Sort(ifaces)
	return ifaces, len(ifaces) > 0 && len(ifaces) == len(tried)
}

// judge fills the row's exposure, sources, reason and whether it is
// intended or beyond policy, from the evaluated outcomes.
func (pe portEval) judge(row *report.Row, all, accepted []outcome) {
	fc, dec, haveDec := pe.fc, pe.dec, pe.haveDec
	on, everywhere := pe.anyoneOn(all, accepted)
	switch {
	case everywhere:
		row.Exposure = report.Public
	case len(accepted) > 0:
		row.Exposure = report.Restricted
		for _, ifc := range on {
			row.Sources = append(row.Sources, "anyone on "+ifc)
		}
		for _, o := range accepted {
			if !slices.Contains(on, o.in) {
				row.Sources = append(row.Sources, sourceLabel(fc.spans, o.src))
			}
		}
		slices.Sort(row.Sources)
		row.Sources = slices.Compact(row.Sources)
	default:
		row.Exposure = report.Closed
	}
	for _, o := range accepted {
		if !pe.allowed(o.src, o.in, o.v) {
			row.Beyond = true
		}
	}
	telling := pe.telling(all, accepted, row.Exposure)
	v := telling.v
	row.Reason = reason(fc, v, dec, haveDec, pe.b, row.Exposure)
	if def := pe.fc.variants[pe.b.Proto]; len(def) > 0 && telling.vr != def[0] && v.Result == verdict.Accept {
		row.Needs = telling.vr.describe(def[0])
		if telling.vr.sport != def[0].sport {
			row.SourcePort = telling.vr.sport
		}
		row.Reason += " — for a client that sends " + row.Needs + " (the client chooses it)"
		if s, ok := variantStep(v.Path); ok {
			row.Reason += fmt.Sprintf(": rule '%s' in %s lets it through", stripComment(s.Rule), s.Chain)
		}
	}
	if row.Exposure != report.Closed && haveDec {
		noteLimit(row, fc, dec)
	}
	switch row.Exposure {
	case report.Public:
		row.Intended = !row.Beyond && ((haveDec && dec.Open && dec.Sources.Any) || (viaUFW(v) && pe.in.Config.UFW != config.UFWOff))
	case report.Restricted:
		row.Intended = !row.Beyond && haveDec && dec.Open && !dec.Sources.Any
	case report.Closed:
		row.Intended = !(haveDec && dec.Open)
	}
}

// telling is the outcome the reason is told from: for a reachable port
// the anyone-source's (or the first allowed source's) accepted packet,
// the plain one when it got in; for a closed one the anyone-source's
// plain packet.
func (pe portEval) telling(all, accepted []outcome, exp report.Exposure) outcome {
	pick := func(list []outcome, src func(netip.Addr) bool) (outcome, bool) {
		var first *outcome
		for i, o := range list {
			if !src(o.src) {
				continue
			}
			if first == nil {
				first = &list[i]
			}
			if def := pe.fc.variants[pe.b.Proto]; len(def) == 0 || o.vr == def[0] {
				return o, true
			}
		}
		if first != nil {
			return *first, true
		}
		return outcome{}, false
	}
	generic := func(a netip.Addr) bool { return a == pe.fc.generic }
	switch exp {
	case report.Public:
		if o, ok := pick(accepted, generic); ok {
			return o
		}
	case report.Restricted:
		if o, ok := pick(accepted, func(a netip.Addr) bool { return a == accepted[0].src }); ok {
			return o
		}
	}
	o, _ := pick(all, generic)
	return o
}

func hostIPString(b rules.PortBinding, fam rules.Family) string {
	if b.HostIP.IsValid() {
		return b.HostIP.String()
	}
	if fam == rules.IPv6 {
		return "::"
	}
	return "0.0.0.0"
}

// dnatTarget finds Docker's DNAT of the binding in rs: the container
// address, its bridge, and whether a DNAT exists.
func dnatTarget(rs verdict.Ruleset, c rules.Container, b rules.PortBinding, snap rules.Snapshot) (netip.Addr, string, bool) {
	addr, ok := rs.DNAT(b, func(a netip.Addr) bool { _, ok := endpointBridge(c, a, snap); return ok })
	if !ok {
		return netip.Addr{}, "", false
	}
	bridge, _ := endpointBridge(c, addr, snap)
	return addr, bridge, true
}

// endpointBridge finds the container's network holding addr (a DNAT's
// target) and that network's bridge.
func endpointBridge(c rules.Container, addr netip.Addr, snap rules.Snapshot) (string, bool) {
	for _, ep := range c.Endpoints {
		if ep.IPv4 == addr || ep.IPv6 == addr {
			return bridgeOf(ep.Network, snap), true
		}
	}
	return "", false
}

// bridgeOf guesses the bridge interface of a container's network; only
// the DOCKMOAT chain and Docker's rules look at it, and they list every
// bridge, so the default bridge name is a safe fallback.
func bridgeOf(network string, snap rules.Snapshot) string {
	if b, ok := snap.NetworkBridges[network]; ok {
		return b
	}
	return "docker0"
}

// observing: the packet was let through by observe mode's rule.
func observing(v verdict.Verdict) bool {
	return strings.Contains(v.Rule, rules.ObserveDesc) ||
		slices.ContainsFunc(v.Returned, func(r iptsave.Rule) bool { return strings.Contains(r.Raw, rules.ObserveDesc) })
}

func viaUFW(v verdict.Verdict) bool {
	return v.Result == verdict.Accept && strings.HasPrefix(v.Chain, "ufw")
}

func reason(fc *famCtx, v verdict.Verdict, dec rules.Decision, haveDec bool, b rules.PortBinding, exp report.Exposure) string {
	published := "published on " + hostIPString(b, fc.st.Family)
	switch v.Result {
	case verdict.Accept:
		if viaUFW(v) {
			return fmt.Sprintf("allowed by ufw route rule '%s' in %s", stripComment(v.Rule), v.Chain)
		}
		for _, r := range v.Returned {
			if strings.Contains(r.Raw, rules.DisabledDesc) {
				return published + "; dockmoat protection is switched off by 'dockmoat disable' ('dockmoat enable' turns it back on)"
			}
		}
		if observing(v) {
			return published + "; dockmoat is OBSERVING: the policy refuses this, and observe mode lets it through and counts it ('dockmoat suggest' shows what was seen, 'dockmoat enforce' closes it)"
		}
		for _, r := range v.Returned {
			if r.Chain == iptplan.ChainIngress || r.Chain == iptplan.ChainPorts || strings.HasPrefix(r.Chain, nftOwnTable) {
				if strings.Contains(r.Raw, "trusted source") {
					return "allowed by dockmoat rule '" + commentText(r) + "' (trusted_sources)"
				}
				if haveDec && dec.Open {
					return dec.Reason + " on container " + dec.Container
				}
				return "allowed by dockmoat rule '" + commentText(r) + "'"
			}
		}
		if !fc.installed {
			s := published + "; no dockmoat protection installed"
			if fc.ufwChain {
				s += "; UFW does not filter Docker-forwarded traffic"
			}
			return s
		}
		if v.Rule == "policy ACCEPT" || v.Rule == "policy accept" {
			return published + "; accepted by the " + v.Chain + " policy"
		}
		return fmt.Sprintf("%s; accepted by rule '%s' in %s", published, stripComment(v.Rule), v.Chain)
	case verdict.Drop:
		if (v.Chain == iptplan.ChainIngress || v.Chain == iptplan.ChainDeny || strings.HasPrefix(v.Chain, nftOwnTable)) && strings.Contains(v.Rule, "default deny") {
			if haveDec && !dec.Open && strings.Contains(dec.Reason, "invalid") {
				return "closed by dockmoat default deny (invalid dockmoat label)"
			}
			return "closed by dockmoat default deny"
		}
		if strings.HasPrefix(v.Rule, "policy ") {
			return "dropped by the " + v.Chain + " " + v.Rule
		}
		return fmt.Sprintf("dropped by rule '%s' in %s", stripComment(v.Rule), v.Chain)
	}
	return string(exp)
}

func commentText(r iptsave.Rule) string {
	c := ipteval.OptValue(r.Args, "--comment")
	if i := strings.IndexByte(c, ' '); i > 0 && strings.HasPrefix(c, rules.CommentPrefix) {
		return c[i+1:]
	}
	return c
}

func stripComment(raw string) string {
	if !strings.HasPrefix(raw, "-") { // an nft rule (RuleText): its comment is its description
		return nftHash.ReplaceAllString(raw, `comment "`)
	}
	args := iptsave.Tokenize(raw)
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-m" && i+1 < len(args) && args[i+1] == "comment" {
			i++
			continue
		}
		if args[i] == "--comment" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return strings.Join(out, " ")
}

func protectionFindings(fc *famCtx, obs iptplan.Observed) []string {
	fam := fc.st.Family
	var out []string
	p, d := fc.plan, iptplan.DetailOf(fc.plan)
	switch {
	case p.Skipped != "":
		out = append(out, fmt.Sprintf("%s: %s", fam, p.Skipped))
		return out
	case d.InputOnly:
		state := "installed and intact"
		if !p.InSync() {
			state = "NOT intact; is dockmoat running?"
		}
		out = append(out, fmt.Sprintf("%s: %s; ports served there by docker-proxy are guarded by %s: %s", fam, p.Note, iptplan.ChainInput, state))
		return out
	case d.DockerUserMissing && len(d.HookPositions) == 0:
		out = append(out, fmt.Sprintf("%s: no DOCKER-USER chain and no dockmoat hook in FORWARD: Docker's chains were flushed, Docker is not running, or its iptables integration is disabled (--iptables=false); is dockmoat running?", fam))
	case d.DockerUserMissing:
		out = append(out, fmt.Sprintf("%s: no DOCKER-USER chain (flushed, or Docker's iptables integration is off): dockmoat's hook stands in FORWARD (position %v) until Docker recreates it", fam, d.HookPositions))
	case !fc.installed:
		out = append(out, fmt.Sprintf("%s: dockmoat protection NOT installed (no hook in DOCKER-USER)", fam))
	case d.HookPositions[0] != 1:
		out = append(out, fmt.Sprintf("%s: dockmoat hook is not first in DOCKER-USER (position %v): rules above it decide first", fam, d.HookPositions))
	case len(p.Changed) > 0:
		var missing []string
		for _, c := range p.Changed {
			if len(obs.Owned[c]) == 0 {
				missing = append(missing, c)
			}
		}
		s := fmt.Sprintf("%s: dockmoat protection installed but NOT intact: chains %v differ from the policy", fam, p.Changed)
		if len(missing) > 0 {
			s += fmt.Sprintf(" (%v empty or missing: flushed?)", missing)
		}
		out = append(out, s+"; is dockmoat running?")
	case len(fc.setDiff) > 0:
		out = append(out, fmt.Sprintf("%s: dockmoat protection installed but NOT intact: %s; is dockmoat running?", fam, strings.Join(fc.setDiff, "; ")))
	default:
		how := fc.st.Tool
		if len(p.Result.Sets) > 0 {
			how += ", allows in ipsets"
		}
		out = append(out, fmt.Sprintf("%s: dockmoat protection installed and intact (%s)", fam, how))
	}
	var foreign []string
	for _, l := range obs.DockerUser {
		if !strings.Contains(l, iptplan.HookComment) && !strings.Contains(l, iptplan.CheckComment) && strings.TrimSpace(l) != "-A DOCKER-USER -j RETURN" {
			foreign = append(foreign, strings.TrimPrefix(l, "-A DOCKER-USER "))
		}
	}
	if len(foreign) > 0 {
		out = append(out, fmt.Sprintf("%s: foreign rules in DOCKER-USER: %s", fam, strings.Join(foreign, " | ")))
	}
	if fc.installed {
		out = append(out, Coexistence(fam, obs.DockerUser)...)
	}
	if fc.ufwChain {
		out = append(out, fmt.Sprintf("%s: ufw is enabled: it filters INPUT; Docker-forwarded traffic only meets its `ufw route` rules (ufw-user-forward)", fam))
	}
	return out
}

func hostFindings(in Input, fams map[rules.Family]*famCtx) []string {
	var out []string
	for _, name := range in.Snapshot.HostNetwork {
		out = append(out, fmt.Sprintf("container %s uses the host network: its ports bypass Docker publishing and dockmoat; protect them with INPUT rules (ufw)", name))
	}
	out = append(out, swarmFindings(in, fams)...)
	if fc := fams[rules.IPv4]; fc != nil {
		seen := map[string]bool{}
		for _, p := range fc.plan.Result.Problems {
			if s := p.String(); !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// nftHash is the hash in dockmoat's nft comments, not worth a reader's time.
var nftHash = regexp.MustCompile(`comment "` + rules.CommentPrefix + `[0-9a-f]{16} `)

// nftOwnTable prefixes the chain labels of dockmoat's nftables table.
const nftOwnTable = "inet dockmoat/"
