package rules

import (
	"strings"
)

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
// texts never hold a double quote (Desc() strips them).
func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t[]\"'") {
		return `"` + s + `"`
	}
	return s
}
