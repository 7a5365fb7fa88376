package audit

import (
	"fmt"
)

// A port published on 127.0.0.1 is meant for the host alone. Docker
// before 28 DNATs packets for it whatever interface they arrive on, so a
// host on the same link that routes 127.0.0.1 to this one reaches the
// container unless something drops them: Docker 28 adds a raw PREROUTING
// drop per such port, dockmoat's default deny catches them on FORWARD
// (its policy never opens a loopback binding). IPv6 never routes ::1 in
// from outside. loopback evaluates that neighbour's first packet.
func (pe portEval) loopback(row *Row) {
	b, fc := pe.b, pe.fc
	row.Exposure, row.Intended = Local, true
	row.Reason = "bound to " + b.HostIP.String() + ": not reachable from outside"
	if b.HostIP.Is6() && !b.HostIP.Is4In6() {
		return
	}
	ctrIP, bridge, dnat := fc.rs.dnat(pe.c, b, pe.in.Snapshot)
	if !dnat {
		row.Reason += " (no DNAT for it; the kernel refuses 127.0.0.0/8 from other hosts)"
		return
	}
	var accepted *Verdict
	for _, ifc := range pe.in.Ifaces {
		p := Packet{Src: fc.generic, Dst: b.HostIP, Proto: b.Proto, SPort: 40000, DPort: b.HostPort, In: ifc.Name, States: []string{"NEW"}, DstLocal: true}
		switch v := fc.rs.eval("prerouting", p); v.Result {
		case Drop:
			continue
		case Unknown:
			pe.loopbackUnknown(row, v)
			return
		}
		p.Dst, p.DPort, p.Out, p.States, p.DstLocal = ctrIP, b.ContainerPort, bridge, []string{"NEW", "DNAT"}, false
		p.OrigDst, p.OrigDstPort = b.HostIP, b.HostPort
		switch v := fc.rs.eval("forward", p); v.Result {
		case Accept:
			accepted = &v
		case Unknown:
			pe.loopbackUnknown(row, v)
			return
		}
	}
	if accepted == nil {
		row.Reason += "; packets for it from the link are dropped before the container"
		return
	}
	row.Exposure, row.Intended, row.Beyond = Restricted, false, true
	row.Sources = []string{"hosts on the same link"}
	row.Reason = fmt.Sprintf("bound to %s, but Docker (before 28) DNATs packets for it from any interface and %s: "+
		"a host on the same link that routes %s here reaches the container; Docker 28 drops them, dockmoat's default deny too",
		b.HostIP, acceptedBy(*accepted), b.HostIP)
}

func (pe portEval) loopbackUnknown(row *Row, v Verdict) {
	row.Exposure, row.Intended, row.Beyond = Unknowable, false, true
	row.Reason = "bound to " + pe.b.HostIP.String() + "; cannot evaluate a neighbour's packet for it: " + v.Why
}

func acceptedBy(v Verdict) string {
	if v.Rule == "policy ACCEPT" {
		return "the " + v.Chain + " policy accepts them"
	}
	return fmt.Sprintf("rule '%s' in %s accepts them", stripComment(v.Rule), v.Chain)
}
