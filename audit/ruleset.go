package audit

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/rules"
)

// ruleset is one family's installed firewall as audit evaluates it: the
// iptables tables, or the whole nftables ruleset. Everything above it
// (source classes, variants, verdicts, reasons, explain) is the same for
// both.
type ruleset interface {
	// eval runs a first packet through a hook: "forward" (after Docker's
	// DNAT), "input" (docker-proxy on the host), "prerouting" (before
	// DNAT: raw drops).
	eval(hook string, p Packet) Verdict
	// dnat finds Docker's DNAT of a binding: the container address and
	// the bridge it is forwarded to.
	dnat(c rules.Container, b rules.PortBinding, snap rules.Snapshot) (netip.Addr, string, bool)
	// sources are the source ranges the rules name.
	sources(fam rules.Family) []span
	// choices are what the rules read of what a client chooses: the
	// source ports they name, whether they read TCP flags or -m recent.
	choices() (sports [][2]uint16, flags, recent bool)
}

// iptRuleset evaluates iptables-save tables.
type iptRuleset struct{ filter, nat, raw *iptsave.Table }

func (r iptRuleset) eval(hook string, p Packet) Verdict {
	switch hook {
	case "forward":
		return Eval(r.filter, "FORWARD", p)
	case "input":
		return Eval(r.filter, "INPUT", p)
	}
	if r.raw == nil {
		return Verdict{Result: Accept, Chain: "raw", Rule: "no raw table"}
	}
	return Eval(r.raw, "PREROUTING", p)
}

func (r iptRuleset) dnat(c rules.Container, b rules.PortBinding, snap rules.Snapshot) (netip.Addr, string, bool) {
	return dnatTarget(r.nat, c, b, snap)
}

func (r iptRuleset) sources(fam rules.Family) []span { return sourceSpans(r.filter, fam) }

func (r iptRuleset) choices() ([][2]uint16, bool, bool) {
	var sports [][2]uint16
	flags, recent := false, false
	for _, ch := range r.filter.Chains {
		for _, rule := range ch.Rules {
			for i, a := range rule.Args {
				switch {
				case a == "--tcp-flags" || a == "--syn":
					flags = true
				case a == "--rcheck" || a == "--update":
					recent = true
				case sportOpts[a] && i+1 < len(rule.Args):
					for _, s := range strings.Split(rule.Args[i+1], ",") {
						if lo, hi, ok := portBounds(s); ok {
							sports = append(sports, [2]uint16{lo, hi})
						}
					}
				}
			}
		}
	}
	return sports, flags, recent
}

// nftRuleset evaluates the whole nftables ruleset for one family.
type nftRuleset struct {
	live *nft.Live
	fam  rules.Family
}

func (r nftRuleset) eval(hook string, p Packet) Verdict { return EvalNFT(r.live, hook, r.fam, p) }

// dnat finds a rule of a nat chain that DNATs the published port to a
// container's address and port (Docker's nat-prerouting-and-output).
func (r nftRuleset) dnat(c rules.Container, b rules.PortBinding, snap rules.Snapshot) (netip.Addr, string, bool) {
	e := nftEval{fam: r.fam}
	for _, ch := range r.live.Chains {
		if !e.familyOf(ch.Family) {
			continue // table ip's DNAT does not apply to IPv6 clients
		}
		for _, rule := range ch.Rules {
			addr, port, ok := dnatTo(rule)
			if !ok || port != b.ContainerPort || !matchesDport(rule, b.HostPort) {
				continue
			}
			if bridge, ok := endpointBridge(c, addr, snap); ok && r.fam.Has(addr) {
				return addr, bridge, true
			}
		}
	}
	return netip.Addr{}, "", false
}

func dnatTo(r nft.LiveRule) (netip.Addr, uint16, bool) {
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

func matchesDport(r nft.LiveRule, port uint16) bool {
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

// sources walks every rule's matches on a source address, and the named
// sets of addresses they look up.
func (r nftRuleset) sources(fam rules.Family) []span {
	var spans []span
	add := func(v any) {
		switch x := v.(type) {
		case string:
			if a, err := netip.ParseAddr(x); err == nil && fam.Has(a) {
				spans = append(spans, prefixSpan(netip.PrefixFrom(a, a.BitLen())))
			}
		case map[string]any:
			if pf, ok := x["prefix"].(map[string]any); ok {
				if p, ok := parsePrefix(valueString(pf["addr"]) + "/" + valueString(pf["len"])); ok && fam.Has(p.Addr()) {
					spans = append(spans, prefixSpan(p))
				}
			}
			if rg, ok := x["range"].([]any); ok && len(rg) == 2 {
				l, err1 := netip.ParseAddr(valueString(rg[0]))
				h, err2 := netip.ParseAddr(valueString(rg[1]))
				if err1 == nil && err2 == nil && fam.Has(l) {
					spans = append(spans, span{lo: l, hi: h, label: valueString(rg[0]) + "-" + valueString(rg[1])})
				}
			}
		}
	}
	r.eachMatch(func(c *nft.LiveChain, field string, right any) {
		if field != "saddr" {
			return
		}
		for _, v := range r.rightValues(c, right) {
			add(v)
		}
	})
	return spans
}

func (r nftRuleset) choices() ([][2]uint16, bool, bool) {
	var sports [][2]uint16
	flags := false
	r.eachMatch(func(c *nft.LiveChain, field string, right any) {
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
func (r nftRuleset) eachMatch(f func(c *nft.LiveChain, field string, right any)) {
	for _, c := range r.live.Chains {
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
func (r nftRuleset) component(c *nft.LiveChain, right any, i int) []any {
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
func (r nftRuleset) rightValues(c *nft.LiveChain, right any) []any {
	if elems, ok := setElems(r.live, c, right); ok {
		return elems
	}
	if s, ok := right.(string); ok && strings.HasPrefix(s, "@") {
		return nil // a missing set names nothing
	}
	return []any{right}
}
