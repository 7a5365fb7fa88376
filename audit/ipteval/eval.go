// Package ipteval evaluates iptables-save text for the first packet of a
// new connection: rule by rule through a builtin chain of the filter (or
// raw) table, following jumps, gotos and RETURNs, ipsets and the packet
// mark, with iptables' semantics. It is pure (text in, verdict out) and
// says "unknown" rather than guess when it meets a match or target it
// cannot evaluate. Ruleset is one family's tables as package audit
// evaluates them.
package ipteval

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/setelem"
)

type evaluator struct {
	t        *iptsave.Table
	budget   int
	returned []iptsave.Rule
	path     []verdict.Step
	// mark and markKnown: the packet mark as the rules so far set it.
	mark, markKnown uint32
}

// Eval runs the packet through chain (FORWARD or INPUT) of t.
func Eval(t *iptsave.Table, chain string, p verdict.Packet) verdict.Verdict {
	e := &evaluator{t: t, budget: 4096, markKnown: rules.PassMark}
	v, ret := e.chain(chain, 0, p, nil, 0)
	if ret { // RETURN from a builtin chain: its policy decides
		if ch := t.Chains[chain]; ch != nil {
			e.step(chain, "policy "+ch.Policy)
			v = e.policy(ch, nil)
		}
	}
	v.Returned, v.Path = e.returned, e.path
	return v
}

func (e *evaluator) step(chain, rule string) {
	e.path = append(e.path, verdict.Step{Chain: chain, Rule: rule})
}

// chain evaluates a chain from rule index start. ret reports that the
// chain returned (fell off its end or hit RETURN) without a verdict.
func (e *evaluator) chain(name string, start int, p verdict.Packet, via []iptsave.Rule, depth int) (verdict.Verdict, bool) {
	ch := e.t.Chains[name]
	if ch == nil {
		return verdict.Verdict{Result: verdict.Unknown, Chain: name, Why: "chain " + name + " is referenced but does not exist"}, false
	}
	if depth > 32 {
		return verdict.Verdict{Result: verdict.Unknown, Chain: name, Why: "chains nest too deep (a loop?)"}, false
	}
	for i := start; i < len(ch.Rules); i++ {
		e.budget--
		if e.budget < 0 {
			return verdict.Verdict{Result: verdict.Unknown, Chain: name, Why: "ruleset too complex to evaluate"}, false
		}
		r := ch.Rules[i]
		p.Mark, p.MarkKnown = e.mark, e.markKnown
		m, why := match(r, p, e.t.Sets)
		if m == matchUnknown {
			// Evaluate both ways from here; if they agree, the match we
			// cannot evaluate did not matter (the path told is the "no" way).
			mark, marked, pm, pk := len(e.path), len(e.returned), e.mark, e.markKnown
			yes, yret := e.apply(r, i, p, via, depth)
			e.path, e.returned, e.mark, e.markKnown = e.path[:mark], e.returned[:marked], pm, pk
			no, nret := e.chain(name, i+1, p, via, depth)
			switch {
			case yret && nret:
				return verdict.Verdict{}, true
			case yret == nret && yes.Result == no.Result && yes.Result != verdict.Unknown:
				return no, nret
			}
			return verdict.Verdict{Result: verdict.Unknown, Chain: name, Rule: r.Raw, Via: via, Why: why}, false
		}
		if m == matchNo {
			continue
		}
		v, ret, cont := e.target(r, p, via, depth)
		if cont {
			continue
		}
		return v, ret
	}
	if ch.Policy != "-" && ch.Policy != "" {
		e.step(name, "policy "+ch.Policy)
		return e.policy(ch, via), false
	}
	e.step(name, "end of chain: back to the caller")
	return verdict.Verdict{}, true
}

// apply takes rule i as matched, then goes on with the chain if its
// target does not decide.
func (e *evaluator) apply(r iptsave.Rule, i int, p verdict.Packet, via []iptsave.Rule, depth int) (verdict.Verdict, bool) {
	v, ret, cont := e.target(r, p, via, depth)
	if !cont {
		return v, ret
	}
	return e.chain(r.Chain, i+1, p, via, depth)
}

