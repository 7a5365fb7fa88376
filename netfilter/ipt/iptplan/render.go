package iptplan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// The iptables rendering of policy.Result. Traffic Docker forwards to
// containers passes FORWARD → DOCKER-USER before Docker's own ACCEPT
// rules; dockmoat's hook at the top of DOCKER-USER jumps to:
//
//	DOCKMOAT          classifier: replies (ESTABLISHED,RELATED) return,
//	                  traffic leaving a Docker network passes; traffic
//	                  entering a Docker network goes to INGRESS.
//	DOCKMOAT-INGRESS  new connections from outside to a container: trusted
//	                  sources and allowed ports pass (back to DOCKER-USER,
//	                  then Docker accepts them), then UFW's route rules if
//	                  wanted, then DROP.
//
// With sets, INGRESS looks allows up in the ipsets and goes on to
// DOCKMOAT-PORTS (the published-port check), and the tail is a chain of
// its own, DOCKMOAT-DENY (see rules/policy/sets.go for why). DOCKMOAT-INPUT is
// the docker-proxy path (rules/policy/proxy.go), reached from the top of INPUT.
//
// Fail-closed layout: whatever the chains let through, they let through
// by a goto to DOCKMOAT-PASS, which sets rules.PassMark and returns to
// DOCKER-USER; nothing falls off DOCKMOAT's end. A second jump, right
// after the hook, goes to DOCKMOAT-CHECK, which drops a new DNATed
// connection without the mark and clears the mark of the others. So a
// flush of any one chain of dockmoat's, or a deleted hook, leaves no
// mark and the check drops (the published ports close); a flushed or
// unhooked check leaves the chains deciding as before. The docker-proxy
// path has the same pair: DOCKMOAT-INPUT passes through DOCKMOAT-PASS,
// and DOCKMOAT-INPUT-CHECK, second in INPUT, drops a new connection to a
// proxied binding without the mark.

// OwnedRule is one owned rule: a spec (matches then target) and a comment that
// carries its hash, so observed state is compared by hash and not by
// re-parsing iptables' text, which does not round-trip exactly.
type OwnedRule struct {
	Spec []string
	Desc string
	Hash string
}

// Comment is the `-m comment` text of the rule.
func (r OwnedRule) Comment() string { return rules.CommentPrefix + r.Hash + " " + r.Desc }

// OwnedChain is an owned chain with its rules in order.
type OwnedChain struct {
	Name  string
	Rules []OwnedRule
}

// ChainName implements netfilter.HashedChain.
func (c OwnedChain) ChainName() string { return c.Name }

// Hashes lists the rule hashes in order.
func (c OwnedChain) Hashes() []string {
	out := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		out[i] = r.Hash
	}
	return out
}

// add appends a rule; its hash covers the chain, the spec and the text.
func (c *OwnedChain) add(text string, spec ...string) {
	h := sha256.New()
	h.Write([]byte(c.Name))
	for _, s := range spec {
		h.Write([]byte{0})
		h.Write([]byte(s))
	}
	h.Write([]byte{1})
	h.Write([]byte(text))
	c.Rules = append(c.Rules, OwnedRule{Spec: spec, Desc: text, Hash: hex.EncodeToString(h.Sum(nil))[:16]})
}

// Ruleset is the desired content of dockmoat's chains for one family, and
// of its ipsets when the policy groups allows in sets.
type Ruleset struct {
	Family rules.Family
	Chains []OwnedChain
	Sets   []policy.Set
}

// Chain returns the named chain, if present.
func (rs Ruleset) Chain(name string) (OwnedChain, bool) {
	for _, c := range rs.Chains {
		if c.Name == name {
			return c, true
		}
	}
	return OwnedChain{}, false
}

// HookSpec is the rule spec of the hook in DOCKER-USER.
func HookSpec() []string {
	return []string{"-m", "comment", "--comment", HookComment, "-j", ChainMain}
}

// CheckSpec is the rule spec of the jump to DOCKMOAT-CHECK, second in
// the hook's chain: new connections only (the mark is set on those).
func CheckSpec() []string {
	return []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", CheckComment, "-j", ChainCheck}
}

