package rules

import (
	"strings"
)

// RestoreLines renders `iptables-restore --noflush` input that replaces the
// named chains of the filter table atomically. Declaring `:CHAIN - [0:0]`
// creates the chain or flushes it, and the whole batch commits or fails as
// one, so a chain is never seen half-written and no other chain moves.
func (rs Ruleset) RestoreLines(chains []string) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, name := range chains {
		b.WriteString(":" + name + " - [0:0]\n")
	}
	for _, name := range chains {
		ch, _ := rs.Chain(name)
		for _, r := range ch.Rules {
			b.WriteString(RuleLine(name, r))
			b.WriteByte('\n')
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// RuleLine renders one `-A` line; the comment goes right before the target
// so that iptables-save prints it back in the same place.
func RuleLine(chain string, r Rule) string {
	spec := r.Spec
	target := len(spec)
	for i, s := range spec {
		if s == "-j" || s == "-g" {
			target = i
			break
		}
	}
	parts := []string{"-A", chain}
	parts = append(parts, quoteAll(spec[:target])...)
	parts = append(parts, "-m", "comment", "--comment", quote(r.Comment()))
	parts = append(parts, quoteAll(spec[target:])...)
	return strings.Join(parts, " ")
}

func quoteAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = quote(s)
	}
	return out
}

// quote wraps an argument for iptables-restore's tokenizer when needed. Our
// texts never hold a double quote (desc() strips them).
func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t[]\"'") {
		return `"` + s + `"`
	}
	return s
}
