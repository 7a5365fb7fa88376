package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dockmoat/dockmoat/audit/verdict"
)

// A client chooses more of its first packet than its address: its source
// port, its TCP flags, and whether it sent something earlier that a
// -m recent list remembers. Conntrack takes a SYN as a new connection
// with URG set too, and ignores PSH, ECE and CWR for that (nf_conntrack's
// tcp_valid_flags); the container's stack answers it. iptables' tcp match
// names FIN..URG only, so SYN with PSH and/or URG are the first packets
// its rules can tell from a bare SYN. A rule matching any of these is no protection against
// a client that picks the other value, so audit tries each value the
// ruleset tells apart, as it tries a representative of each source class;
// a port is reachable when some variant gets through.

// variant is one such choice.
type variant struct {
	sport  uint16
	flags  string // TCP only: "SYN", "SYN,PSH", "SYN,URG", "SYN,PSH,URG"
	recent bool
}

// firstSYNs are the TCP first packets the rules may tell apart (ECE and
// CWR: nftables names them, iptables cannot).
var firstSYNs = []string{"SYN", "SYN,PSH", "SYN,URG", "SYN,PSH,URG", "SYN,ECE,CWR"}

// describe says what a client does to be this variant, "" for the
// default one.
func (v variant) describe(def variant) string {
	var parts []string
	if v.sport != def.sport {
		parts = append(parts, fmt.Sprintf("source port %d", v.sport))
	}
	if v.flags != def.flags {
		parts = append(parts, "a first packet with flags "+v.flags)
	}
	if v.recent {
		parts = append(parts, "an earlier packet remembered by -m recent")
	}
	return strings.Join(parts, ", ")
}

// variantsOf lists the variants the rules can tell apart for proto (from
// ruleset.choices), the default first: a high source port no rule names,
// a bare SYN, no history.
func variantsOf(ranges [][2]uint16, flags, recent bool, proto string) []variant {
	var bounds []uint16
	for _, r := range ranges {
		bounds = append(bounds, r[0], r[1])
	}
	def := variant{sport: freePort(ranges)}
	sports := []uint16{def.sport}
	slices.Sort(bounds)
	for _, p := range slices.Compact(bounds) {
		if len(sports) < 32 {
			sports = append(sports, p)
		}
	}
	flagSets := []string{""}
	if proto == "tcp" {
		def.flags, flagSets = "SYN", firstSYNs[:1]
		if flags {
			flagSets = firstSYNs
		}
	}
	histories := []bool{false}
	if recent {
		histories = append(histories, true)
	}
	var out []variant
	for _, h := range histories {
		for _, f := range flagSets {
			for _, sp := range sports {
				out = append(out, variant{sport: sp, flags: f, recent: h})
			}
		}
	}
	return out
}

// variantStep is the first move of a path made by a rule that looks at
// what the client chooses: the rule a variant got through.
func variantStep(path []verdict.Step) (verdict.Step, bool) {
	for _, s := range path {
		for _, opt := range []string{"--sport", "--source-port", "--ports", "--tcp-flags", "--syn", "--rcheck", "--update"} {
			if strings.Contains(s.Rule, opt+" ") || strings.HasSuffix(s.Rule, opt) {
				return s, true
			}
		}
	}
	return verdict.Step{}, false
}

// freePort is an ephemeral source port no rule names, if there is one.
func freePort(ranges [][2]uint16) uint16 {
	for _, p := range []uint16{40000, 50123, 33333, 61000, 49152, 32768, 1025, 2000} {
		if !slices.ContainsFunc(ranges, func(r [2]uint16) bool { return p >= r[0] && p <= r[1] }) {
			return p
		}
	}
	return 40000
}
