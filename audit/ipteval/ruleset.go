package ipteval

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

// Ruleset is one family's iptables-save tables (verdict.Ruleset); Raw
// and NAT may be nil (no such table).
type Ruleset struct{ Filter, NAT, Raw *iptsave.Table }

// Eval implements verdict.Ruleset.
func (r Ruleset) Eval(hook string, p verdict.Packet) verdict.Verdict {
	switch hook {
	case "forward":
		return Eval(r.Filter, "FORWARD", p)
	case "input":
		return Eval(r.Filter, "INPUT", p)
	}
	if r.Raw == nil {
		return verdict.Verdict{Result: verdict.Accept, Chain: "raw", Rule: "no raw table"}
	}
	return Eval(r.Raw, "PREROUTING", p)
}

// DNAT implements verdict.Ruleset: Docker's DNAT of the binding in the
// nat table.
func (r Ruleset) DNAT(b rules.PortBinding, target func(netip.Addr) bool) (netip.Addr, bool) {
	if r.NAT == nil {
		return netip.Addr{}, false
	}
	for _, ch := range r.NAT.Chains {
		for _, rule := range ch.Rules {
			to := OptValue(rule.Args, "--to-destination")
			if to == "" || OptValue(rule.Args, "--dport") != strconv.Itoa(int(b.HostPort)) || !protoMatch(OptValue(rule.Args, "-p"), b.Proto) {
				continue
			}
			ap, err := netip.ParseAddrPort(to)
			if err == nil && ap.Port() == b.ContainerPort && target(ap.Addr()) {
				return ap.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}

// Sources implements verdict.Ruleset.
func (r Ruleset) Sources(fam rules.Family) []verdict.Span { return sourceSpans(r.Filter, fam) }

// Choices implements verdict.Ruleset.
func (r Ruleset) Choices() ([][2]uint16, bool, bool) {
	var sports [][2]uint16
	flags, recent := false, false
	for _, ch := range r.Filter.Chains {
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

// sourceSpans lists the source ranges an iptables table's rules and
// dockmoat's ipsets name, in one family.
func sourceSpans(t *iptsave.Table, fam rules.Family) []verdict.Span {
	var spans []verdict.Span
	for _, ch := range t.Chains {
		for _, r := range ch.Rules {
			for i := 0; i+1 < len(r.Args); i++ {
				switch r.Args[i] {
				case "-s", "--source", "--ctorigsrc":
					for _, s := range strings.Split(r.Args[i+1], ",") {
						if p, ok := verdict.ParsePrefix(s); ok && fam.Has(p.Addr()) {
							spans = append(spans, verdict.PrefixSpan(p))
						}
					}
				case "--src-range":
					lo, hi, _ := strings.Cut(r.Args[i+1], "-")
					l, err1 := netip.ParseAddr(lo)
					h, err2 := netip.ParseAddr(hi)
					if err1 == nil && err2 == nil && fam.Has(l) && l.Compare(h) <= 0 {
						spans = append(spans, verdict.Span{Lo: l, Hi: h, Label: r.Args[i+1]})
					}
				}
			}
		}
	}
	for _, elems := range t.Sets {
		for _, e := range elems {
			if e.Src.IsValid() && fam.Has(e.Src.Addr()) {
				spans = append(spans, verdict.PrefixSpan(e.Src))
			}
		}
	}
	return spans
}

// sportOpts are the options that match the client's source port.
var sportOpts = map[string]bool{"--sport": true, "--source-port": true, "--sports": true, "--source-ports": true, "--ports": true}

// portBounds reads "53", "1024:65535", ":1023" or "1024:".
func portBounds(s string) (uint16, uint16, bool) {
	lo, hi, isRange := strings.Cut(s, ":")
	if !isRange {
		hi = lo
	}
	if lo == "" {
		lo = "0"
	}
	if hi == "" {
		hi = "65535"
	}
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || h < l {
		return 0, 0, false
	}
	return uint16(l), uint16(h), true
}

// OptValue is the value of an option of a rule's arguments ("" when
// absent or negated).
func OptValue(args []string, opt string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == opt && (i == 0 || args[i-1] != "!") {
			return args[i+1]
		}
	}
	return ""
}