func (e *evaluator) policy(ch *iptsave.Chain, via []iptsave.Rule) verdict.Verdict {
	switch ch.Policy {
	case "ACCEPT":
		return verdict.Verdict{Result: verdict.Accept, Chain: ch.Name, Rule: "policy ACCEPT", Via: via}
	case "DROP":
		return verdict.Verdict{Result: verdict.Drop, Chain: ch.Name, Rule: "policy DROP", Via: via}
	}
	return verdict.Verdict{Result: verdict.Unknown, Chain: ch.Name, Rule: "policy " + ch.Policy, Why: "unknown policy " + ch.Policy}
}

// target applies a matched rule's target. cont means "go on with the next
// rule" (non-terminating target, or a called chain that returned).
func (e *evaluator) target(r iptsave.Rule, p verdict.Packet, via []iptsave.Rule, depth int) (v verdict.Verdict, ret, cont bool) {
	tgt, isGoto := targetOf(r.Args)
	switch tgt {
	case "MARK":
		e.setMark(r.Args)
		return verdict.Verdict{}, false, true
	case "", "LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "CONNMARK", "CLASSIFY", "DSCP", "TOS":
		return verdict.Verdict{}, false, true // counting or non-terminating: not a move
	}
	e.step(r.Chain, r.Raw)
	switch tgt {
	case "ACCEPT":
		return verdict.Verdict{Result: verdict.Accept, Chain: r.Chain, Rule: r.Raw, Via: via}, false, false
	case "DROP", "REJECT":
		return verdict.Verdict{Result: verdict.Drop, Chain: r.Chain, Rule: r.Raw, Via: via}, false, false
	case "RETURN":
		e.returned = append(e.returned, r)
		return verdict.Verdict{}, true, false
	}
	if _, ok := e.t.Chains[tgt]; !ok {
		return verdict.Verdict{Result: verdict.Unknown, Chain: r.Chain, Rule: r.Raw, Via: via, Why: "target " + tgt + " cannot be evaluated"}, false, false
	}
	sub, subRet := e.chain(tgt, 0, p, append(slices.Clone(via), r), depth+1)
	if subRet {
		if isGoto {
			// -g: returning from the goto target returns from this chain,
			// as a RETURN here would (dockmoat's allows go to its pass
			// chain): the rule is recorded as one.
			e.returned = append(e.returned, r)
			return verdict.Verdict{}, true, false
		}
		return verdict.Verdict{}, false, true
	}
	return sub, false, false
}

// setMark applies MARK --set-xmark VALUE/MASK (the form iptables-save
// prints): the mask's bits are cleared, then VALUE is xored in, and they
// are known from then on. Any other form leaves every bit unknown.
func (e *evaluator) setMark(args []string) {
	i := slices.Index(args, "--set-xmark")
	if i < 0 || i+1 >= len(args) {
		e.markKnown = 0
		return
	}
	v, m, ok := markSpec(args[i+1])
	if !ok {
		e.markKnown = 0
		return
	}
	e.mark = (e.mark &^ m) ^ v
	e.markKnown |= m
}

// markSpec parses VALUE[/MASK] (the mask defaults to every bit).
func markSpec(s string) (v, m uint32, ok bool) {
	vs, ms, hasMask := strings.Cut(s, "/")
	v64, err := strconv.ParseUint(vs, 0, 32)
	if err != nil {
		return 0, 0, false
	}
	m64 := uint64(0xffffffff)
	if hasMask {
		if m64, err = strconv.ParseUint(ms, 0, 32); err != nil {
			return 0, 0, false
		}
	}
	return uint32(v64), uint32(m64), true
}

// markOpt evaluates -m mark --mark VALUE[/MASK]: known only when every
// bit of the mask is.
func markOpt(p verdict.Packet, spec string) (bool, bool) {
	v, m, ok := markSpec(spec)
	if !ok || m&^p.MarkKnown != 0 {
		return false, false
	}
	return p.Mark&m == v, true
}

func targetOf(args []string) (string, bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-j" || args[i] == "--jump" {
			return args[i+1], false
		}
		if args[i] == "-g" || args[i] == "--goto" {
			return args[i+1], true
		}
	}
	return "", false
}

type matchResult int

