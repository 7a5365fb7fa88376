package audit

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/iptsave"

	"github.com/dockmoat/dockmoat/rules"
)

// Packet is the first packet of a new connection, as the filter table sees
// it after Docker's DNAT (FORWARD path) or without DNAT (INPUT path).
type Packet struct {
	Src, Dst     netip.Addr
	Proto        string // tcp, udp, sctp
	SPort, DPort uint16
	In, Out      string   // interfaces; Out is "" on the INPUT path
	States       []string // conntrack states: NEW, plus DNAT when DNATed
	OrigDst      netip.Addr
	OrigDstPort  uint16
	DstLocal     bool // the destination is an address of this host
	// Flags are a TCP first packet's flags: "SYN", or SYN with PSH
	// and/or URG (variants.go); "" means "SYN".
	Flags string
	// Recent says the client has history in every -m recent list (a
	// client can knock first): --rcheck and --update match.
	Recent bool
	// Mark is the packet mark as far as known: the bits of MarkKnown.
	// The evaluator keeps it (MARK --set-xmark); dockmoat's own bit
	// (rules.PassMark) starts known and clear, any other bit unknown (a
	// mangle rule may have set it).
	Mark, MarkKnown uint32
}

// Result of an evaluation.
type Result int

const (
	Unknown Result = iota
	Accept
	Drop
)

func (r Result) String() string {
	return [...]string{"unknown", "accept", "drop"}[r]
}

// Verdict tells what happened to the packet and which rule decided.
type Verdict struct {
	Result Result
	Chain  string // chain of the deciding rule (or policy)
	Rule   string // the deciding rule's text, "policy ACCEPT" for a policy
	// Via lists the rules that jumped into Chain, outermost first.
	Via []iptsave.Rule
	// Why explains an Unknown result.
	Why string
	// Returned lists the rules whose RETURN the packet took on its way,
	// innermost first (a goto whose chain returned counts), e.g. the
	// dockmoat allow that handed it back to Docker's ACCEPT.
	Returned []iptsave.Rule
	// Path is every rule that sent the packet somewhere (a jump, goto,
	// RETURN, or the verdict), and every chain it fell off, in order:
	// what `audit --explain` prints.
	Path []Step
}

// Step is one move of the packet: the rule (its text as iptables-save
// prints it) or "end of chain" / "policy …" in Chain.
type Step struct {
	Chain string `json:"chain"`
	Rule  string `json:"rule"`
}

type evaluator struct {
	t        *iptsave.Table
	budget   int
	returned []iptsave.Rule
	path     []Step
	// mark and markKnown: the packet mark as the rules so far set it.
	mark, markKnown uint32
}

