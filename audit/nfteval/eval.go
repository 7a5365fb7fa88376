// Package nfteval evaluates a whole nftables ruleset (Docker's nftables
// backend, and everything else on the host: table inet dockmoat, ufw or
// firewalld tables, the user's own), as `nft -j list ruleset` prints it,
// for the first packet of a new connection, with nftables' semantics:
// every base chain on the hook runs in priority order; accept ends only
// its own base chain (the packet goes on to the next), drop is final; a
// regular chain is reached by jump, goto or a verdict map. Anything it
// cannot decide makes the verdict Unknown. Ruleset is what package audit
// evaluates; RuleText words a rule for reports.
package nfteval

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

type nftEval struct {
	live   *nftjson.Ruleset
	fam    rules.Family
	budget int
	path   []verdict.Step
	// accepts lists the accept (or policy) of each base chain passed.
	accepts []verdict.Step
	// mark and markKnown: the packet mark as the statements so far set
	// it (dockmoat's bit starts known and clear; see Packet.Mark).
	mark, markKnown uint32
}

// Eval runs p through the filter base chains of hook ("prerouting",
// "forward", "input") for the packet's family.
func Eval(live *nftjson.Ruleset, hook string, fam rules.Family, p verdict.Packet) verdict.Verdict {
	e := &nftEval{live: live, fam: fam, budget: 8192, markKnown: rules.PassMark}
	var bases []*nftjson.Chain
	for _, c := range live.Chains {
		if c.Hook == hook && c.Type == "filter" && e.familyOf(c.Family) {
			bases = append(bases, c)
		}
	}
	slices.SortStableFunc(bases, func(a, b *nftjson.Chain) int { return a.Prio - b.Prio })
	for _, c := range bases {
		v, fell := e.chain(c, p, 0)
		if fell {
			v = e.policy(c)
		}
		switch v.Result {
		case verdict.Accept:
			e.accepts = append(e.accepts, verdict.Step{Chain: v.Chain, Rule: v.Rule})
			continue
		case verdict.Drop, verdict.Unknown:
			v.Path = e.path
			return v
		}
	}
	v := verdict.Verdict{Result: verdict.Accept, Chain: hook, Rule: "no base chain dropped it"}
	if n := len(e.accepts); n > 0 {
		v.Chain, v.Rule = e.accepts[n-1].Chain, e.accepts[n-1].Rule
	}
	v.Path = e.path
	v.Returned = acceptsAsRules(e.accepts)
	return v
}

func (e *nftEval) familyOf(f string) bool {
	switch f {
	case "inet":
		return true
	case "ip":
		return e.fam == rules.IPv4
	case "ip6":
		return e.fam == rules.IPv6
	}
	return false
}

func (e *nftEval) policy(c *nftjson.Chain) verdict.Verdict {
	e.path = append(e.path, verdict.Step{Chain: c.Label(), Rule: "policy " + c.Policy})
	if c.Policy == "drop" {
		return verdict.Verdict{Result: verdict.Drop, Chain: c.Label(), Rule: "policy drop"}
	}
	return verdict.Verdict{Result: verdict.Accept, Chain: c.Label(), Rule: "policy accept"}
}

// chain evaluates one chain; fell reports it ran off its end (or hit
// return) without a verdict.
func (e *nftEval) chain(c *nftjson.Chain, p verdict.Packet, depth int) (v verdict.Verdict, fell bool) {
	if depth > 32 {
		return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Why: "chains nest too deep (a loop?)"}, false
	}
	for _, r := range c.Rules {
		if e.budget--; e.budget < 0 {
			return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Why: "ruleset too complex to evaluate"}, false
		}
		v, next, fell := e.rule(c, r, p, depth)
		if next {
			continue
		}
		return v, fell
	}
	if c.Hook == "" {
		e.path = append(e.path, verdict.Step{Chain: c.Label(), Rule: "end of chain: back to the caller"})
	}
	return verdict.Verdict{}, true
}

