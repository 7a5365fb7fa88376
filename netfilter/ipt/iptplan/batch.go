package iptplan

import "github.com/dockmoat/dockmoat/netfilter/iptsave"

// RestoreChains is the batch that replaces the named chains of rs: each
// chain is declared (created, or flushed) and refilled in one
// iptables-restore, so it is never seen half-written and no other chain
// moves.
func RestoreChains(rs Ruleset, names []string) string {
	bt := iptsave.NewBatch()
	AddChains(bt, rs, names)
	return bt.Commit()
}

// AddChains declares the named chains of rs, then appends their rules.
func AddChains(bt *iptsave.Batch, rs Ruleset, names []string) {
	for _, name := range names {
		bt.Declare(name)
	}
	for _, name := range names {
		ch, _ := rs.Chain(name)
		for _, r := range ch.Rules {
			bt.Line(RuleLine(name, r))
		}
	}
}

// DeleteBatch flushes and deletes chains in one batch.
func DeleteBatch(chains []string) string {
	bt := iptsave.NewBatch()
	for _, c := range chains {
		bt.Declare(c)
	}
	for _, c := range chains {
		bt.Line("-X " + c)
	}
	return bt.Commit()
}
