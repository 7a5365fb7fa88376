package ipt

import (
	"strings"
)

// batch writes `iptables-restore --noflush` input for the filter table:
// the one writer of that format. Everything in a batch commits or fails
// as one.
type batch struct{ b strings.Builder }

func newBatch() *batch {
	bt := &batch{}
	bt.b.WriteString("*filter\n")
	return bt
}

// declare creates a chain, or flushes it if it exists.
func (bt *batch) declare(chain string) { bt.b.WriteString(":" + chain + " - [0:0]\n") }

// line adds one command line ("-A …", "-X CHAIN", "-I FORWARD 1 …").
func (bt *batch) line(l string) { bt.b.WriteString(l + "\n") }

// chains declares the named chains of rs, then appends their rules: each
// chain is replaced atomically, never seen half-written, and no other
// chain moves.
func (bt *batch) chains(rs Ruleset, names []string) {
	for _, name := range names {
		bt.declare(name)
	}
	for _, name := range names {
		ch, _ := rs.Chain(name)
		for _, r := range ch.Rules {
			bt.line(RuleLine(name, r))
		}
	}
}

// commit ends the batch and returns its text.
func (bt *batch) commit() string {
	bt.b.WriteString("COMMIT\n")
	return bt.b.String()
}

// restoreChains is the batch that replaces the named chains of rs.
func restoreChains(rs Ruleset, names []string) string {
	bt := newBatch()
	bt.chains(rs, names)
	return bt.commit()
}

// deleteBatch flushes and deletes chains in one batch.
func deleteBatch(chains []string) string {
	bt := newBatch()
	for _, c := range chains {
		bt.declare(c)
	}
	for _, c := range chains {
		bt.line("-X " + c)
	}
	return bt.commit()
}