const (
	matchNo matchResult = iota
	matchYes
	matchUnknown
)

// knownModules are the -m modules whose options match understands.
var knownModules = map[string]bool{"tcp": true, "udp": true, "sctp": true, "conntrack": true, "state": true,
	"comment": true, "multiport": true, "limit": true, "hashlimit": true, "addrtype": true, "recent": true,
	"pkttype": true, "icmp": true, "icmp6": true, "iprange": true, "rt": true, "ipv6header": true, "set": true, "mark": true}

// valueOpt evaluates an option with one argument v; known is false when
// it cannot be decided for p.
type valueOpt func(p verdict.Packet, v string) (ok, known bool)

func yes(ok bool) (bool, bool) { return ok, true }

func always(verdict.Packet, string) (bool, bool) { return true, true }

// never: a first TCP/UDP packet carries no routing or other extension
// header and is no ICMP.
func never(verdict.Packet, string) (bool, bool) { return false, true }

var (
	srcOpt   valueOpt = func(p verdict.Packet, v string) (bool, bool) { return inPrefixes(p.Src, v) }
	dstOpt   valueOpt = func(p verdict.Packet, v string) (bool, bool) { return inPrefixes(p.Dst, v) }
	inOpt    valueOpt = func(p verdict.Packet, v string) (bool, bool) { return yes(ifaceMatch(v, p.In)) }
	outOpt   valueOpt = func(p verdict.Packet, v string) (bool, bool) { return yes(ifaceMatch(v, p.Out)) }
	protoOpt valueOpt = func(p verdict.Packet, v string) (bool, bool) { return yes(protoMatch(v, p.Proto)) }
	dportOpt valueOpt = func(p verdict.Packet, v string) (bool, bool) { return portIn(v, p.DPort) }
	sportOpt valueOpt = func(p verdict.Packet, v string) (bool, bool) { return portIn(v, p.SPort) }
	dportsOp valueOpt = func(p verdict.Packet, v string) (bool, bool) { return portList(v, p.DPort) }
	sportsOp valueOpt = func(p verdict.Packet, v string) (bool, bool) { return portList(v, p.SPort) }
	stateOpt valueOpt = func(p verdict.Packet, v string) (bool, bool) { return yes(stateMatch(v, p.States)) }
)

// valueOpts are the options of one argument match understands.
var valueOpts = map[string]valueOpt{
	"-s": srcOpt, "--source": srcOpt, "-d": dstOpt, "--destination": dstOpt,
	"-i": inOpt, "--in-interface": inOpt, "-o": outOpt, "--out-interface": outOpt,
	"-p": protoOpt, "--protocol": protoOpt, "--ctproto": protoOpt,
	"--dport": dportOpt, "--destination-port": dportOpt, "--sport": sportOpt, "--source-port": sportOpt,
	"--dports": dportsOp, "--destination-ports": dportsOp, "--sports": sportsOp, "--source-ports": sportsOp,
	"--ports": func(p verdict.Packet, v string) (bool, bool) {
		d, k1 := portList(v, p.DPort)
		s, k2 := portList(v, p.SPort)
		return d || s, k1 && k2
	},
	"--ctstate": stateOpt, "--state": stateOpt,
	"--ctorigdstport": func(p verdict.Packet, v string) (bool, bool) { return portIn(v, p.OrigDstPort) },
	"--ctorigdst":     func(p verdict.Packet, v string) (bool, bool) { return inPrefixes(p.OrigDst, v) },
	"--ctorigsrc":     srcOpt,
	"--comment":       always, "--limit": always, "--limit-burst": always, "--log-prefix": always, "--log-level": always,
	"--name": always, "--seconds": always, "--hitcount": always, "--mask": always,
	"--dst-type": func(p verdict.Packet, v string) (bool, bool) { return yes(addrType(v, p.DstLocal, p.Dst.Is6())) },
	"--src-type": func(p verdict.Packet, v string) (bool, bool) { return yes(addrType(v, false, p.Src.Is6())) },
	"--pkt-type": func(_ verdict.Packet, v string) (bool, bool) { return yes(v == "unicast") },
	"--rt-type":  never, "--rt-segsleft": never, "--rt-len": never, "--header": never,
	"--icmp-type": never, "--icmpv6-type": never,
	"--src-range": func(p verdict.Packet, v string) (bool, bool) { return inRange(p.Src, v) },
	"--dst-range": func(p verdict.Packet, v string) (bool, bool) { return inRange(p.Dst, v) },
}

