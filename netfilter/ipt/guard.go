package ipt

import (
	"context"
	"fmt"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

// Guard implements netfilter.Backend: the boot-time default deny
// (iptplan.GuardRuleset), installed before Docker starts. It creates
// DOCKER-USER and FORWARD's jump to it when Docker has not yet (Docker
// keeps an existing DOCKER-USER and re-inserts its own jump), then
// dockmoat's chains and the hook, and the docker-proxy path's chain for
// the ports of the last pass with its jump at the top of INPUT
// (iptplan.GuardInput). Where dockmoat's protection is already installed it does
// nothing, so a late guard never replaces the exact ruleset of a running
// dockmoat with the coarse one.
func (b *Backend) Guard(ctx context.Context, cfg config.Config, boot netfilter.Boot) ([]string, error) {
	var done []string
	foreign := rules.ForeignBridges(boot.Links, nil)
	for i, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		t := b.families[fam]
		if t == nil {
			continue
		}
		obs, err := b.observe(ctx, fam)
		if err != nil {
			return done, err
		}
		_, hasMain := obs.Owned[iptplan.ChainMain]
		_, hasIngress := obs.Owned[iptplan.ChainIngress]
		// The hook in FORWARD counts: a running dockmoat puts it there
		// while DOCKER-USER is missing.
		if (len(obs.Hook) > 0 || len(obs.ForwardHook) > 0) && hasMain && hasIngress {
			done = append(done, fam.String()+": protection already installed; left as it is")
			continue
		}
		input, hasInput := iptplan.GuardInput(cfg, fam, foreign, boot.Published[i])
		if err := t.Restore(ctx, []byte(guardBatch(cfg, fam, obs.Chains[iptplan.HookChain], foreign, input))); err != nil {
			return done, fmt.Errorf("%s: installing guard chains: %w", fam, err)
		}
		if err := ensureHook(ctx, t, iptplan.HookChain); err != nil {
			return done, fmt.Errorf("%s: %w", fam, err)
		}
		line := fam.String() + ": guard installed (new connections to containers dropped until dockmoat run)"
		if hasInput {
			if err := ensureJumps(ctx, t, iptplan.InputHookChain, []jump{{iptplan.InputHookSpec(), iptplan.IsInputHook}}); err != nil {
				return done, fmt.Errorf("%s: %w", fam, err)
			}
			line += fmt.Sprintf("; %d run(s) of the last pass's published ports closed on the docker-proxy path", len(boot.Published[i]))
		}
		done = append(done, line)
	}
	return done, nil
}

// guardBatch installs the guard chains (input: iptplan.GuardInput's, when it has
// rules), and DOCKER-USER with FORWARD's jump to it when Docker has not
// created them yet.
func guardBatch(cfg config.Config, fam rules.Family, hasDockerUser bool, foreign []string, input iptplan.OwnedChain) string {
	bt := iptsave.NewBatch()
	if !hasDockerUser {
		bt.Declare(iptplan.HookChain)
	}
	rs := iptplan.GuardRuleset(cfg, fam, foreign)
	names := []string{iptplan.ChainMain, iptplan.ChainIngress}
	if len(input.Rules) > 0 {
		rs.Chains = append(rs.Chains, input)
		names = append(names, iptplan.ChainInput)
	}
	iptplan.AddChains(bt, rs, names)
	if !hasDockerUser {
		bt.Line("-I FORWARD 1 -j " + iptplan.HookChain)
	}
	return bt.Commit()
}
