package nfteval

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

// Ruleset is the whole nftables ruleset as one family sees it
// (verdict.Ruleset).
type Ruleset struct {
	Live *nftjson.Ruleset
	Fam  rules.Family
}

// Eval implements verdict.Ruleset.
func (r Ruleset) Eval(hook string, p verdict.Packet) verdict.Verdict {
	return Eval(r.Live, hook, r.Fam, p)
}

// DNAT implements verdict.Ruleset: a rule of a nat chain that DNATs the
// published port to a container's address and port (Docker's
// nat-prerouting-and-output).
func (r Ruleset) DNAT(b rules.PortBinding, target func(netip.Addr) bool) (netip.Addr, bool) {
	e := nftEval{fam: r.Fam}
	for _, ch := range r.Live.Chains {
		if !e.familyOf(ch.Family) {
			continue // table ip's DNAT does not apply to IPv6 clients
		}
		for _, rule := range ch.Rules {
			addr, port, ok := dnatTo(rule)
			if !ok || port != b.ContainerPort || !matchesDport(rule, b.HostPort) {
				continue
			}
			if r.Fam.Has(addr) && target(addr) {
				return addr, true
			}
		}
	}
	return netip.Addr{}, false
}

func dnatTo(r nftjson.Rule) (netip.Addr, uint16, bool) {
	for _, st := range r.Expr {
		d, ok := st["dnat"].(map[string]any)
		if !ok {
			continue
		}
		a, err := netip.ParseAddr(valueString(d["addr"]))
		port, ok := d["port"].(float64)
		return a, uint16(port), err == nil && ok
	}
	return netip.Addr{}, 0, false
}

func matchesDport(r nftjson.Rule, port uint16) bool {
	for _, st := range r.Expr {
		m, ok := st["match"].(map[string]any)
		if !ok {
			continue
		}
		left, _ := m["left"].(map[string]any)
		pl, _ := left["payload"].(map[string]any)
		if f, _ := pl["field"].(string); f == "dport" {
			if n, ok := m["right"].(float64); ok && uint16(n) == port {
				return true
			}
		}
	}
	return false
}

// Sources implements verdict.Ruleset: it walks every rule's matches on a source address, and the named
// sets of addresses they look up.
func (r Ruleset) Sources(fam rules.Family) []verdict.Span {
	var spans []verdict.Span
	add := func(v any) {
		switch x := v.(type) {
		case string:
			if a, err := netip.ParseAddr(x); err == nil && fam.Has(a) {
				spans = append(spans, verdict.PrefixSpan(netip.PrefixFrom(a, a.BitLen())))
			}
		case map[string]any:
			if pf, ok := x["prefix"].(map[string]any); ok {
				if p, ok := verdict.ParsePrefix(valueString(pf["addr"]) + "/" + valueString(pf["len"])); ok && fam.Has(p.Addr()) {
					spans = append(spans, verdict.PrefixSpan(p))
				}
			}
			if rg, ok := x["range"].([]any); ok && len(rg) == 2 {
				l, err1 := netip.ParseAddr(valueString(rg[0]))
				h, err2 := netip.ParseAddr(valueString(rg[1]))
				if err1 == nil && err2 == nil && fam.Has(l) {
					spans = append(spans, verdict.Span{Lo: l, Hi: h, Label: valueString(rg[0]) + "-" + valueString(rg[1])})
				}
			}
		}
	}
	r.eachMatch(func(c *nftjson.Chain, field string, right any) {
		if field != "saddr" {
			return
		}
		for _, v := range r.rightValues(c, right) {
			add(v)
		}
	})
	return spans
}

// Choices implements verdict.Ruleset.
func (r Ruleset) Choices() ([][2]uint16, bool, bool) {
	var sports [][2]uint16
	flags := false
	r.eachMatch(func(c *nftjson.Chain, field string, right any) {
		switch field {
		case "flags":
			flags = true
		case "sport":
			for _, v := range r.rightValues(c, right) {
				switch x := v.(type) {
				case float64:
					sports = append(sports, [2]uint16{uint16(x), uint16(x)})
				case map[string]any:
					if rg, ok := x["range"].([]any); ok && len(rg) == 2 {
						lo, _ := strconv.Atoi(valueString(rg[0]))
						hi, _ := strconv.Atoi(valueString(rg[1]))
						sports = append(sports, [2]uint16{uint16(lo), uint16(hi)})
					}
				}
			}
		}
	})
	return sports, flags, false // nftables has no -m recent; dynamic sets are "unknown"
}

// eachMatch calls f for every payload match (its field) in every chain,
// also for each payload of a concatenation (the right side then being
// that component of each element: dockmoat's from4 set holds address .
// protocol . port . source).
func (r Ruleset) eachMatch(f func(c *nftjson.Chain, field string, right any)) {
	for _, c := range r.Live.Chains {
		for _, rule := range c.Rules {
			for _, st := range rule.Expr {
				m, ok := st["match"].(map[string]any)
				if !ok {
					continue
				}
				left, _ := m["left"].(map[string]any)
				if amp, ok := left["&"].([]any); ok && len(amp) == 2 {
					left, _ = amp[0].(map[string]any)
				}
				if pl, ok := left["payload"].(map[string]any); ok {
					field, _ := pl["field"].(string)
					f(c, field, m["right"])
				}
				parts, _ := left["concat"].([]any)
				for i, part := range parts {
					pm, _ := part.(map[string]any)
					if pl, ok := pm["payload"].(map[string]any); ok {
						field, _ := pl["field"].(string)
						f(c, field, map[string]any{"set": r.component(c, m["right"], i)})
					}
				}
			}
		}
	}
}

// component is part i of each concatenated element a match compares with.
func (r Ruleset) component(c *nftjson.Chain, right any, i int) []any {
	var out []any
	for _, el := range r.rightValues(c, right) {
		if m, ok := el.(map[string]any); ok {
			if inner, ok := m["elem"].(map[string]any); ok {
				m, _ = inner["val"].(map[string]any)
			}
			if parts, ok := m["concat"].([]any); ok && i < len(parts) {
				out = append(out, parts[i])
			}
		}
	}
	return out
}

// rightValues lists the values a match's right side names: itself, an
// anonymous set's elements, or a named set's.
func (r Ruleset) rightValues(c *nftjson.Chain, right any) []any {
	if elems, ok := setElems(r.Live, c, right); ok {
		return elems
	}
	if s, ok := right.(string); ok && strings.HasPrefix(s, "@") {
		return nil // a missing set names nothing
	}
	return []any{right}
}
