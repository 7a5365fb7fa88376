package verdict

import (
	"net/netip"

	"github.com/dockmoat/dockmoat/rules"
)

// Ruleset is one family's installed firewall as the audit evaluates it:
// the iptables tables (ipteval.Ruleset) or the whole nftables ruleset
// (nfteval.Ruleset). Everything above it (source classes, variants,
// reasons, explain) is the same for both.
type Ruleset interface {
	// Eval runs a first packet through a hook: "forward" (after Docker's
	// DNAT), "input" (docker-proxy on the host), "prerouting" (before
	// DNAT: raw drops).
	Eval(hook string, p Packet) Verdict
	// DNAT finds Docker's DNAT of a binding: the address it sends the
	// connection to, the first for which target holds.
	DNAT(b rules.PortBinding, target func(netip.Addr) bool) (netip.Addr, bool)
	// Sources are the source ranges the rules name.
	Sources(fam rules.Family) []Span
	// Choices are what the rules read of what a client chooses: the
	// source ports they name, whether they read TCP flags or -m recent.
	Choices() (sports [][2]uint16, flags, recent bool)
}

// Span is a range of source addresses a rule names: a prefix (-s,
// --ctorigsrc, a set's source) or an address range.
type Span struct {
	Lo, Hi netip.Addr
	Label  string // as the rule writes it, for the report
}

// Contains reports whether a is in the span.
func (s Span) Contains(a netip.Addr) bool { return a.Compare(s.Lo) >= 0 && a.Compare(s.Hi) <= 0 }

// PrefixSpan is the span of a prefix.
func PrefixSpan(p netip.Prefix) Span {
	p = p.Masked()
	return Span{Lo: p.Addr(), Hi: lastAddr(p), Label: p.String()}
}

// ParsePrefix reads a prefix or a single address.
func ParsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