// rule evaluates one rule's statements in order: matches until one
// fails (next rule), then its verdict. next: go on with the chain.
func (e *nftEval) rule(c *nftjson.Chain, r nftjson.Rule, p verdict.Packet, depth int) (v verdict.Verdict, next, fell bool) {
	text := RuleText(r)
	for _, st := range r.Expr {
		for kind, body := range st {
			switch kind {
			case "match":
				ok, known := e.match(c, body, p)
				if !known {
					return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Rule: text, Why: "cannot evaluate " + exprText(body) + " in " + c.Label()}, false, false
				}
				if !ok {
					return verdict.Verdict{}, true, false
				}
			case "limit", "quota":
				// A first packet is under any rate or quota: "limit rate
				// over …" (inv) does not match it.
				if m, _ := body.(map[string]any); m["inv"] == true {
					return verdict.Verdict{}, true, false
				}
			case "mangle":
				e.mangle(body)
			case "set":
				// A set update (a meter: `update @s { ip saddr limit rate
				// over … }`) goes on only when the element's statements do;
				// a first packet is under the limit, so "over" stops it.
				if overLimit(body) {
					return verdict.Verdict{}, true, false
				}
			case "counter", "log", "notrack", "ct helper", "queue":
				// Non-terminating statements.
			case "accept":
				e.path = append(e.path, verdict.Step{Chain: c.Label(), Rule: text})
				return verdict.Verdict{Result: verdict.Accept, Chain: c.Label(), Rule: text}, false, false
			case "drop", "reject":
				e.path = append(e.path, verdict.Step{Chain: c.Label(), Rule: text})
				return verdict.Verdict{Result: verdict.Drop, Chain: c.Label(), Rule: text}, false, false
			case "return":
				e.path = append(e.path, verdict.Step{Chain: c.Label(), Rule: text})
				return verdict.Verdict{}, false, true
			case "jump", "goto":
				target, _ := body.(map[string]any)["target"].(string)
				return e.jump(c, target, kind == "goto", text, p, depth)
			case "vmap":
				return e.vmap(c, body, text, p, depth)
			default:
				return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Rule: text, Why: "statement " + kind + " in " + c.Label() + " cannot be evaluated"}, false, false
			}
		}
	}
	return verdict.Verdict{}, true, false
}

// overLimit reports whether a set statement carries "limit rate over"
// (or a quota over) for its element.
func overLimit(body any) bool {
	m, _ := body.(map[string]any)
	stmts, _ := m["stmt"].([]any)
	for _, st := range stmts {
		sm, _ := st.(map[string]any)
		for _, kind := range []string{"limit", "quota"} {
			if l, ok := sm[kind].(map[string]any); ok && l["inv"] == true {
				return true
			}
		}
	}
	return false
}

// mangle applies "meta mark set meta mark | BITS" and "… & BITS" (the
// forms dockmoat writes) and "meta mark set N"; any other form of it
// leaves every bit of the mark unknown. Other keys are not followed.
func (e *nftEval) mangle(body any) {
	m, _ := body.(map[string]any)
	if !isMetaMark(m["key"]) {
		return
	}
	if n, ok := m["value"].(float64); ok {
		e.mark, e.markKnown = uint32(n), 0xffffffff
		return
	}
	v, _ := m["value"].(map[string]any)
	for op, args := range v {
		a, _ := args.([]any)
		if len(a) != 2 || !isMetaMark(a[0]) {
			break
		}
		n, ok := a[1].(float64)
		if !ok {
			break
		}
		switch op {
		case "|":
			e.mark, e.markKnown = e.mark|uint32(n), e.markKnown|uint32(n)
			return
		case "&":
			e.mark, e.markKnown = e.mark&uint32(n), e.markKnown|^uint32(n)
			return
		}
	}
	e.markKnown = 0
}

func isMetaMark(x any) bool {
	m, _ := x.(map[string]any)
	meta, _ := m["meta"].(map[string]any)
	return meta["key"] == "mark"
}

func (e *nftEval) jump(c *nftjson.Chain, target string, isGoto bool, text string, p verdict.Packet, depth int) (verdict.Verdict, bool, bool) {
	sub := e.live.Chain(c.Family, c.Table, target)
	if sub == nil {
		return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Rule: text, Why: "chain " + target + " does not exist"}, false, false
	}
	e.path = append(e.path, verdict.Step{Chain: c.Label(), Rule: text})
	v, fell := e.chain(sub, p, depth+1)
	if fell {
		// jump returns here (next rule); goto returns from this chain.
		return verdict.Verdict{}, !isGoto, isGoto
	}
	return v, false, false
}

