package netfilter

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dockmoat/dockmoat/rules"
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

// writeRules shows the desired rules: the nft table, or the iptables
// jumps, chains and sets.
func writeRules(b *strings.Builder, p FamilyPlan) {
	switch {
	case p.NFT != "":
		b.WriteString("rules (nft, both families):\n")
		for _, l := range strings.Split(strings.TrimRight(p.NFT, "\n"), "\n") {
			b.WriteString("  " + l + "\n")
		}
	case p.InTable:
		b.WriteString("rules: in the inet table above\n")
	default:
		b.WriteString("rules:\n")
		if p.Rules != nil {
			for _, l := range p.Rules.Lines() {
				fmt.Fprintf(b, "  %s\n", l)
			}
		}
		for _, set := range p.Result.Sets {
			fmt.Fprintf(b, "ipset %s (%s), %d element(s):\n", set.Name, rules.SetType(set.Kind), len(set.Elems))
			for _, e := range set.Sorted() {
				fmt.Fprintf(b, "  %s\n", e)
			}
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
	for _, c := range p.Changed {
		if strings.HasPrefix(c, "inet dockmoat") {
			fmt.Fprintf(b, "  %s differs: the table will be replaced atomically\n", c)
			continue
		}
		if _, ok := p.Observed.Owned[c]; ok {
			fmt.Fprintf(b, "  chain %s differs: will be replaced atomically\n", c)
		} else {
			fmt.Fprintf(b, "  chain %s missing: will be created\n", c)
		}
	}
	for _, c := range p.Stale {
		fmt.Fprintf(b, "  chain %s is no longer used: will be deleted\n", c)
	}
	for _, name := range p.SetsMissing {
		fmt.Fprintf(b, "  ipset %s missing: will be created\n", name)
	}
	for _, set := range p.Result.Sets {
		for _, e := range p.SetDel[set.Name] {
			fmt.Fprintf(b, "  ipset %s: will delete %s\n", set.Name, e)
		}
		for _, e := range p.SetAdd[set.Name] {
			fmt.Fprintf(b, "  ipset %s: will add %s\n", set.Name, e)
		}
	}
	switch in := p.Observed.InputHook; {
	case p.WantsInput() && len(in) == 0:
		fmt.Fprintf(b, "  input hook missing: will be inserted at the top of %s\n", rules.InputHookChain)
	case p.WantsInput() && !slices.Equal(in, []int{1}):
		fmt.Fprintf(b, "  input hook at position(s) %v of %s: will be moved to the top\n", in, rules.InputHookChain)
	case !p.WantsInput() && len(in) > 0:
		fmt.Fprintf(b, "  input hook no longer needed: will be removed from %s\n", rules.InputHookChain)
	}
	switch {
	case p.InputOnly:
	case p.DockerUserMissing && !slices.Equal(p.HookPositions, []int{1}):
		fmt.Fprintf(b, "  chain %s missing (flushed, or Docker's iptables integration is off): the hook will be inserted at the top of FORWARD until it is back\n", rules.HookChain)
	case p.DockerUserMissing:
		fmt.Fprintf(b, "  chain %s missing (flushed, or Docker's iptables integration is off): the hook stands at the top of FORWARD until it is back\n", rules.HookChain)
	case len(p.HookPositions) == 0:
		fmt.Fprintf(b, "  hook missing: will be inserted at the top of %s\n", p.HookIn)
	case p.HookPositions[0] != 1 || len(p.HookPositions) > 1:
		fmt.Fprintf(b, "  hook at position(s) %v of %s: will be moved to the top\n", p.HookPositions, p.HookIn)
	}
	if p.StrayHooks > 0 {
		fmt.Fprintf(b, "  %d hook(s) left in FORWARD from while %s was missing: will be removed\n", p.StrayHooks, rules.HookChain)
	}
	writeChecks(b, p)
	b.WriteString("\n")
}

// writeChecks tells where the checks' jumps (second after each hook,
// netfilter/ipt's fail-closed layout) are not.
func writeChecks(b *strings.Builder, p FamilyPlan) {
	if !p.WantCheck {
		return
	}
	if !p.InputOnly && slices.Equal(p.HookPositions, []int{1}) && !slices.Equal(p.CheckPositions, []int{2}) {
		fmt.Fprintf(b, "  check jump at position(s) %v of %s: will be put second, after the hook\n", p.CheckPositions, p.HookIn)
	}
	if p.StrayChecks > 0 {
		fmt.Fprintf(b, "  %d check jump(s) left in FORWARD from while %s was missing: will be removed\n", p.StrayChecks, rules.HookChain)
	}
	if in := p.Observed.InputCheck; p.WantsInput() && slices.Equal(p.Observed.InputHook, []int{1}) && !slices.Equal(in, []int{2}) {
		fmt.Fprintf(b, "  input check jump at position(s) %v of %s: will be put second, after the input hook\n", in, rules.InputHookChain)
	}
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
		return "open to " + strings.Join(s, ", ")
	}
}

// writeEgress lists the containers whose outbound connections are limited.
func writeEgress(b *strings.Builder, res rules.Result) {
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
