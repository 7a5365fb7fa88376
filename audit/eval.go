package audit

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/ipt"
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
	Via []ipt.Rule
	// Why explains an Unknown result.
	Why string
	// Returned lists the rules whose RETURN the packet took on its way,
	// e.g. the dockmoat allow that handed it back to Docker's ACCEPT.
	Returned []ipt.Rule
}

type evaluator struct {
	t        *ipt.Table
	budget   int
	returned []ipt.Rule
}

// Eval runs the packet through chain (FORWARD or INPUT) of t.
func Eval(t *ipt.Table, chain string, p Packet) Verdict {
	e := &evaluator{t: t, budget: 4096}
	v, ret := e.chain(chain, 0, p, nil, 0)
	if ret { // RETURN from a builtin chain: its policy decides
		if ch := t.Chains[chain]; ch != nil {
			v = e.policy(ch, nil)
		}
	}
	v.Returned = e.returned
	return v
}

// chain evaluates a chain from rule index start. ret reports that the
// chain returned (fell off its end or hit RETURN) without a verdict.
func (e *evaluator) chain(name string, start int, p Packet, via []ipt.Rule, depth int) (Verdict, bool) {
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
		m, why := match(r, p, e.t.Sets)
		if m == matchUnknown {
			// Evaluate both ways from here; if they agree, the match we
			// cannot evaluate did not matter.
			yes, yret := e.apply(r, i, p, via, depth)
			no, nret := e.chain(name, i+1, p, via, depth)
			switch {
			case yret && nret:
				return Verdict{}, true
			case yret == nret && yes.Result == no.Result && yes.Result != Unknown:
				return yes, yret
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
		return e.policy(ch, via), false
	}
	return Verdict{}, true
}

// apply takes rule i as matched, then goes on with the chain if its
// target does not decide.
func (e *evaluator) apply(r ipt.Rule, i int, p Packet, via []ipt.Rule, depth int) (Verdict, bool) {
	v, ret, cont := e.target(r, p, via, depth)
	if !cont {
		return v, ret
	}
	return e.chain(r.Chain, i+1, p, via, depth)
}

func (e *evaluator) policy(ch *ipt.Chain, via []ipt.Rule) Verdict {
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
func (e *evaluator) target(r ipt.Rule, p Packet, via []ipt.Rule, depth int) (v Verdict, ret, cont bool) {
	tgt, isGoto := targetOf(r.Args)
	switch tgt {
	case "":
		return Verdict{}, false, true // counting rule
	case "ACCEPT":
		return Verdict{Result: Accept, Chain: r.Chain, Rule: r.Raw, Via: via}, false, false
	case "DROP", "REJECT":
		return Verdict{Result: Drop, Chain: r.Chain, Rule: r.Raw, Via: via}, false, false
	case "RETURN":
		e.returned = append(e.returned, r)
		return Verdict{}, true, false
	case "LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "MARK", "CONNMARK", "CLASSIFY", "DSCP", "TOS":
		return Verdict{}, false, true
	}
	if _, ok := e.t.Chains[tgt]; !ok {
		return Verdict{Result: Unknown, Chain: r.Chain, Rule: r.Raw, Via: via, Why: "target " + tgt + " cannot be evaluated"}, false, false
	}
	sub, subRet := e.chain(tgt, 0, p, append(slices.Clone(via), r), depth+1)
	if subRet {
		if isGoto {
			// -g: returning from the goto target returns from this chain.
			return Verdict{}, true, false
		}
		return Verdict{}, false, true
	}
	return sub, false, false
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

// match evaluates a rule's matches (everything before -j/-g).
func match(r ipt.Rule, p Packet, sets map[string][]rules.SetElem) (matchResult, string) {
	args := r.Args
	result := matchYes
	var why string
	neg := false
	module := ""
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
		var ok bool
		known := true
		switch a {
		case "-m", "--match":
			module = val()
			switch module {
			case "tcp", "udp", "sctp", "conntrack", "state", "comment", "multiport", "limit", "hashlimit",
				"addrtype", "recent", "pkttype", "icmp", "icmp6", "iprange", "rt", "ipv6header", "set":
			default:
				result, why = matchUnknown, fmt.Sprintf("match -m %s in chain %s cannot be evaluated", module, r.Chain)
			}
			continue
		case "-s", "--source":
			ok, known = inPrefixes(p.Src, val())
		case "-d", "--destination":
			ok, known = inPrefixes(p.Dst, val())
		case "-i", "--in-interface":
			ok = ifaceMatch(val(), p.In)
		case "-o", "--out-interface":
			ok = ifaceMatch(val(), p.Out)
		case "-p", "--protocol":
			ok = protoMatch(val(), p.Proto)
		case "--dport", "--destination-port":
			ok, known = portIn(val(), p.DPort)
		case "--sport", "--source-port":
			ok, known = portIn(val(), p.SPort)
		case "--dports", "--destination-ports":
			ok, known = portList(val(), p.DPort)
		case "--sports", "--source-ports":
			ok, known = portList(val(), p.SPort)
		case "--ports":
			v := val()
			d, k1 := portList(v, p.DPort)
			s, k2 := portList(v, p.SPort)
			ok, known = d || s, k1 && k2
		case "--match-set":
			name, flags := val(), val()
			if ok, known = inSet(sets, name, flags, p); !known && result != matchUnknown {
				result, why = matchUnknown, fmt.Sprintf("-m set --match-set %s %s in chain %s: not one of dockmoat's sets, cannot be evaluated", name, flags, r.Chain)
				neg = false
				continue
			}
		case "--ctstate", "--state":
			ok = stateMatch(val(), p.States)
		case "--ctorigdstport":
			ok, known = portIn(val(), p.OrigDstPort)
		case "--ctorigdst":
			ok, known = inPrefixes(p.OrigDst, val())
		case "--ctorigsrc":
			ok, known = inPrefixes(p.Src, val())
		case "--ctproto":
			ok = protoMatch(val(), p.Proto)
		case "--comment", "--limit", "--limit-burst", "--log-prefix", "--log-level":
			val()
			ok = true
		case "--syn":
			ok = p.Proto == "tcp"
		case "--tcp-flags":
			mask, comp := val(), val()
			ok = flagsMatch(mask, comp)
		case "--dst-type":
			ok = addrType(val(), p.DstLocal)
		case "--src-type":
			ok = addrType(val(), false)
		case "--limit-iface-in", "--limit-iface-out", "--rsource", "--rdest":
			ok = true
		case "--set":
			ok = true
		case "--update", "--rcheck":
			ok = false // a first connection has no history
		case "--name", "--seconds", "--hitcount", "--mask":
			val()
			ok = true
		case "--pkt-type":
			ok = val() == "unicast"
		case "--rt-type", "--rt-segsleft", "--rt-len", "--header":
			val()
			ok = false // a first TCP/UDP packet carries no routing or other extension header
		case "--icmp-type", "--icmpv6-type":
			val()
			ok = false
		case "--src-range":
			ok, known = inRange(p.Src, val())
		case "--dst-range":
			ok, known = inRange(p.Dst, val())
		default:
			if strings.HasPrefix(a, "--hashlimit") {
				val() // every hashlimit option takes a value; a first packet passes
				ok = true
				break
			}
			if module != "" && result != matchUnknown {
				result, why = matchUnknown, fmt.Sprintf("option %s of -m %s in chain %s cannot be evaluated", a, module, r.Chain)
			} else if result != matchUnknown {
				result, why = matchUnknown, fmt.Sprintf("option %s in chain %s cannot be evaluated", a, r.Chain)
			}
			neg = false
			continue
		}
		if !known {
			if result != matchUnknown {
				result, why = matchUnknown, fmt.Sprintf("cannot evaluate %s in chain %s", a, r.Chain)
			}
			neg = false
			continue
		}
		if neg {
			ok = !ok
			neg = false
		}
		if !ok {
			return matchNo, ""
		}
	}
	return result, why
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

// flagsMatch: the first packet of a TCP connection carries SYN alone.
func flagsMatch(mask, comp string) bool {
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
	ms, cs := set(mask), set(comp)
	for f := range ms {
		if (f == "SYN") != cs[f] {
			return false
		}
	}
	return true
}

func addrType(spec string, local bool) bool {
	for _, t := range strings.Split(strings.ToUpper(spec), ",") {
		switch t {
		case "LOCAL":
			if local {
				return true
			}
		case "UNICAST":
			return true
		}
	}
	return false
}