// Eval runs the packet through chain (FORWARD or INPUT) of t.
func Eval(t *iptsave.Table, chain string, p Packet) Verdict {
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

func (e *evaluator) step(chain, rule string) { e.path = append(e.path, Step{Chain: chain, Rule: rule}) }

// chain evaluates a chain from rule index start. ret reports that the
// chain returned (fell off its end or hit RETURN) without a verdict.
func (e *evaluator) chain(name string, start int, p Packet, via []iptsave.Rule, depth int) (Verdict, bool) {
	ch := e.t.Chains[name]
	if ch == nil {
		return Verdict{Result: Unknown, Chain: name, Why: "chain " + name + " is referenced but does not exist"}, false
	}
	if depth > 32 {
		return Verdict{Result: Unknown, Chain: name, Why: "chains nest too deep (a loop?)"}, false
	}
	for i := start; i < len(ch.Rules); i++ {
		e.budget--
		if e.budget < 0 {
			return Verdict{Result: Unknown, Chain: name, Why: "ruleset too complex to evaluate"}, false
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
				return Verdict{}, true
			case yret == nret && yes.Result == no.Result && yes.Result != Unknown:
				return no, nret
			}
			return Verdict{Result: Unknown, Chain: name, Rule: r.Raw, Via: via, Why: why}, false
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
	return Verdict{}, true
}

// apply takes rule i as matched, then goes on with the chain if its
// target does not decide.
func (e *evaluator) apply(r iptsave.Rule, i int, p Packet, via []iptsave.Rule, depth int) (Verdict, bool) {
	v, ret, cont := e.target(r, p, via, depth)
	if !cont {
		return v, ret
	}
	return e.chain(r.Chain, i+1, p, via, depth)
}

func (e *evaluator) policy(ch *iptsave.Chain, via []iptsave.Rule) Verdict {
	switch ch.Policy {
	case "ACCEPT":
		return Verdict{Result: Accept, Chain: ch.Name, Rule: "policy ACCEPT", Via: via}
	case "DROP":
		return Verdict{Result: Drop, Chain: ch.Name, Rule: "policy DROP", Via: via}
	}
	return Verdict{Result: Unknown, Chain: ch.Name, Rule: "policy " + ch.Policy, Why: "unknown policy " + ch.Policy}
}

// target applies a matched rule's target. cont means "go on with the next
// rule" (non-terminating target, or a called chain that returned).
func (e *evaluator) target(r iptsave.Rule, p Packet, via []iptsave.Rule, depth int) (v Verdict, ret, cont bool) {
	tgt, isGoto := targetOf(r.Args)
	switch tgt {
	case "MARK":
		e.setMark(r.Args)
		return Verdict{}, false, true
	case "", "LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "CONNMARK", "CLASSIFY", "DSCP", "TOS":
		return Verdict{}, false, true // counting or non-terminating: not a move
	}
	e.step(r.Chain, r.Raw)
	switch tgt {
	case "ACCEPT":
		return Verdict{Result: Accept, Chain: r.Chain, Rule: r.Raw, Via: via}, false, false
	case "DROP", "REJECT":
		return Verdict{Result: Drop, Chain: r.Chain, Rule: r.Raw, Via: via}, false, false
	case "RETURN":
		e.returned = append(e.returned, r)
		return Verdict{}, true, false
	}
	if _, ok := e.t.Chains[tgt]; !ok {
		return Verdict{Result: Unknown, Chain: r.Chain, Rule: r.Raw, Via: via, Why: "target " + tgt + " cannot be evaluated"}, false, false
	}
	sub, subRet := e.chain(tgt, 0, p, append(slices.Clone(via), r), depth+1)
	if subRet {
		if isGoto {
			// -g: returning from the goto target returns from this chain,
			// as a RETURN here would (dockmoat's allows go to its pass
			// chain): the rule is recorded as one.
			e.returned = append(e.returned, r)
			return Verdict{}, true, false
		}
		return Verdict{}, false, true
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
func markOpt(p Packet, spec string) (bool, bool) {
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
type valueOpt func(p Packet, v string) (ok, known bool)

func yes(ok bool) (bool, bool) { return ok, true }

func always(Packet, string) (bool, bool) { return true, true }

// never: a first TCP/UDP packet carries no routing or other extension
// header and is no ICMP.
func never(Packet, string) (bool, bool) { return false, true }

var (
	srcOpt   valueOpt = func(p Packet, v string) (bool, bool) { return inPrefixes(p.Src, v) }
	dstOpt   valueOpt = func(p Packet, v string) (bool, bool) { return inPrefixes(p.Dst, v) }
	inOpt    valueOpt = func(p Packet, v string) (bool, bool) { return yes(ifaceMatch(v, p.In)) }
	outOpt   valueOpt = func(p Packet, v string) (bool, bool) { return yes(ifaceMatch(v, p.Out)) }
	protoOpt valueOpt = func(p Packet, v string) (bool, bool) { return yes(protoMatch(v, p.Proto)) }
	dportOpt valueOpt = func(p Packet, v string) (bool, bool) { return portIn(v, p.DPort) }
	sportOpt valueOpt = func(p Packet, v string) (bool, bool) { return portIn(v, p.SPort) }
	dportsOp valueOpt = func(p Packet, v string) (bool, bool) { return portList(v, p.DPort) }
	sportsOp valueOpt = func(p Packet, v string) (bool, bool) { return portList(v, p.SPort) }
	stateOpt valueOpt = func(p Packet, v string) (bool, bool) { return yes(stateMatch(v, p.States)) }
)

// valueOpts are the options of one argument match understands.
var valueOpts = map[string]valueOpt{
	"-s": srcOpt, "--source": srcOpt, "-d": dstOpt, "--destination": dstOpt,
	"-i": inOpt, "--in-interface": inOpt, "-o": outOpt, "--out-interface": outOpt,
	"-p": protoOpt, "--protocol": protoOpt, "--ctproto": protoOpt,
	"--dport": dportOpt, "--destination-port": dportOpt, "--sport": sportOpt, "--source-port": sportOpt,
	"--dports": dportsOp, "--destination-ports": dportsOp, "--sports": sportsOp, "--source-ports": sportsOp,
	"--ports": func(p Packet, v string) (bool, bool) {
		d, k1 := portList(v, p.DPort)
		s, k2 := portList(v, p.SPort)
		return d || s, k1 && k2
	},
	"--ctstate": stateOpt, "--state": stateOpt,
	"--ctorigdstport": func(p Packet, v string) (bool, bool) { return portIn(v, p.OrigDstPort) },
	"--ctorigdst":     func(p Packet, v string) (bool, bool) { return inPrefixes(p.OrigDst, v) },
	"--ctorigsrc":     srcOpt,
	"--comment":       always, "--limit": always, "--limit-burst": always, "--log-prefix": always, "--log-level": always,
	"--name": always, "--seconds": always, "--hitcount": always, "--mask": always,
	"--dst-type": func(p Packet, v string) (bool, bool) { return yes(addrType(v, p.DstLocal, p.Dst.Is6())) },
	"--src-type": func(p Packet, v string) (bool, bool) { return yes(addrType(v, false, p.Src.Is6())) },
	"--pkt-type": func(_ Packet, v string) (bool, bool) { return yes(v == "unicast") },
	"--rt-type":  never, "--rt-segsleft": never, "--rt-len": never, "--header": never,
	"--icmp-type": never, "--icmpv6-type": never,
	"--src-range": func(p Packet, v string) (bool, bool) { return inRange(p.Src, v) },
	"--dst-range": func(p Packet, v string) (bool, bool) { return inRange(p.Dst, v) },
}

// flagOpts are the options without an argument match understands.
var flagOpts = map[string]func(p Packet) bool{
	"--syn":            func(p Packet) bool { return p.Proto == "tcp" && flagsMatch("FIN,SYN,RST,ACK", "SYN", p.Flags) },
	"--limit-iface-in": func(Packet) bool { return true }, "--limit-iface-out": func(Packet) bool { return true },
	"--rsource": func(Packet) bool { return true }, "--rdest": func(Packet) bool { return true },
	"--set":    func(Packet) bool { return true },
	"--update": func(p Packet) bool { return p.Recent }, // audit tries clients with and without history
	"--rcheck": func(p Packet) bool { return p.Recent },
	"--remove": func(p Packet) bool { return p.Recent },
}

// match evaluates a rule's matches (everything before -j/-g).
func match(r iptsave.Rule, p Packet, sets map[string][]rules.SetElem) (matchResult, string) {
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
func option(a, module, chain string, val func() string, p Packet, sets map[string][]rules.SetElem) (ok bool, unknown string) {
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
func inSet(sets map[string][]rules.SetElem, name, flags string, p Packet) (bool, bool) {
	elems, ok := sets[name]
	if !ok {
		return false, false
	}
	var withSrc bool
	switch flags {
	case "dst,dst":
	case "dst,dst,src":
		withSrc = true
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