// InputCheckSpec is the rule spec of the jump to DOCKMOAT-INPUT-CHECK,
// second in INPUT.
func InputCheckSpec() []string {
	return []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", InputCheckComment, "-j", ChainInputCheck}
}

// InputHookSpec is the rule spec of the jump at the top of INPUT.
func InputHookSpec() []string {
	return []string{"-m", "comment", "--comment", InputHookComment, "-j", ChainInput}
}

// RenderOptions are the facts of the host the chains depend on.
type RenderOptions struct {
	// UFWForward hands unmatched traffic to ufw-user-forward.
	UFWForward bool
	// InputOnly renders DOCKMOAT-INPUT alone, for a family without a
	// DOCKER-USER chain to hook (Docker does not forward it to containers).
	InputOnly bool
	// Bans refuses the sources of the family's ban set (BanSet) first.
	Bans bool
}

// Render turns one family's policy into dockmoat's chains (and its sets,
// when the policy grouped allows in sets).
func Render(cfg config.Config, res policy.Result, opt RenderOptions) Ruleset {
	fam := res.Family
	rs := Ruleset{Family: fam}
	if opt.InputOnly {
		// The family's forward path is not hooked: neither is its egress.
		res.Egress = nil
	}
	input, hasInput := inputChain(cfg, res, fam, opt.Bans)
	if opt.InputOnly {
		if hasInput {
			rs.Chains = []OwnedChain{input, inputCheckChain(res.Input, nil, fam), passChain()}
		}
		return rs
	}
	main, ing := head(cfg, res, fam, opt.Bans)
	limitRules(&ing, res.Limits, fam, true)
	sets := res.Sets != nil
	linear := res.Linear
	if !sets {
		linear = res.Allows()
	} else {
		setRules(&ing, fam)
	}
	for _, a := range linear {
		addAllow(&ing, a, fam)
	}
	// The tail: ufw route rules, log, drop. With sets it is a chain of
	// its own, shared by INGRESS and PORTS.
	tail := &ing
	deny := OwnedChain{Name: ChainDeny}
	if sets {
		ing.add(rules.Desc("not allowed"), "-j", ChainDeny)
		tail = &deny
	}
	if opt.UFWForward {
		tail.add(rules.Desc("ufw route rules"), "-j", UFWChain(fam))
	}
	observeTail(tail, cfg)
	if cfg.LogBlocked {
		tail.add(rules.Desc("log blocked"), "-m", "limit", "--limit", "10/min", "--limit-burst", "20",
			"-j", "LOG", "--log-prefix", rules.LogPrefix)
	}
	tail.add(rules.Desc("default deny"), "-j", "DROP")
	rs.Chains = []OwnedChain{main, ing, passChain(), checkChain(res.Egress, fam)}
	if sets {
		rs.Chains = append(rs.Chains, portsChain(res.Ports), deny)
		rs.Sets = res.Sets
	}
	if len(res.Egress) > 0 {
		rs.Chains = append(rs.Chains, egressChain(cfg, res.Egress, fam))
	}
	if hasInput {
		rs.Chains = append(rs.Chains, input, inputCheckChain(res.Input, res.Egress, fam))
	}
	return rs
}

// passChain marks what dockmoat's chains let through (reached by goto,
// so its end returns to DOCKER-USER).
func passChain() OwnedChain {
	ch := OwnedChain{Name: ChainPass}
	ch.add(rules.Desc("let through by dockmoat: mark it for the check"), "-j", "MARK", "--set-xmark", markHex(rules.PassMark)+"/"+markHex(rules.PassMark))
	return ch
}

// checkChain drops a new DNATed connection that dockmoat's chains did not
// mark (one was flushed, or the hook deleted), and refuses a deny
// container's new outbound connection likewise, then clears the mark.
func checkChain(egress []rules.Egress, fam rules.Family) OwnedChain {
	m := markHex(rules.PassMark)
	ch := OwnedChain{Name: ChainCheck}
	ch.add(rules.Desc("not let through by dockmoat, its chains flushed or unhooked: drop"), "-m", "conntrack", "--ctstate", "DNAT", "-m", "mark", "!", "--mark", m+"/"+m, "-j", "DROP")
	egressChecks(&ch, egress, fam, true)
	ch.add(rules.Desc("clear the mark"), "-j", "MARK", "--set-xmark", "0x0/"+m)
	return ch
}

