package observe

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// WriteConfig prints the config file's allow rules that keep exactly the
// observed traffic working once enforcing: one rule per published port,
// selecting the container by its service when it has one (a recreated
// container keeps it) or by name, open to the sources seen (Collapse).
func WriteConfig(w io.Writer, rec Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# dockmoat suggest: what observe mode let through since %s, as allow\n", stamp(rec.Since))
	b.WriteString("# rules that keep exactly that working once enforcing. Review them, add them\n")
	b.WriteString("# to the config file, run 'dockmoat check-config', then 'dockmoat enforce'.\n")
	if len(rec.Ports) == 0 {
		b.WriteString("# Nothing was refused by the policy and let through: enforcing closes nothing in use.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("allow:\n")
	for _, p := range rec.Ports {
		fmt.Fprintf(&b, "  # %s\n", p.summary())
		if p.Service != "" {
			fmt.Fprintf(&b, "  - service: %q\n", p.Service)
		} else {
			fmt.Fprintf(&b, "  - container: %q\n", p.Container)
		}
		fmt.Fprintf(&b, "    ports: [\"%d/%s\"]\n", p.Port, p.Proto)
		fmt.Fprintf(&b, "    from: [%s]\n", quoted(p.prefixes()))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteLabels prints the same as container labels, per container (labels
// are set at create: the container is recreated with them).
func WriteLabels(w io.Writer, rec Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# dockmoat suggest: what observe mode let through since %s, as labels\n", stamp(rec.Since))
	b.WriteString("# that keep exactly that working once enforcing (recreate each container with\n")
	b.WriteString("# them, e.g. in its compose file's labels:), then 'dockmoat enforce'.\n")
	last := ""
	for _, p := range rec.Ports {
		if p.Container != last {
			who := p.Container
			if p.Service != "" {
				who += " (service " + p.Service + ")"
			}
			fmt.Fprintf(&b, "\n# %s\n", who)
			last = p.Container
		}
		fmt.Fprintf(&b, "dockmoat.allow.%d/%s: %q    # %s\n", p.Port, p.Proto, strings.Join(p.prefixes(), ", "), p.summary())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// summary is a port's counts and last sighting, for a comment.
func (p *Port) summary() string {
	n, last := 0, time.Time{}
	for _, s := range p.Sources {
		n += s.Count
		if s.Last.After(last) {
			last = s.Last
		}
	}
	return fmt.Sprintf("%s %d/%s: %d connection(s) from %d source(s), last seen %s", p.Container, p.Port, p.Proto, n, len(p.Sources), stamp(last))
}

// prefixes are the port's sources, collapsed.
func (p *Port) prefixes() []string {
	var addrs []netip.Addr
	for s := range p.Sources {
		if a, err := netip.ParseAddr(s); err == nil {
			addrs = append(addrs, a)
		}
	}
	var out []string
	for _, pf := range Collapse(addrs) {
		if pf.IsSingleIP() {
			out = append(out, pf.Addr().String())
		} else {
			out = append(out, pf.String())
		}
	}
	return out
}

// Collapse turns addresses into prefixes no wider than needed: three or
// more IPv4 addresses of one /24 become that /24, two or more IPv6
// addresses of one /64 that /64 (one network, often one host's privacy
// addresses); every other address stays itself. Nothing wider is ever
// suggested: a suggestion must not open a port to sources never seen.
func Collapse(addrs []netip.Addr) []netip.Prefix {
	groups := map[netip.Prefix][]netip.Addr{}
	for _, a := range addrs {
		bits := 24
		if a.Is6() {
			bits = 64
		}
		g, _ := a.Prefix(bits)
		if !slices.Contains(groups[g], a) {
			groups[g] = append(groups[g], a)
		}
	}
	var out []netip.Prefix
	for g, as := range groups {
		if min := map[bool]int{false: 3, true: 2}[g.Addr().Is6()]; len(as) >= min {
			out = append(out, g)
			continue
		}
		for _, a := range as {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return out
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func quoted(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