// flagOpts are the options without an argument match understands.
var flagOpts = map[string]func(p verdict.Packet) bool{
	"--syn":            func(p verdict.Packet) bool { return p.Proto == "tcp" && flagsMatch("FIN,SYN,RST,ACK", "SYN", p.Flags) },
	"--limit-iface-in": func(verdict.Packet) bool { return true }, "--limit-iface-out": func(verdict.Packet) bool { return true },
	"--rsource": func(verdict.Packet) bool { return true }, "--rdest": func(verdict.Packet) bool { return true },
	"--set":    func(verdict.Packet) bool { return true },
	"--update": func(p verdict.Packet) bool { return p.Recent }, // audit tries clients with and without history
	"--rcheck": func(p verdict.Packet) bool { return p.Recent },
	"--remove": func(p verdict.Packet) bool { return p.Recent },
}

// match evaluates a rule's matches (everything before -j/-g).
func match(r iptsave.Rule, p verdict.Packet, sets map[string][]setelem.Elem) (matchResult, string) {
	args := r.Args
	result, why := matchYes, ""
	unknown := func(reason string) {
		if result != matchUnknown {
			result, why = matchUnknown, reason
		}
	}
	neg, module := false, ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-j" || a == "-g" || a == "--jump" || a == "--goto" {
			break
		}
		if a == "!" {
			neg = true
			continue
		}
		val := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		if a == "-m" || a == "--match" {
			if module = val(); !knownModules[module] {
				unknown(fmt.Sprintf("match -m %s in chain %s cannot be evaluated", module, r.Chain))
			}
			continue
		}
		ok, reason := option(a, module, r.Chain, val, p, sets)
		if reason != "" {
			unknown(reason)
			neg = false
			continue
		}
		if neg {
			ok, neg = !ok, false
		}
		if !ok {
			return matchNo, ""
		}
	}
	return result, why
}

// option evaluates one option of a rule; unknown, when not empty, says
// why it cannot be decided for p.
func option(a, module, chain string, val func() string, p verdict.Packet, sets map[string][]setelem.Elem) (ok bool, unknown string) {
	if f, has := flagOpts[a]; has {
		return f(p), ""
	}
	if f, has := valueOpts[a]; has {
		ok, known := f(p, val())
		if !known {
			return false, fmt.Sprintf("cannot evaluate %s in chain %s", a, chain)
		}
		return ok, ""
	}
	switch {
	case a == "--mark" && module == "mark": // not connmark's --mark
		ok, known := markOpt(p, val())
		if !known {
			return false, fmt.Sprintf("-m mark --mark in chain %s: the packet mark is not known here", chain)
		}
		return ok, ""
	case a == "--match-set":
		name, flags := val(), val()
		ok, known := inSet(sets, name, flags, p)
		if !known {
			return false, fmt.Sprintf("-m set --match-set %s %s in chain %s: not one of dockmoat's sets, cannot be evaluated", name, flags, chain)
		}
		return ok, ""
	case a == "--tcp-flags":
		mask, comp := val(), val()
		return flagsMatch(mask, comp, p.Flags), ""
	case strings.HasPrefix(a, "--hashlimit"):
		val() // every hashlimit option takes a value; a first packet is
		// under any limit: "--hashlimit-above" does not match it
		return a != "--hashlimit-above", ""
	case module != "":
		return false, fmt.Sprintf("option %s of -m %s in chain %s cannot be evaluated", a, module, chain)
	}
	return false, fmt.Sprintf("option %s in chain %s cannot be evaluated", a, chain)
}