// vmap looks the key up in a verdict map; no element: next rule.
func (e *nftEval) vmap(c *nftjson.Chain, body any, text string, p verdict.Packet, depth int) (verdict.Verdict, bool, bool) {
	m, _ := body.(map[string]any)
	key, known := e.value(m["key"], p)
	if !known {
		return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Rule: text, Why: "cannot evaluate the key of " + text}, false, false
	}
	elems, ok := e.elems(c, m["data"])
	if !ok {
		return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Rule: text, Why: "unknown map in " + text}, false, false
	}
	for _, el := range elems {
		pair, _ := el.([]any)
		if len(pair) != 2 {
			continue
		}
		if hit, known := elemMatch(key, pair[0]); !known {
			return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Rule: text, Why: "cannot compare with an element of " + text}, false, false
		} else if !hit {
			continue
		}
		vd, _ := pair[1].(map[string]any)
		for kind, vb := range vd {
			switch kind {
			case "accept":
				e.path = append(e.path, verdict.Step{Chain: c.Label(), Rule: text})
				return verdict.Verdict{Result: verdict.Accept, Chain: c.Label(), Rule: text}, false, false
			case "drop":
				e.path = append(e.path, verdict.Step{Chain: c.Label(), Rule: text})
				return verdict.Verdict{Result: verdict.Drop, Chain: c.Label(), Rule: text}, false, false
			case "jump", "goto":
				target, _ := vb.(map[string]any)["target"].(string)
				return e.jump(c, target, kind == "goto", text+" ("+valueString(pair[0])+")", p, depth)
			}
		}
		return verdict.Verdict{Result: verdict.Unknown, Chain: c.Label(), Rule: text, Why: "verdict map element " + valueString(pair[1])}, false, false
	}
	return verdict.Verdict{}, true, false
}

// elems resolves a set reference ("@name") or an anonymous set.
func (e *nftEval) elems(c *nftjson.Chain, ref any) ([]any, bool) { return setElems(e.live, c, ref) }

// setElems resolves a set reference ("@name", scoped by the chain's
// table) or an anonymous set to its elements; ok is false for anything
// else, or a set that does not exist.
func setElems(live *nftjson.Ruleset, c *nftjson.Chain, ref any) ([]any, bool) {
	switch r := ref.(type) {
	case string:
		if name, ok := strings.CutPrefix(r, "@"); ok {
			s := live.Sets[nftjson.SetKey(c.Family, c.Table, name)]
			if s == nil {
				return nil, false
			}
			return s.Elems, true
		}
	case map[string]any:
		if set, ok := r["set"].([]any); ok {
			return set, true
		}
	}
	return nil, false
}

// match evaluates {"op", "left", "right"}.
func (e *nftEval) match(c *nftjson.Chain, body any, p verdict.Packet) (ok, known bool) {
	m, _ := body.(map[string]any)
	op, _ := m["op"].(string)
	left, known := e.value(m["left"], p)
	if !known {
		return false, false
	}
	if left == nil { // e.g. "ip saddr" of an IPv6 packet: the match fails
		return false, true
	}
	right := m["right"]
	if _, isFlags := left.([]string); isFlags {
		if s, ok := right.(string); ok { // ct state new, tcp flags … == syn
			right = []any{s}
		}
	}
	var hit bool
	switch r := right.(type) {
	case string:
		if strings.HasPrefix(r, "@") {
			elems, ok := e.elems(c, r)
			if !ok {
				return false, false
			}
			hit, known = anyElem(left, elems)
		} else {
			hit, known = elemMatch(left, r)
		}
	case map[string]any:
		if set, ok := r["set"].([]any); ok {
			hit, known = anyElem(left, set)
		} else {
			hit, known = elemMatch(left, r)
		}
	case []any: // flags: ct state { established, related }, tcp flags
		hit, known = flagsHit(left, r, op)
	default:
		hit, known = elemMatch(left, r)
	}
	if !known {
		return false, false
	}
	switch op {
	case "==", "in":
		return hit, true
	case "!=":
		return !hit, true
	}
	return false, false
}

