package nftplan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"

	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// Rate limits (rules/limit.go), as on the iptables path (netfilter/ipt's
// limit.go): one rule per limited binding, after the deny lists and the
// trusted sources and before the allows, in ingress and in input. Each
// keeps its sources in a dynamic set of its own (a meter) whose elements
// carry the limit's state; an element times out only once its allowance
// has refilled, so forgetting it changes nothing. The sets' elements are
// the kernel's, not the policy's: a pass never compares or rewrites them
// (they are in Ruleset.Meters, not Ruleset.Sets), and a table swap
// starts them empty, which only forgets recent connections. The rule's
// counter is the refusals.

// Meter is a limit's dynamic set.
type Meter struct {
	Name, Type string
	Timeout    int // seconds
}

// limitRules adds both families' limits to ch: forward for ingress, else
// the docker-proxy form for input.
func limitRules(ch *Chain, rs *Ruleset, res [2]policy.Result, forward bool) {
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		for _, l := range res[i].Limits {
			b := l.Binding
			m := meter(l, fam)
			if forward {
				rs.Meters = append(rs.Meters, m)
			}
			key := nftAddr(fam) + " saddr"
			if fam == rules.IPv6 {
				key += " & ffff:ffff:ffff:ffff::"
			}
			update := fmt.Sprintf("update @%s { %s limit rate over %d/%s burst %d packets } counter", m.Name, key, l.Rate.Rate, l.Rate.Unit(), l.Rate.Burst)
			var match, verdict string
			if forward {
				match = "meta l4proto " + b.Proto + " ct status dnat "
				if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
					match += fmt.Sprintf("ct original %s daddr %s ", nftAddr(fam), b.HostIP.Unmap())
				}
				match += fmt.Sprintf("ct original proto-dst %d ", b.HostPort)
				verdict = "drop"
			} else {
				match, verdict = nftProxyMatch(b, fam)+" ", "return"
			}
			ch.add(l.Desc(!forward), match+update+" "+verdict)
		}
	}
}

// meter is the dynamic set of a limit: named per family, binding and
// rate; the forward and input rules of a binding share it.
func meter(l rules.Limit, fam rules.Family) Meter {
	h := sha256.Sum256(fmt.Appendf(nil, "%d %s %s %d %s", fam, l.Binding.Proto, l.Binding.HostIP, l.Binding.HostPort, l.Rate))
	typ := "ipv4_addr"
	if fam == rules.IPv6 {
		typ = "ipv6_addr"
	}
	return Meter{Name: "limit_" + hex.EncodeToString(h[:])[:12], Type: typ, Timeout: max(1, int(math.Ceil(l.Rate.Refill().Seconds())))}
}

// writeMeters declares the meters in the table's text.
func writeMeters(b *strings.Builder, ms []Meter) {
	for _, m := range ms {
		fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout %ds\n\t}\n", m.Name, m.Type, m.Timeout)
	}
}