// egressChecks refuse a deny container's new connection that dockmoat's
// chains did not mark: leaving its network (forward), or to the host.
func egressChecks(ch *OwnedChain, egress []rules.Egress, fam rules.Family, forward bool) {
	m := markHex(rules.PassMark)
	for _, e := range egress {
		for _, f := range e.From {
			spec := []string{"-s", f.Addr.String() + bits(fam), "-i", f.Bridge}
			if forward {
				spec = append(spec, "!", "-o", f.Bridge)
			}
			ch.add(rules.Desc("egress of "+e.Container+": not let through by dockmoat"), append(spec, "-m", "mark", "!", "--mark", m+"/"+m, "-j", "REJECT")...)
		}
	}
}

func markHex(m uint32) string { return fmt.Sprintf("%#x", m) }

// inputCheckChain is checkChain for the docker-proxy path: a new
// connection to a published binding that DOCKMOAT-INPUT did not mark is
// dropped (the other ports of the host are never matched).
func inputCheckChain(in policy.InputPath, egress []rules.Egress, fam rules.Family) OwnedChain {
	m := markHex(rules.PassMark)
	ch := OwnedChain{Name: ChainInputCheck}
	for _, g := range runGroups(in.All, fam) {
		ch.add(rules.Desc(g.spec+" via docker-proxy: not let through by dockmoat"), append(g.match, "-m", "mark", "!", "--mark", m+"/"+m, "-j", "DROP")...)
	}
	egressChecks(&ch, egress, fam, false)
	ch.add(rules.Desc("clear the mark"), "-j", "MARK", "--set-xmark", "0x0/"+m)
	return ch
}

