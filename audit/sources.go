package audit

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/rules"
)

// sortSpans orders spans and drops repeats, for both rulesets' sources.
func sortSpans(spans []verdict.Span) []verdict.Span {
	slices.SortFunc(spans, func(a, b verdict.Span) int { return cmp.Or(a.Lo.Compare(b.Lo), b.Hi.Compare(a.Hi)) })
	return slices.CompactFunc(spans, func(a, b verdict.Span) bool { return a.Lo == b.Lo && a.Hi == b.Hi })
}

// representatives picks one source address per class of sources that the
// filter table's source matches can tell apart, plus a generic source that
// no rule names ("anyone on the internet").
func representatives(spans []verdict.Span, fam rules.Family) ([]netip.Addr, netip.Addr) {
	sig := func(a netip.Addr) string {
		var b strings.Builder
		for i, s := range spans {
			if s.Contains(a) {
				b.WriteString(strconv.Itoa(i) + ",")
			}
		}
		return b.String()
	}
	seen := map[string]bool{}
	var reps []netip.Addr
	for _, s := range spans {
		for _, a := range []netip.Addr{s.Lo, s.Hi} {
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

// sourceLabel names the class of a representative: the narrowest range a
// rule names that contains it, as the rule writes it.
func sourceLabel(spans []verdict.Span, a netip.Addr) string {
	best, found := verdict.Span{Lo: a, Hi: a, Label: netip.PrefixFrom(a, a.BitLen()).String()}, false
	width := func(s verdict.Span) []byte {
		lo, hi := s.Lo.As16(), s.Hi.As16()
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
		if s.Contains(a) && (!found || slices.Compare(width(s), width(best)) < 0) {
			best, found = s, true
		}
	}
	return best.Label
}