func anyElem(left any, elems []any) (bool, bool) {
	for _, el := range elems {
		if pair, ok := el.([]any); ok && len(pair) == 2 { // a map element
			el = pair[0]
		}
		hit, known := elemMatch(left, el)
		if !known {
			return false, false
		}
		if hit {
			return true, true
		}
	}
	return false, true
}

// flagsHit: for "in", any of the listed flags is set; for "==", exactly
// these flags are.
func flagsHit(left any, list []any, op string) (bool, bool) {
	have, ok := left.([]string)
	if !ok {
		return false, false
	}
	want := map[string]bool{}
	for _, f := range list {
		s, ok := f.(string)
		if !ok {
			return false, false
		}
		want[s] = true
	}
	if op == "in" {
		return slices.ContainsFunc(have, func(h string) bool { return want[h] }), true
	}
	if len(want) != len(have) {
		return false, true
	}
	return !slices.ContainsFunc(have, func(h string) bool { return !want[h] }), true
}

// value extracts what a left-hand expression reads from the packet:
// string (interface, protocol, type), netip.Addr, uint16 (port), []string
// (flags, states), []any (a concatenation). nil means "not in this
// packet" (the match fails); known false: cannot be evaluated.
func (e *nftEval) value(x any, p verdict.Packet) (any, bool) {
	m, ok := x.(map[string]any)
	if !ok {
		return nil, false
	}
	for kind, body := range m {
		b, _ := body.(map[string]any)
		switch kind {
		case "meta":
			return metaValue(b["key"], p, e.fam)
		case "payload":
			return payloadValue(b, p, e.fam)
		case "ct":
			return ctValue(b, p)
		case "fib":
			if res, _ := b["result"].(string); res == "type" {
				if p.DstLocal {
					return "local", true
				}
				return "unicast", true
			}
		case "concat":
			parts, _ := body.([]any)
			out := make([]any, len(parts))
			for i, part := range parts {
				v, known := e.value(part, p)
				if !known {
					return nil, false
				}
				if v == nil {
					return nil, true
				}
				out[i] = v
			}
			return out, true
		case "&":
			args, _ := body.([]any)
			if len(args) == 2 && isMetaMark(args[0]) {
				// meta mark & BITS: known when every bit tested is.
				n, ok := args[1].(float64)
				if !ok || uint32(n)&^e.markKnown != 0 {
					return nil, false
				}
				return float64(e.mark & uint32(n)), true
			}
			if len(args) == 2 {
				v, known := e.value(args[0], p)
				if known && v == nil {
					return nil, true // not a TCP packet
				}
				mask, isList := args[1].([]any)
				if flags, isFlags := v.([]string); known && isFlags && isList {
					var out []string
					for _, f := range flags {
						if slices.Contains(mask, any(f)) {
							out = append(out, f)
						}
					}
					return out, true
				}
			}
		}
	}
	return nil, false
}

func metaValue(key any, p verdict.Packet, fam rules.Family) (any, bool) {
	switch key {
	case "iifname":
		return p.In, true
	case "oifname":
		return p.Out, true
	case "l4proto":
		return p.Proto, true
	case "protocol": // the ethertype
		if fam == rules.IPv6 {
			return "ip6", true
		}
		return "ip", true
	case "nfproto":
		if fam == rules.IPv6 {
			return "ipv6", true
		}
		return "ipv4", true
	}
	return nil, false
}

func payloadValue(b map[string]any, p verdict.Packet, fam rules.Family) (any, bool) {
	proto, _ := b["protocol"].(string)
	field, _ := b["field"].(string)
	switch proto {
	case "ip", "ip6":
		if (proto == "ip") != (fam == rules.IPv4) {
			return nil, true
		}
		switch field {
		case "saddr":
			return p.Src, true
		case "daddr":
			return p.Dst, true
		case "protocol", "nexthdr": // ip protocol tcp, ip6 nexthdr udp
			return p.Proto, true
		}
	case "icmp", "icmpv6":
		// Audit's first packets are TCP, UDP or SCTP: an ICMP header
		// (dockmoat's egress chain lets neighbour discovery through)
		// is never in them.
		return nil, true
	case "tcp", "udp", "sctp", "th":
		if proto != "th" && proto != p.Proto {
			return nil, true
		}
		switch field {
		case "sport":
			return p.SPort, true
		case "dport":
			return p.DPort, true
		case "flags":
			if p.Proto != "tcp" {
				return nil, true
			}
			flags := p.Flags
			if flags == "" {
				flags = "SYN"
			}
			return strings.Split(strings.ToLower(flags), ","), true
		}
	}
	return nil, false
}

