package audit

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/audit/verdict"
	"github.com/dockmoat/dockmoat/rules"
)

// Egress rows: for each container whose egress is deny (rules.Egress),
// audit evaluates the installed ruleset for a first packet from the
// container's address out of an external interface, and to the host
// itself, to a destination the policy does not allow. The policy holds
// when both are dropped; an accepted one is beyond policy (exit 1).

// probeDests are tried in order for a destination the policy refuses.
var probeDests = map[rules.Family][]netip.Addr{
	rules.IPv4: {netip.MustParseAddr("192.0.2.123"), netip.MustParseAddr("198.51.100.123"), netip.MustParseAddr("203.0.113.123")},
	rules.IPv6: {netip.MustParseAddr("2001:db8:ffff::123"), netip.MustParseAddr("2001:db8:fffe::123")},
}

var probePorts = []uint16{443, 80, 25, 22, 8443, 31337}

// egressRows evaluates every deny container of every family read (the
// family's policy, famCtx.policy).
func egressRows(in Input, fams map[rules.Family]*famCtx) []report.EgressRow {
	var out []report.EgressRow
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		fc := fams[fam]
		if fc == nil {
			continue
		}
		for _, e := range fc.policy.Egress {
			out = append(out, egressRow(in, fc, fam, e))
		}
	}
	return out
}

func egressRow(in Input, fc *famCtx, fam rules.Family, e rules.Egress) report.EgressRow {
	row := report.EgressRow{Container: e.Container, Family: fam.String(), Policy: e.Describe()}
	for _, a := range e.DNS {
		row.DNS = append(row.DNS, a.String())
	}
	dst, port, ok := refusedDest(e, fam)
	switch {
	case len(e.From) == 0:
		row.Outside, row.Host = "not limited: no address on a Docker bridge network", "-"
		return row
	case !ok:
		row.Outside, row.Host = "every destination tried is allowed", "-"
		return row
	case fc.rs == nil:
		row.Outside, row.Host = "unknown: ruleset unreadable", "unknown"
		return row
	}
	out, host := externalIface(in), hostAddr(in, fam)
	for _, f := range e.From {
		p := verdict.Packet{Src: f.Addr, Dst: dst, Proto: "tcp", DPort: port, SPort: 40000, In: f.Bridge, Out: out, States: []string{"NEW"}}
		v := fc.rs.Eval("forward", p)
		row.Outside = verdictText(v, fmt.Sprintf("%s:%d/tcp", dst, port))
		row.Beyond = row.Beyond || v.Result != verdict.Drop
		if host.IsValid() {
			p.Dst, p.Out, p.DstLocal = host, "", true
			hv := fc.rs.Eval("input", p)
			row.Host = verdictText(hv, fmt.Sprintf("%s:%d/tcp", host, port))
			row.Beyond = row.Beyond || hv.Result != verdict.Drop
		} else {
			row.Host = "-"
		}
	}
	return row
}

// refusedDest finds a destination and port the policy does not allow.
func refusedDest(e rules.Egress, fam rules.Family) (netip.Addr, uint16, bool) {
	for _, d := range probeDests[fam] {
		for _, port := range probePorts {
			if !e.Allows(d, port, "tcp") {
				return d, port, true
			}
		}
	}
	return netip.Addr{}, 0, false
}

func verdictText(v verdict.Verdict, what string) string {
	switch v.Result {
	case verdict.Drop:
		return "refused (" + what + ": " + v.Chain + ")"
	case verdict.Accept:
		return "OPEN (" + what + " accepted: " + v.Chain + " " + strings.TrimSpace(stripComment(v.Rule)) + ")"
	}
	return "unknown (" + what + ": " + v.Why + ")"
}

func externalIface(in Input) string {
	if len(in.Ifaces) > 0 {
		return in.Ifaces[0].Name
	}
	return "eth0"
}

func hostAddr(in Input, fam rules.Family) netip.Addr {
	for _, ifc := range in.Ifaces {
		for _, a := range ifc.Addrs {
			if fam.Has(a) && !a.IsLinkLocalUnicast() {
				return a
			}
		}
	}
	return netip.Addr{}
}
