package ipt

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

// UFWInput reads ufw's plain rules (iptplan.UFWInputChain) from each family's
// filter table, for `ufw_input: true` (UFWInputAllows). Skipped says which
// rules were not translated, and why.
func (b *Backend) UFWInput(ctx context.Context) (allows []config.AllowRule, skipped []string, err error) {
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		t := b.families[fam]
		if t == nil {
			continue
		}
		data, err := t.Save(ctx, "filter")
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s filter table for ufw's rules: %w", fam, err)
		}
		a, s := UFWInputAllows(iptsave.Parse(data)["filter"], fam)
		allows, skipped = append(allows, a...), append(skipped, s...)
	}
	return allows, skipped, nil
}

// ufwRule is one rule of ufw-user-input as far as dockmoat reads it.
type ufwRule struct {
	text   string
	accept bool
	proto  string // "" = every protocol
	ports  []config.PortSpec
	src    config.Sources
	odd    string // why it cannot be translated
}

// UFWInputAllows turns ufw's plain allow rules into allow rules for every
// container publishing the port (the host port, as a ufw user means it),
// from the rule's source: `ufw allow 443/tcp`, `ufw allow from
// 198.51.100.0/24 to any port 22 proto tcp`. ufw's rules decide in order:
// an allow that a deny (or anything dockmoat does not read) before it may
// shadow is not translated, nor is a rule with matches dockmoat does not
// read (`ufw limit`, an interface, a destination address); each one
// skipped is said. Nothing is ever opened that ufw itself would refuse.
func UFWInputAllows(filter *iptsave.Table, fam rules.Family) ([]config.AllowRule, []string) {
	if filter == nil || filter.Chains[iptplan.UFWInputChain(fam)] == nil {
		return nil, nil
	}
	var allows []config.AllowRule
	var skipped []string
	var before []ufwRule
	for _, r := range filter.Chains[iptplan.UFWInputChain(fam)].Rules {
		u := readUFWRule(r)
		switch {
		case strings.HasPrefix(u.odd, "target ufw-user-limit"):
			skipped = append(skipped, fmt.Sprintf("%s: ufw rule '%s' (ufw limit) is not translated: dockmoat has no rate limit; open the port with a label or the config file", fam, u.text))
			before = append(before, u)
			continue
		case !u.accept:
			before = append(before, u)
			continue
		case u.odd != "":
			skipped = append(skipped, fmt.Sprintf("%s: ufw rule '%s': %s", fam, u.text, u.odd))
			before = append(before, u)
			continue
		}
		if i := shadowedBy(u, before); i >= 0 {
			skipped = append(skipped, fmt.Sprintf("%s: ufw rule '%s' comes after '%s', which may refuse some of what it allows: open those ports with a label or the config file", fam, u.text, before[i].text))
			continue
		}
		before = append(before, u)
		allows = append(allows, config.AllowRule{Container: "*", Ports: u.ports, From: u.src, Origin: "ufw rule '" + u.text + "' (ufw_input)"})
	}
	return allows, skipped
}

// readUFWRule reads the matches ufw writes for a plain rule.
func readUFWRule(r iptsave.Rule) ufwRule {
	u := ufwRule{text: r.Raw, src: config.Sources{Any: true}}
	target, _ := targetOfArgs(r.Args)
	u.accept = target == "ACCEPT"
	if !u.accept {
		u.odd = "target " + target
	}
	var ports []string
	for i := 0; i < len(r.Args); i++ {
		a, next := r.Args[i], ""
		if i+1 < len(r.Args) {
			next = r.Args[i+1]
		}
		switch a {
		case "-p":
			u.proto, i = next, i+1
		case "-m", "-j", "--comment":
			i++
		case "-s":
			p, ok := parseSource(next)
			if !ok {
				u.odd = "source " + next
			}
			u.src, i = config.Sources{Prefixes: []config.Source{p}}, i+1
		case "--dport", "--dports":
			ports, i = strings.Split(next, ","), i+1
		default:
			u.odd = "match " + a + " (ufw limit, an interface, a destination or a port of the client)"
		}
	}
	if len(ports) == 0 {
		ports = []string{"*"}
	}
	for _, p := range ports {
		spec, err := config.ParsePortSpec(strings.ReplaceAll(p, ":", "-") + protoSuffix(u.proto))
		if err != nil {
			u.odd = err.Error()
			continue
		}
		u.ports = append(u.ports, spec)
	}
	return u
}

func protoSuffix(p string) string {
	if p == "" || p == "all" {
		return ""
	}
	return "/" + p
}

func parseSource(s string) (config.Source, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return config.Source{}, false
}

// shadowedBy returns the index of an earlier rule that may match some of
// what u allows (same protocol or either for every protocol, an
// overlapping port, an overlapping source), or -1.
func shadowedBy(u ufwRule, before []ufwRule) int {
	for i, b := range before {
		if u.proto != "" && b.proto != "" && u.proto != b.proto {
			continue
		}
		if !sourcesOverlap(u.src, b.src) || !portsOverlap(u.ports, b.ports) {
			continue
		}
		if b.accept && b.odd == "" {
			continue // an earlier allow never takes anything away
		}
		return i
	}
	return -1
}

func sourcesOverlap(a, b config.Sources) bool {
	if a.Any || b.Any {
		return true
	}
	for _, p := range a.Prefixes {
		for _, q := range b.Prefixes {
			if p.Overlaps(q) {
				return true
			}
		}
	}
	return false
}

func portsOverlap(a, b []config.PortSpec) bool {
	if len(a) == 0 || len(b) == 0 {
		return true // unreadable ports: assume they overlap
	}
	for _, p := range a {
		for _, q := range b {
			if p.All || q.All || (p.From <= q.To && q.From <= p.To) {
				return true
			}
		}
	}
	return false
}

// targetOfArgs is the -j (or -g) target of a rule's arguments.
func targetOfArgs(args []string) (string, bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-j" || args[i] == "-g" {
			return args[i+1], true
		}
	}
	return "", false
}
