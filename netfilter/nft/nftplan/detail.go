package nftplan

import (
	"fmt"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
)

// Detail is the nftables backend's part of a plan (netfilter.Detail).
// The table holds both families: the first plan carries the table's text
// and the script that replaces it, the other plans none.
type Detail struct {
	// Table is the desired table's text ("" on the plans after the first).
	Table string
	// Owned holds the installed chains' rule hashes, by chain.
	Owned map[string][]string
	// Batch is the nft script that replaces the table ("" when in sync).
	Batch string
}

// DetailOf is the nftables detail of p (an empty one for another's plan).
func DetailOf(p netfilter.FamilyPlan) *Detail {
	if d, ok := p.Detail.(*Detail); ok {
		return d
	}
	return &Detail{}
}

// InSync implements netfilter.Detail: the plan's Changed says it all.
func (d *Detail) InSync() bool { return true }

// WriteRules implements netfilter.Detail: the table, once.
func (d *Detail) WriteRules(b *strings.Builder, _ netfilter.FamilyPlan) {
	if d.Table == "" {
		b.WriteString("rules: in the inet table above\n")
		return
	}
	b.WriteString("rules (nft, both families):\n")
	for _, l := range strings.Split(strings.TrimRight(d.Table, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
}

// WriteDiff implements netfilter.Detail.
func (d *Detail) WriteDiff(b *strings.Builder, p netfilter.FamilyPlan) {
	for _, c := range p.Changed {
		switch _, ok := d.Owned[c]; {
		case strings.HasPrefix(c, "inet dockmoat"):
			fmt.Fprintf(b, "  %s differs: the table will be replaced atomically\n", c)
		case ok:
			fmt.Fprintf(b, "  chain %s differs: will be replaced atomically\n", c)
		default:
			fmt.Fprintf(b, "  chain %s missing: will be created\n", c)
		}
	}
}
