package iptsave

import "strings"

// Batch writes `iptables-restore --noflush` input for the filter table.
// Everything in a batch commits or fails as one.
type Batch struct{ b strings.Builder }

// NewBatch starts a batch for the filter table.
func NewBatch() *Batch {
	bt := &Batch{}
	bt.b.WriteString("*filter\n")
	return bt
}

// Declare creates a chain, or flushes it if it exists.
func (bt *Batch) Declare(chain string) { bt.b.WriteString(":" + chain + " - [0:0]\n") }

// Line adds one command line ("-A …", "-X CHAIN", "-I FORWARD 1 …").
func (bt *Batch) Line(l string) { bt.b.WriteString(l + "\n") }

// Commit ends the batch and returns its text.
func (bt *Batch) Commit() string {
	bt.b.WriteString("COMMIT\n")
	return bt.b.String()
}

// RuleLine renders one `-A` line with a comment; the comment goes right
// before the target so that iptables-save prints it back in the same
// place.
func RuleLine(chain string, spec []string, comment string) string {
	target := len(spec)
	for i, s := range spec {
		if s == "-j" || s == "-g" {
			target = i
			break
		}
	}
	parts := []string{"-A", chain}
	parts = append(parts, quoteAll(spec[:target])...)
	parts = append(parts, "-m", "comment", "--comment", quote(comment))
	parts = append(parts, quoteAll(spec[target:])...)
	return strings.Join(parts, " ")
}

// Command renders a command line of a batch other than `-A`: "-D CHAIN"
// or "-I CHAIN 1" followed by the spec, quoted for iptables-restore.
func Command(cmd string, spec []string) string {
	return cmd + " " + strings.Join(quoteAll(spec), " ")
}

func quoteAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = quote(s)
	}
	return out
}

// quote wraps an argument for iptables-restore's tokenizer when needed.
// dockmoat's texts never hold a double quote (rules.Desc strips them).
func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t[]\"'") {
		return `"` + s + `"`
	}
	return s
}
