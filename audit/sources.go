package audit

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

// span is a range of source addresses a rule names: a prefix (-s,
// --ctorigsrc, a set's source) or an -m iprange --src-range.
type span struct {
	lo, hi netip.Addr
	label  string // as the rule writes it, for the report
}

func (s span) contains(a netip.Addr) bool { return a.Compare(s.lo) >= 0 && a.Compare(s.hi) <= 0 }

func prefixSpan(p netip.Prefix) span {
	p = p.Masked()
	return span{lo: p.Addr(), hi: lastAddr(p), label: p.String()}
}

// sourceSpans lists the source ranges an iptables table's rules and
// dockmoat's ipsets name, in one family (famCtx.setRuleset sorts them).
func sourceSpans(t *iptsave.Table, fam rules.Family) []span {
	var spans []span
	for _, ch := range t.Chains {
		for _, r := range ch.Rules {
			for i := 0; i+1 < len(r.Args); i++ {
				switch r.Args[i] {
				case "-s", "--source", "--ctorigsrc":
					for _, s := range strings.Split(r.Args[i+1], ",") {
						if p, ok := parsePrefix(s); ok && fam.Has(p.Addr()) {
							spans = append(spans, prefixSpan(p))
						}
					}
				case "--src-range":
					lo, hi, _ := strings.Cut(r.Args[i+1], "-")
					l, err1 := netip.ParseAddr(lo)
					h, err2 := netip.ParseAddr(hi)
					if err1 == nil && err2 == nil && fam.Has(l) && l.Compare(h) <= 0 {
						spans = append(spans, span{lo: l, hi: h, label: r.Args[i+1]})
					}
				}
			}
		}
	}
	for _, elems := range t.Sets {
		for _, e := range elems {
			if e.Src.IsValid() && fam.Has(e.Src.Addr()) {
				spans = append(spans, prefixSpan(e.Src))
			}
		}
	}
	return spans
}

// sortSpans orders spans and drops repeats, for both rulesets' sources.
func sortSpans(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int { return cmp.Or(a.lo.Compare(b.lo), b.hi.Compare(a.hi)) })
	return slices.CompactFunc(spans, func(a, b span) bool { return a.lo == b.lo && a.hi == b.hi })
}

func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// representatives picks one source address per class of sources that the
// filter table's source matches can tell apart, plus a generic source that
// no rule names ("anyone on the internet").
func representatives(spans []span, fam rules.Family) ([]netip.Addr, netip.Addr) {
	sig := func(a netip.Addr) string {
		var b strings.Builder
		for i, s := range spans {
			if s.contains(a) {
				b.WriteString(strconv.Itoa(i) + ",")
			}
		}
		return b.String()
	}
	seen := map[string]bool{}
	var reps []netip.Addr
	for _, s := range spans {
		for _, a := range []netip.Addr{s.lo, s.hi} {
			if k := sig(a); k != "" && !seen[k] {
				seen[k] = true
				reps = append(reps, a)
			}
		}
	}
	candidates := []string{"198.51.100.77", "203.0.113.177", "192.0.2.177", "8.8.4.4", "1.0.0.77", "100.64.7.7"}
	if fam == rules.IPv6 {
		candidates = []string{"2001:db8:77::77", "2606:4700::77", "2a00:1450::77", "2001:4860::77"}
	}
	var generic netip.Addr
	for _, c := range candidates {
		if a := netip.MustParseAddr(c); sig(a) == "" {
			generic = a
			break
		}
	}
	return reps, generic
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// sourceLabel names the class of a representative: the narrowest range a
// rule names that contains it, as the rule writes it.
func sourceLabel(spans []span, a netip.Addr) string {
	best, found := span{lo: a, hi: a, label: netip.PrefixFrom(a, a.BitLen()).String()}, false
	width := func(s span) []byte {
		lo, hi := s.lo.As16(), s.hi.As16()
		var d [16]byte
		borrow := 0
		for i := 15; i >= 0; i-- {
			v := int(hi[i]) - int(lo[i]) - borrow
			borrow = 0
			if v < 0 {
				v += 256
				borrow = 1
			}
			d[i] = byte(v)
		}
		return d[:]
	}
	for _, s := range spans {
		if s.contains(a) && (!found || slices.Compare(width(s), width(best)) < 0) {
			best, found = s, true
		}
	}
	return best.label
}
