package netfilter

import (
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// FormatPlan renders a plan for humans: the decision per published port,
// problems, the desired rules and what differs from the installed ones.
func FormatPlan(p FamilyPlan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "== %s (%s)\n", p.Family, p.Tool)
	if p.Skipped != "" {
		fmt.Fprintf(&b, "skipped: %s\n\n", p.Skipped)
		return b.String()
	}
	if len(p.Result.Decisions()) > 0 {
		b.WriteString("published ports:\n")
		tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
		for _, d := range p.Result.Decisions() {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", d.Container, bindingString(d.Binding), access(d), d.Reason)
		}
		_ = tw.Flush()
	} else {
		b.WriteString("published ports: none\n")
	}
	if p.Note != "" {
		fmt.Fprintf(&b, "note: %s\n", p.Note)
	}
	if len(p.Result.Proxied) > 0 {
		b.WriteString("reached through docker-proxy on the host (INPUT, no DNAT in this family), closed by DOCKMOAT-INPUT unless allowed:\n")
		tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
		for _, d := range p.Result.Proxied {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", d.Container, bindingString(d.Binding), access(d))
		}
		_ = tw.Flush()
	}
	writeEgress(&b, p.Result)
	if len(p.Result.Problems) > 0 || p.UFWMissing {
		b.WriteString("problems:\n")
		for _, pr := range p.Result.Problems {
			fmt.Fprintf(&b, "  %s\n", pr)
		}
		if p.UFWMissing {
			b.WriteString("  config ufw: on, but chain ufw-user-forward does not exist\n")
		}
	}
	writeRules(&b, p)
	writeDiff(&b, p)
	return b.String()
}

// writeRules shows the desired rules, as the backend's detail words them.
func writeRules(b *strings.Builder, p FamilyPlan) {
	if p.Detail != nil {
		p.Detail.WriteRules(b, p)
		return
	}
	b.WriteString("rules:\n")
	if p.Rules != nil {
		for _, l := range p.Rules.Lines() {
			fmt.Fprintf(b, "  %s\n", l)
		}
	}
}

// writeDiff shows what a pass would change, and why.
func writeDiff(b *strings.Builder, p FamilyPlan) {
	b.WriteString("diff against installed:\n")
	if p.InSync() {
		b.WriteString("  none: installed rules match\n\n")
		return
	}
	if p.Detail != nil {
		p.Detail.WriteDiff(b, p)
	} else {
		for _, c := range p.Changed {
			fmt.Fprintf(b, "  %s differs: will be replaced atomically\n", c)
		}
	}
	b.WriteString("\n")
}

func bindingString(bd rules.PortBinding) string {
	host := "*"
	if bd.HostIP.IsValid() {
		host = bd.HostIP.String()
		if bd.HostIP.Is6() {
			host = "[" + host + "]"
		}
	}
	return fmt.Sprintf("%s:%d->%d/%s", host, bd.HostPort, bd.ContainerPort, bd.Proto)
}

func access(d rules.Decision) string {
	switch {
	case !d.Open:
		return "closed"
	case d.Sources.Any:
		return "open to everyone"
	default:
		var s []string
		for _, p := range d.Sources.Prefixes {
			s = append(s, p.String())
		}
		for _, ifc := range d.Sources.Ifaces {
			s = append(s, "anyone on "+ifc)
		}
		return "open to " + strings.Join(s, ", ")
	}
}

// writeEgress lists the containers whose outbound connections are limited.
func writeEgress(b *strings.Builder, res policy.Result) {
	if len(res.Egress) == 0 {
		return
	}
	b.WriteString("egress (new connections leaving the container's network or to the host; replies and its own network unaffected):\n")
	tw := tabwriter.NewWriter(b, 2, 4, 2, ' ', 0)
	for _, e := range res.Egress {
		dns := "none of this family"
		if len(e.DNS) > 0 {
			dns = joinAddrs(e.DNS)
		}
		fmt.Fprintf(tw, "  %s\t%s\tDNS to %s (53/udp, 53/tcp)\n", e.Container, e.Describe(), dns)
	}
	_ = tw.Flush()
	if len(res.DNSFromHost) > 0 {
		fmt.Fprintf(b, "note: resolver %s is on the host's loopback: Docker 26 and later send containers' queries to it (and to every resolver of the host's resolv.conf) from the host itself, not from the container, so egress rules do not see them (Docker 20.10 uses 8.8.8.8 and 8.8.4.4 instead: list them in egress_dns)\n", joinAddrs(res.DNSFromHost))
	}
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