func ctValue(b map[string]any, p verdict.Packet) (any, bool) {
	key, _ := b["key"].(string)
	dir, _ := b["dir"].(string)
	switch {
	case key == "state":
		var out []string
		for _, s := range p.States {
			if s != "DNAT" && s != "SNAT" { // those are ct status
				out = append(out, strings.ToLower(s))
			}
		}
		return out, true
	case key == "status":
		if slices.Contains(p.States, "DNAT") {
			return []string{"dnat"}, true
		}
		return []string{}, true
	case key == "proto-dst" && dir == "original":
		return p.OrigDstPort, true
	case key == "daddr" && dir == "original", key == "ip daddr" && dir == "original", key == "ip6 daddr" && dir == "original":
		return p.OrigDst, true
	case key == "saddr" && dir == "original", key == "ip saddr" && dir == "original", key == "ip6 saddr" && dir == "original":
		return p.Src, true
	}
	return nil, false
}

// elemMatch compares a packet value with one set element or literal.
func elemMatch(v any, el any) (bool, bool) {
	switch x := el.(type) {
	case map[string]any:
		if c, ok := x["concat"].([]any); ok {
			parts, ok := v.([]any)
			if !ok || len(parts) != len(c) {
				return false, false
			}
			for i := range c {
				hit, known := elemMatch(parts[i], c[i])
				if !known || !hit {
					return false, known
				}
			}
			return true, true
		}
		if inner, ok := x["elem"].(map[string]any); ok {
			return elemMatch(v, inner["val"])
		}
		if pf, ok := x["prefix"].(map[string]any); ok {
			a, ok1 := v.(netip.Addr)
			addr, err := netip.ParseAddr(fmt.Sprint(pf["addr"]))
			bits, ok2 := pf["len"].(float64)
			if !ok1 || err != nil || !ok2 {
				return false, false
			}
			return netip.PrefixFrom(addr, int(bits)).Contains(a.Unmap()), true
		}
		if r, ok := x["range"].([]any); ok && len(r) == 2 {
			return inRangeValue(v, r[0], r[1])
		}
		return false, false
	case string:
		switch pv := v.(type) {
		case string:
			if strings.HasSuffix(x, "*") {
				return strings.HasPrefix(pv, strings.TrimSuffix(x, "*")), true
			}
			return pv == x, true
		case netip.Addr:
			a, err := netip.ParseAddr(x)
			return err == nil && a == pv.Unmap(), err == nil
		case uint16:
			n, err := strconv.ParseUint(x, 10, 16)
			return err == nil && uint16(n) == pv, err == nil
		case []string:
			return slices.Contains(pv, x), true
		}
	case float64:
		if pv, ok := v.(uint16); ok {
			return float64(pv) == x, true
		}
		if pv, ok := v.(float64); ok { // meta mark & BITS
			return pv == x, true
		}
	}
	return false, false
}

func inRangeValue(v, lo, hi any) (bool, bool) {
	switch pv := v.(type) {
	case uint16:
		l, ok1 := lo.(float64)
		h, ok2 := hi.(float64)
		return float64(pv) >= l && float64(pv) <= h, ok1 && ok2
	case netip.Addr:
		l, err1 := netip.ParseAddr(fmt.Sprint(lo))
		h, err2 := netip.ParseAddr(fmt.Sprint(hi))
		if err1 != nil || err2 != nil {
			return false, false
		}
		return pv.Unmap().Compare(l) >= 0 && pv.Unmap().Compare(h) <= 0, true
	}
	return false, false
}

// acceptsAsRules hands the base chains' accepts to reason() the way
// iptables RETURNs are: dockmoat's allow is one of them.
func acceptsAsRules(steps []verdict.Step) []iptsave.Rule {
	out := make([]iptsave.Rule, 0, len(steps))
	for _, s := range steps {
		out = append(out, iptsave.Rule{Chain: s.Chain, Raw: s.Rule, Args: []string{"-m", "comment", "--comment", commentOf(s.Rule)}})
	}
	return out
}
