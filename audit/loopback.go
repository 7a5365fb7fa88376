package audit

import (
	"fmt"
	"net/netip"

	"github.com/dockmoat/dockmoat/audit/report"
	"github.com/dockmoat/dockmoat/audit/verdict"
)

// A port published on 127.0.0.1 is meant for the host alone. Docker
// before 28 DNATs packets for it whatever interface they arrive on, so a
// host on the same link that routes 127.0.0.1 to this one reaches the
// container unless something drops them: Docker 28 adds a raw PREROUTING
// drop per such port, dockmoat's default deny catches them on FORWARD
// (its policy never opens a loopback binding). IPv6 never routes ::1 in
// from outside. loopback evaluates that neighbour's first packet.
func (pe portEval) loopback(row *report.Row) {
	b, fc := pe.b, pe.fc
	row.Exposure, row.Intended = report.Local, true
	row.Reason = "bound to " + b.HostIP.String() + ": not reachable from outside"
	if b.HostIP.Is6() && !b.HostIP.Is4In6() {
		return
	}
	ctrIP, bridge, dnat := dnatTarget(fc.rs, pe.c, b, pe.in.Snapshot)
	if !dnat {
		row.Reason += " (no DNAT for it; the kernel refuses 127.0.0.0/8 from other hosts)"
		return
	}
	var accepted *verdict.Verdict
	var sources []string
	for _, src := range append([]netip.Addr{fc.generic}, fc.reps...) {
		v, vr, ok := pe.neighbour(src, ctrIP, bridge)
		if !ok {
			pe.loopbackUnknown(row, v)
			return
		}
		if v.Result != verdict.Accept {
			continue
		}
		if accepted == nil {
			accepted = &v
			if def := fc.variants[b.Proto]; len(def) > 0 && vr != def[0] {
				row.Needs = vr.describe(def[0])
			}
		}
		if src == fc.generic {
			sources = []string{"hosts on the same link"}
			break
		}
		sources = append(sources, sourceLabel(fc.spans, src)+" on the same link")
	}
	if accepted == nil {
		row.Reason += "; packets for it from the link are dropped before the container"
		return
	}
	row.Exposure, row.Intended, row.Beyond = report.Restricted, false, true
	row.Sources = sources
	row.Reason = fmt.Sprintf("bound to %s, but Docker (before 28) DNATs packets for it from any interface and %s: "+
		"a host on the same link that routes %s here reaches the container; Docker 28 drops them, dockmoat's default deny too",
		b.HostIP, acceptedBy(*accepted), b.HostIP)
}

// neighbour evaluates src's packets (each variant a client can choose)
// for the loopback binding arriving on each outside interface: raw
// PREROUTING before the DNAT, then FORWARD.
// ok is false when a verdict is Unknown (then v is it).
func (pe portEval) neighbour(src, ctrIP netip.Addr, bridge string) (v verdict.Verdict, vr variant, ok bool) {
	b, fc := pe.b, pe.fc
	v = verdict.Verdict{Result: verdict.Drop}
	variants := fc.variants[b.Proto]
	if len(variants) == 0 {
		variants = []variant{{sport: 40000}}
	}
	for _, ifc := range pe.in.Ifaces {
		for _, vr = range variants {
			p := verdict.Packet{Src: src, Dst: b.HostIP, Proto: b.Proto, SPort: vr.sport, Flags: vr.flags, Recent: vr.recent,
				DPort: b.HostPort, In: ifc.Name, States: []string{"NEW"}, DstLocal: true}
			switch raw := fc.rs.Eval("prerouting", p); raw.Result {
			case verdict.Drop:
				continue
			case verdict.Unknown:
				return raw, vr, false
			}
			p.Dst, p.DPort, p.Out, p.States, p.DstLocal = ctrIP, b.ContainerPort, bridge, []string{"NEW", "DNAT"}, false
			p.OrigDst, p.OrigDstPort = b.HostIP, b.HostPort
			switch fwd := fc.rs.Eval("forward", p); fwd.Result {
			case verdict.Accept:
				return fwd, vr, true
			case verdict.Unknown:
				return fwd, vr, false
			}
		}
	}
	return v, vr, true
}

func (pe portEval) loopbackUnknown(row *report.Row, v verdict.Verdict) {
	row.Exposure, row.Intended, row.Beyond = report.Unknowable, false, true
	row.Reason = "bound to " + pe.b.HostIP.String() + "; cannot evaluate a neighbour's packet for it: " + v.Why
}

func acceptedBy(v verdict.Verdict) string {
	if v.Rule == "policy ACCEPT" {
		return "the " + v.Chain + " policy accepts them"
	}
	return fmt.Sprintf("rule '%s' in %s accepts them", stripComment(v.Rule), v.Chain)
}