// head starts the chains: DOCKMOAT for the bridges and INGRESS with the
// trusted sources.
func head(cfg config.Config, res policy.Result, fam rules.Family, bans bool) (OwnedChain, OwnedChain) {
	bridges, egress := res.Bridges, res.Egress
	main := OwnedChain{Name: ChainMain}
	bypass(&main, cfg)
	main.add(rules.Desc("replies and related traffic"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	for _, e := range egress {
		for _, f := range e.From {
			main.add(rules.Desc("egress of "+e.Container+": leaving docker network "+f.Bridge),
				"-s", f.Addr.String()+bits(fam), "-i", f.Bridge, "!", "-o", f.Bridge, "-g", ChainEgress)
		}
	}
	for _, b := range bridges {
		main.add(rules.Desc("leaving docker network "+b), "-i", b, "-g", ChainPass)
	}
	for _, b := range bridges {
		main.add(rules.Desc("entering docker network "+b), "-o", b, "-g", ChainIngress)
	}
	unseenNetworks(&main, bridges, res)
	main.add(rules.Desc("not into a docker network"), "-g", ChainPass)
	ing := OwnedChain{Name: ChainIngress}
	if bans {
		ing.add(rules.Desc("banned source, ipset "+BanSet(fam)), "-m", "set", "--match-set", BanSet(fam), "src", "-m", "conntrack", "--ctstate", "DNAT", "-j", "DROP")
	}
	dnatSources(&ing, cfg, fam, "-g", ChainPass)
	return main, ing
}

// dnatSources adds, for connections Docker DNATed, the drop of the deny
// sources and interfaces, then the trusted ones with their verdict (the
// pass, or the guard's RETURN).
func dnatSources(ing *OwnedChain, cfg config.Config, fam rules.Family, trusted ...string) {
	dnat := []string{"-m", "conntrack", "--ctstate", "DNAT"}
	for _, src := range rules.SortedPrefixes(cfg.DenySources) {
		if fam.Has(src.Addr()) {
			ing.add(rules.Desc("deny source "+src.String()), slices.Concat([]string{"-s", src.String()}, dnat, []string{"-j", "DROP"})...)
		}
	}
	for _, ifc := range cfg.DenyIfaces {
		ing.add(rules.Desc("deny interface "+ifc), slices.Concat([]string{"-i", iptIface(ifc)}, dnat, []string{"-j", "DROP"})...)
	}
	for _, src := range rules.SortedPrefixes(cfg.TrustedSources) {
		if fam.Has(src.Addr()) {
			ing.add(rules.Desc("trusted source "+src.String()), slices.Concat([]string{"-s", src.String()}, dnat, trusted)...)
		}
	}
	for _, ifc := range cfg.TrustedIfaces {
		ing.add(rules.Desc("trusted interface "+ifc), slices.Concat([]string{"-i", iptIface(ifc)}, dnat, trusted)...)
	}
}

// iptIface writes an interface of iface:NAME as iptables matches it: the
// glob's trailing * is iptables' +.
func iptIface(name string) string {
	if stem, ok := strings.CutSuffix(name, "*"); ok {
		return stem + "+"
	}
	return name
}

// srcSpec matches a source of rules.SourcesOf: its address, or the
// interface the connection arrived on.
func srcSpec(src string) []string {
	if ifc, ok := rules.IfaceSource(src); ok {
		return []string{"-i", iptIface(ifc)}
	}
	return []string{"-s", src}
}

// bypass is `dockmoat disable`: one rule first in each hooked chain that
// lets everything through (marked, so that the check lets it be), so
// Docker's own rules decide, while the rest stays installed and kept up
// to date for `dockmoat enable`.
func bypass(ch *OwnedChain, cfg config.Config) {
	if cfg.Disabled {
		ch.add(rules.Desc(rules.DisabledDesc), "-g", ChainPass)
	}
}

// unseenNetworks ends DOCKMOAT with rules for networks the policy does
// not name: one created while dockmoat is stopped, hung or failing must be
// closed too, so the installed rules cannot depend on knowing every
// bridge. Traffic leaving any default-named bridge returns as for a known
// one (containers keep talking out and to each other); new connections
// into one go to INGRESS, where no allow names them. Only Docker's own
// name patterns are matched (rules.DefaultBridges), so the user's bridges
// (virbr0, br0) and their own port forwards are not touched; the host's
// own br-* bridges (rules.ForeignBridges) are exempted by name first.
func unseenNetworks(main *OwnedChain, known []string, res policy.Result) {
	unseen := rules.UnseenBridges(known)
	foreignBridges(main, unseen, res.Foreign, ChainPass)
	unseenInterfaces(main, res)
	for _, b := range unseen {
		main.add(rules.Desc("leaving a docker network not seen yet "+rules.BridgePattern(b)), "-i", b, "-g", ChainPass)
	}
	for _, b := range unseen {
		main.add(rules.Desc("entering a docker network not seen yet "+rules.BridgePattern(b)), "-o", b, "-g", ChainIngress)
	}
}

// unseenInterfaces: a DNATed connection leaving by one of the host's
// interfaces is the host's port forward; one leaving by any other goes to
// the ingress policy (rules.HostOutIfaces): a network whose bridge has a
// name of its own, created while dockmoat was stopped, stays closed. They
// come before the br-+ catch-all for leaving, which a host's own br-lan
// would otherwise match on its way into such a network.
func unseenInterfaces(main *OwnedChain, res policy.Result) {
	if !res.HostOutKnown {
		return
	}
	for _, h := range res.HostOut {
		main.add(rules.Desc("into host interface "+h), "-o", h, "-g", ChainPass)
	}
	main.add(rules.Desc("published port into a new interface"), "-m", "conntrack", "--ctstate", "DNAT", "-g", ChainIngress)
}

// foreignBridges exempts the host's own br-* bridges from the catch-all
// patterns (dst): connections into one are the host's business (pass:
// RETURN in the guard, which has no check, or the PASS chain); from one
// into a Docker network, they are outside traffic and go to INGRESS.
func foreignBridges(ch *OwnedChain, dst, foreign []string, pass string) {
	flag, ingress := "-g", ChainIngress
	if pass == "RETURN" {
		flag = "-j"
	}
	for _, f := range foreign {
		ch.add(rules.Desc("into host bridge "+f+": not a docker network"), "-o", f, flag, pass)
	}
	for _, f := range foreign {
		for _, b := range dst {
			ch.add(rules.Desc("from host bridge "+f+" into docker networks "+rules.BridgePattern(b)), "-i", f, "-o", b, flag, ingress)
		}
	}
}

// addAllow renders one allow: the container's address and port, only
// connections Docker DNATed, and the published port the client used.
func addAllow(ch *OwnedChain, a policy.Allow, fam rules.Family) {
	b := a.Binding
	var spec []string
	if a.Source != "" {
		spec = srcSpec(a.Source)
	}
	spec = append(spec, "-d", a.Addr.String()+bits(fam), "-p", b.Proto, "-m", b.Proto,
		"--dport", strconv.Itoa(int(b.ContainerPort)),
		"-m", "conntrack", "--ctstate", "DNAT")
	if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
		spec = append(spec, "--ctorigdst", b.HostIP.Unmap().String()+bits(fam))
	}
	spec = append(spec, "--ctorigdstport", strconv.Itoa(int(b.HostPort)), "-g", ChainPass)
	ch.add(a.Describe(), spec...)
}

// bits is the host prefix length of a family.
func bits(fam rules.Family) string {
	if fam == rules.IPv6 {
		return "/128"
	}
	return "/32"
}

// portsChain is the published-port check of the set layout: consecutive
// ports as one range.
func portsChain(ranges []policy.PortRange) OwnedChain {
	ch := OwnedChain{Name: ChainPorts}
	for _, r := range ranges {
		ch.add(rules.Desc("allowed published ports "+r.String()+"/"+r.Proto), "-p", r.Proto, "-m", "conntrack", "--ctorigdstport", r.String(), "-g", ChainPass)
	}
	ch.add(rules.Desc("published port not allowed for this container"), "-j", ChainDeny)
	return ch
}

// setRules are the two INGRESS rules that look connections up in the
// family's sets and go on to the published-port check. Goto, so that a
// RETURN there ends INGRESS too (the connection is allowed).
func setRules(ing *OwnedChain, fam rules.Family) {
	open, from := SetName(policy.SetOpen, fam), SetName(policy.SetFrom, fam)
	ing.add(rules.Desc("allowed ports: set "+open), "-m", "set", "--match-set", open, "dst,dst",
		"-m", "conntrack", "--ctstate", "DNAT", "-g", ChainPorts)
	ing.add(rules.Desc("allowed ports by source: set "+from), "-m", "set", "--match-set", from, "dst,dst,src",
		"-m", "conntrack", "--ctstate", "DNAT", "-g", ChainPorts)
}

// inputChain renders DOCKMOAT-INPUT for every published binding (the
// docker-proxy path, rules/policy/proxy.go); ok is false when there are none
// (no chain, no hook).
func inputChain(cfg config.Config, res policy.Result, fam rules.Family, bans bool) (OwnedChain, bool) {
	bridges, in, egress := res.Bridges, res.Input, res.Egress
	if in.Empty() && len(egress) == 0 {
		return OwnedChain{}, false
	}
	ch := OwnedChain{Name: ChainInput}
	bypass(&ch, cfg)
	ch.add(rules.Desc("replies and related traffic"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	ch.add(rules.Desc("from the host itself"), "-i", "lo", "-g", ChainPass)
	for _, e := range egress {
		for _, f := range e.From {
			ch.add(rules.Desc("egress of "+e.Container+": to the host"), "-s", f.Addr.String()+bits(fam), "-i", f.Bridge, "-g", ChainEgress)
		}
	}
	for _, b := range bridges {
		ch.add(rules.Desc("from docker network "+b), "-i", b, "-g", ChainPass)
	}
	// No catch-all for networks not seen yet here: the host's own br-*
	// bridges match it too (rules.ForeignBridges), and a container on a
	// network the next pass will name only meets the published ports
	// below, closed until then.
	if bans {
		// Unmarked, as a denied source below.
		ch.add(rules.Desc("banned source, ipset "+BanSet(fam)+": not let through"), "-m", "set", "--match-set", BanSet(fam), "src", "-j", "RETURN")
	}
	for _, src := range rules.SortedPrefixes(cfg.DenySources) {
		if fam.Has(src.Addr()) {
			// Unmarked: DOCKMOAT-INPUT-CHECK drops it on a published
			// port; the host's other ports are not dockmoat's business.
			ch.add(rules.Desc("deny source "+src.String()+": not let through"), "-s", src.String(), "-j", "RETURN")
		}
	}
	for _, ifc := range cfg.DenyIfaces {
		ch.add(rules.Desc("deny interface "+ifc+": not let through"), "-i", iptIface(ifc), "-j", "RETURN")
	}
	for _, src := range rules.SortedPrefixes(cfg.TrustedSources) {
		if fam.Has(src.Addr()) {
			ch.add(rules.Desc("trusted source "+src.String()), "-s", src.String(), "-g", ChainPass)
		}
	}
	for _, ifc := range cfg.TrustedIfaces {
		ch.add(rules.Desc("trusted interface "+ifc), "-i", iptIface(ifc), "-g", ChainPass)
	}
	limitRules(&ch, res.Limits, fam, false)
	for _, d := range in.Sourced {
		for _, src := range rules.SourcesOf(d, fam) {
			text := fmt.Sprintf("allow %s %d/%s via docker-proxy from %s", d.Container, d.Binding.HostPort, d.Binding.Proto, src)
			ch.add(rules.Desc(text), append(srcSpec(src), append(proxySpec(d.Binding, fam), "-g", ChainPass)...)...)
		}
	}
	for _, g := range runGroups(in.Open, fam) {
		ch.add(rules.Desc("allow "+g.spec+" via docker-proxy"), append(g.match, "-g", ChainPass)...)
	}
	for _, g := range runGroups(in.All, fam) {
		if cfg.Observe {
			observe(&ch, g.match)
			continue
		}
		ch.add(rules.Desc(g.spec+" via docker-proxy: not allowed"), append(g.match, "-j", "DROP")...)
	}
	return ch, true
}

// observeTail, in observe mode, lets a DNATed new connection that the
// policy refuses through (marked for the check), its conntrack entry
// marked for the daemon to count; anything else still falls to the drop.
func observeTail(tail *OwnedChain, cfg config.Config) {
	if cfg.Observe {
		observe(tail, []string{"-m", "conntrack", "--ctstate", "DNAT"})
	}
}

// observe marks the connections spec matches and lets them through.
func observe(ch *OwnedChain, spec []string) {
	m := markHex(rules.ObserveMark)
	ch.add(rules.Desc(rules.ObserveDesc), append(slices.Clone(spec), "-j", "CONNMARK", "--set-xmark", m+"/"+m)...)
	ch.add(rules.Desc(rules.ObserveDesc), append(slices.Clone(spec), "-g", ChainPass)...)
}

// egressChain renders DOCKMOAT-EGRESS (reached by goto): per deny
// container address, its DNS resolvers and allowed destinations pass (the
// connection goes on to Docker's rules, or to INPUT's), the rest is
// rejected, so the container's connect fails at once rather than after a
// timeout.
func egressChain(cfg config.Config, egress []rules.Egress, fam rules.Family) OwnedChain {
	ch := OwnedChain{Name: ChainEgress}
	if fam == rules.IPv6 {
		for _, t := range rules.NeighbourDiscovery {
			ch.add(rules.Desc("neighbour discovery: icmpv6 type "+t.Name+" on the link"), "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", strconv.Itoa(t.Type),
				"-m", "hl", "--hl-eq", strconv.Itoa(t.HopLimit), "-g", ChainPass)
		}
	}
	for _, e := range egress {
		for _, f := range e.From {
			src := []string{"-s", f.Addr.String() + bits(fam)}
			for _, p := range e.Passes() {
				for _, spec := range destSpecs(p.Dest) {
					ch.add(rules.Desc("egress of "+e.Container+": "+p.What+" "+p.Dest.String()), append(slices.Clone(src), append(spec, "-g", ChainPass)...)...)
				}
			}
			if cfg.LogBlocked {
				ch.add(rules.Desc("egress of "+e.Container+": log refused"), append(slices.Clone(src), "-m", "limit", "--limit", "10/min", "--limit-burst", "20",
					"-j", "LOG", "--log-prefix", rules.EgressLogPrefix)...)
			}
			ch.add(rules.Desc("egress of "+e.Container+": refused"), append(src, "-j", "REJECT")...)
		}
	}
	return ch
}

// destSpecs matches one allowed destination: one spec per protocol.
func destSpecs(d config.EgressDest) [][]string {
	dst := []string{"-d", d.Prefix.String()}
	protos := d.Protos()
	if protos == nil {
		return [][]string{dst}
	}
	var out [][]string
	for _, p := range protos {
		spec := append(slices.Clone(dst), "-p", p)
		if !d.AllPorts() {
			ports := strconv.Itoa(int(d.Lo))
			if d.Hi != d.Lo {
				ports += ":" + strconv.Itoa(int(d.Hi))
			}
			spec = append(spec, "-m", p, "--dport", ports)
		}
		out = append(out, spec)
	}
	return out
}

// proxySpec matches new connections to a binding as docker-proxy gets
// them: the host address (when bound to one) and the published port.
func proxySpec(b rules.PortBinding, fam rules.Family) []string {
	return runSpec(policy.PortRun{HostIP: b.HostIP, PortRange: policy.PortRange{Proto: b.Proto, Lo: b.HostPort, Hi: b.HostPort}}, fam)
}

// runSpec matches new connections to a run of published ports.
// runGroup is one rule's match for runs of published ports of one
// protocol on one host address, and what its comment says of them.
type runGroup struct {
	spec  string
	match []string
}

// multiportMax is how many ports one multiport match takes (a range
// counts as two).
const multiportMax = 15

// runGroups matches runs by protocol and host address (policy.GroupRuns),
// up to multiportMax ports in one rule: scattered proxied ports cost a
// fifteenth of the rules they did (1,000 of them were 1,000 rules per
// chain, at 0.74× of no rules; BENCHMARKS.md). A run alone in its group
// is the rule it always was.
func runGroups(runs []policy.PortRun, fam rules.Family) []runGroup {
	var out []runGroup
	for _, rs := range policy.GroupRuns(runs) {
		if len(rs) == 1 {
			out = append(out, runGroup{rs[0].Spec(), runSpec(rs[0], fam)})
			continue
		}
		for len(rs) > 0 {
			n, width := 0, 0
			for n < len(rs) && width+portWidth(rs[n]) <= multiportMax {
				width += portWidth(rs[n])
				n++
			}
			out = append(out, runGroup{policy.GroupSpec(rs[:n]), multiportSpec(rs[:n], fam)})
			rs = rs[n:]
		}
	}
	return out
}

func portWidth(r policy.PortRun) int {
	if r.Hi > r.Lo {
		return 2
	}
	return 1
}

// multiportSpec matches runs of one protocol and address in one rule.
func multiportSpec(rs []policy.PortRun, fam rules.Family) []string {
	spec := runSpec(rs[0], fam)
	ports := make([]string, len(rs))
	for i, r := range rs {
		ports[i] = r.PortRange.String()
	}
	// runSpec ends "-m PROTO --dport PORTS".
	return append(spec[:len(spec)-4], "-m", "multiport", "--dports", strings.Join(ports, ","))
}

func runSpec(r policy.PortRun, fam rules.Family) []string {
	var spec []string
	if r.HostIP.IsValid() && !r.HostIP.IsUnspecified() {
		spec = append(spec, "-d", r.HostIP.Unmap().String()+bits(fam))
	}
	return append(spec, "-p", r.Proto, "-m", r.Proto, "--dport", r.PortRange.String())
}

// GuardRuleset is the boot-time ruleset of `dockmoat guard`, installed
// before Docker starts, when neither the bridges nor the containers are
// known yet. It closes every new connection Docker would DNAT to a
// container, and everything routed into docker0 or a default-named br-*
// bridge, except from trusted sources. The host's own br-* bridges present
// now (foreign, rules.ForeignBridges) are exempted by name first: what
// comes from them is outside traffic. `dockmoat run` replaces it with the
// exact ruleset on its first pass.
func GuardRuleset(cfg config.Config, fam rules.Family, foreign []string) Ruleset {
	main := OwnedChain{Name: ChainMain}
	main.add(rules.Desc("replies and related traffic"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	foreignBridges(&main, rules.DefaultBridges, foreign, "RETURN")
	for _, f := range foreign {
		main.add(rules.Desc("guard: published ports, from host bridge "+f), "-i", f, "-m", "conntrack", "--ctstate", "DNAT", "-j", ChainIngress)
	}
	for _, b := range rules.DefaultBridges {
		main.add(rules.Desc("guard: leaving docker network "+b), "-i", b, "-j", "RETURN")
	}
	main.add(rules.Desc("guard: published ports"), "-m", "conntrack", "--ctstate", "DNAT", "-j", ChainIngress)
	for _, b := range rules.DefaultBridges {
		main.add(rules.Desc("guard: entering docker network "+b), "-o", b, "-j", ChainIngress)
	}
	ing := OwnedChain{Name: ChainIngress}
	dnatSources(&ing, cfg, fam, "-j", "RETURN")
	ing.add(rules.Desc("guard: default deny until dockmoat run"), "-j", "DROP")
	return Ruleset{Family: fam, Chains: []OwnedChain{main, ing}}
}

// GuardInput is the guard's DOCKMOAT-INPUT: new connections to the
// published ports of dockmoat's last pass (runs) are dropped on the
// docker-proxy path, except from the host itself, from docker0 (and the
// other br-* bridges when the host has none of its own) and from trusted
// sources; ok is false when there are none. Every other port of the host
// is never matched.
func GuardInput(cfg config.Config, fam rules.Family, foreign []string, runs []policy.PortRun) (OwnedChain, bool) {
	if len(runs) == 0 {
		return OwnedChain{}, false
	}
	ch := OwnedChain{Name: ChainInput}
	ch.add(rules.Desc("replies and related traffic"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	ch.add(rules.Desc("from the host itself"), "-i", "lo", "-j", "RETURN")
	bridges := []string{"docker0"}
	if len(foreign) == 0 {
		bridges = rules.DefaultBridges
	}
	for _, b := range bridges {
		ch.add(rules.Desc("guard: from docker network "+b), "-i", b, "-j", "RETURN")
	}
	for _, src := range rules.SortedPrefixes(cfg.TrustedSources) {
		if fam.Has(src.Addr()) {
			ch.add(rules.Desc("trusted source "+src.String()), "-s", src.String(), "-j", "RETURN")
		}
	}
	for _, ifc := range cfg.TrustedIfaces {
		ch.add(rules.Desc("trusted interface "+ifc), "-i", iptIface(ifc), "-j", "RETURN")
	}
	for _, g := range runGroups(runs, fam) {
		ch.add(rules.Desc("guard: "+g.spec+" via docker-proxy, until dockmoat run"), append(g.match, "-j", "DROP")...)
	}
	return ch, true
}

// RuleLine renders one owned rule as an `-A` line.
func RuleLine(chain string, r OwnedRule) string {
	return iptsave.RuleLine(chain, r.Spec, r.Comment())
}

// rendered is a plan's Ruleset with the jumps that reach it: what `plan`
// shows and metrics count (netfilter.Rendered), and what Apply installs.
type rendered struct {
	rs        Ruleset
	hookIn    string // "" when input-only
	inputHook bool
}

// Lines implements netfilter.Rendered.
func (r rendered) Lines() []string {
	var out []string
	if r.hookIn != "" {
		out = append(out, "-I "+r.hookIn+" 1 "+strings.Join(HookSpec(), " "), "-I "+r.hookIn+" 2 "+strings.Join(CheckSpec(), " "))
	}
	if r.inputHook {
		out = append(out, "-I "+InputHookChain+" 1 "+strings.Join(InputHookSpec(), " "),
			"-I "+InputHookChain+" 2 "+strings.Join(InputCheckSpec(), " "))
	}
	for _, ch := range r.rs.Chains {
		for _, rule := range ch.Rules {
			out = append(out, RuleLine(ch.Name, rule))
		}
	}
	return out
}

// Count implements netfilter.Rendered.
func (r rendered) Count() int {
	n := 0
	if r.hookIn != "" {
		n += 2 // the hook and the check's jump
	}
	if r.inputHook {
		n += 2
	}
	for _, ch := range r.rs.Chains {
		n += len(ch.Rules)
	}
	return n
}

// RulesetOf is the Ruleset of a plan this backend made (empty otherwise).
func RulesetOf(p netfilter.FamilyPlan) Ruleset {
	if r, ok := p.Rules.(rendered); ok {
		return r.rs
	}
	return Ruleset{Family: p.Family}
}