// inSet evaluates `-m set --match-set NAME FLAGS` for dockmoat's own sets
// (read by the caller); any other set cannot be evaluated.
func inSet(sets map[string][]setelem.Elem, name, flags string, p verdict.Packet) (bool, bool) {
	elems, ok := sets[name]
	if !ok {
		return false, false
	}
	var withSrc bool
	switch flags {
	case "dst,dst":
	case "dst,dst,src":
		withSrc = true
	case "src": // a set of sources alone (dockmoat's ban set)
		return slices.ContainsFunc(elems, func(e setelem.Elem) bool { return e.Src.IsValid() && e.Src.Contains(p.Src.Unmap()) }), true
	default:
		return false, false
	}
	for _, e := range elems {
		if e.Addr == p.Dst.Unmap() && e.Proto == p.Proto && e.Port == p.DPort &&
			(!withSrc || (e.Src.IsValid() && e.Src.Contains(p.Src.Unmap()))) {
			return true, true
		}
	}
	return false, true
}

func inPrefixes(a netip.Addr, spec string) (bool, bool) {
	if !a.IsValid() {
		return false, false
	}
	for _, s := range strings.Split(spec, ",") {
		var pfx netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			pfx, err = netip.ParsePrefix(s)
			if err != nil {
				// iptables may print a dotted netmask: 10.0.0.0/255.0.0.0
				return false, false
			}
		} else {
			addr, err := netip.ParseAddr(s)
			if err != nil {
				return false, false
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		if pfx.Contains(a) {
			return true, true
		}
	}
	return false, true
}

func inRange(a netip.Addr, spec string) (bool, bool) {
	lo, hi, ok := strings.Cut(spec, "-")
	l, err1 := netip.ParseAddr(lo)
	h, err2 := netip.ParseAddr(hi)
	if !ok || err1 != nil || err2 != nil {
		return false, false
	}
	return a.Compare(l) >= 0 && a.Compare(h) <= 0, true
}

func ifaceMatch(spec, iface string) bool {
	if strings.HasSuffix(spec, "+") {
		return strings.HasPrefix(iface, strings.TrimSuffix(spec, "+")) && iface != ""
	}
	return spec == iface
}

var protoNumbers = map[string]string{"6": "tcp", "17": "udp", "132": "sctp"}

func protoMatch(spec, proto string) bool {
	spec = strings.ToLower(spec)
	if n, ok := protoNumbers[spec]; ok {
		spec = n
	}
	return spec == "all" || spec == "0" || spec == proto
}

func portIn(spec string, port uint16) (bool, bool) {
	lo, hi, isRange := strings.Cut(spec, ":")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return false, false
	}
	h := l
	if isRange {
		if hi == "" {
			h = 65535
		} else if h, err = strconv.ParseUint(hi, 10, 16); err != nil {
			return false, false
		}
	}
	return uint64(port) >= l && uint64(port) <= h, true
}

func portList(spec string, port uint16) (bool, bool) {
	for _, s := range strings.Split(spec, ",") {
		ok, known := portIn(s, port)
		if !known {
			return false, false
		}
		if ok {
			return true, true
		}
	}
	return false, true
}

func stateMatch(spec string, states []string) bool {
	for _, s := range strings.Split(spec, ",") {
		if slices.Contains(states, strings.ToUpper(s)) {
			return true
		}
	}
	return false
}

// flagsMatch: the packet's flags, masked, equal comp.
func flagsMatch(mask, comp, flags string) bool {
	if flags == "" {
		flags = "SYN"
	}
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, f := range strings.Split(strings.ToUpper(s), ",") {
			if f == "ALL" {
				for _, x := range []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG"} {
					m[x] = true
				}
				continue
			}
			if f != "NONE" {
				m[f] = true
			}
		}
		return m
	}
	ms, cs, fs := set(mask), set(comp), set(flags)
	for f := range ms {
		if fs[f] != cs[f] {
			return false
		}
	}
	return true
}

// addrType is -m addrtype for a unicast address, local to this host or
// not. The kernel asks IPv4's routing table, where one of this host's
// addresses is LOCAL and not UNICAST; for IPv6 it asks the address's own
// type, and a global address is UNICAST, local or not (xt_addrtype's
// match_type6).
func addrType(spec string, local, v6 bool) bool {
	for _, t := range strings.Split(strings.ToUpper(spec), ",") {
		switch t {
		case "LOCAL":
			if local {
				return true
			}
		case "UNICAST":
			if v6 || !local {
				return true
			}
		}
	}
	return false
}
