package ipt

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// observedPlan describes the installed hooks of a family against where
// they belong now (planHead's rule, from the table alone), for drift
// checks made without Docker.
func (b *Backend) observedPlan(fam rules.Family, obs iptplan.Observed) netfilter.FamilyPlan {
	if !b.hooked[fam] {
		return netfilter.FamilyPlan{Family: fam, Detail: &iptplan.Detail{Observed: obs, InputOnly: true, WantCheck: true}}
	}
	d := &iptplan.Detail{Observed: obs, HookPositions: obs.Hook, HookIn: iptplan.HookChain,
		StrayHooks: len(obs.ForwardHook), CheckPositions: obs.Check, StrayChecks: len(obs.ForwardCheck), WantCheck: true}
	if !obs.DockerUserLive {
		d.HookIn, d.HookPositions, d.StrayHooks = "FORWARD", obs.ForwardHook, 0
		d.CheckPositions, d.StrayChecks = obs.ForwardCheck, 0
	}
	return netfilter.FamilyPlan{Family: fam, Detail: d}
}

// Intact implements netfilter.Backend: the hook first where it belongs
// (DOCKER-USER, or FORWARD while that is missing), the check's jump
// second, and neither anywhere else, the
// input hook first in INPUT if wanted, and every owned chain's hashes
// unchanged, one iptables-save per family.
func (b *Backend) Intact(ctx context.Context) (bool, error) {
	for fam, rs := range b.last {
		obs, err := b.observe(ctx, fam)
		if err != nil {
			return false, err
		}
		d := iptplan.DetailOf(b.observedPlan(fam, obs))
		_, d.InputChain = rs.Chain(iptplan.ChainInput)
		hooks := d.InputOnly || (d.HooksInPlace() && d.StrayHooks+d.StrayChecks == 0)
		if !hooks || !d.InputHooksInPlace() || !netfilter.Intact(obs.Owned, netfilter.HashesOf(rs.Chains)) {
			return false, nil
		}
	}
	return true, nil
}

// Repair implements netfilter.Backend: it re-installs the last installed
// ruleset of each family where it drifted.
func (b *Backend) Repair(ctx context.Context) ([]string, error) {
	var found []string
	for fam, rs := range b.last {
		obs, err := b.observe(ctx, fam)
		if err != nil {
			return found, err
		}
		p := b.observedPlan(fam, obs)
		d := b.drift(p)
		if len(d) == 0 {
			continue
		}
		found = append(found, d...)
		if err := b.repairFamily(ctx, p, rs); err != nil {
			return found, fmt.Errorf("%s: %w", fam, err)
		}
	}
	return found, nil
}

// repairFamily puts back the chains of rs that differ from those observed,
// their sets first, then the jumps.
func (b *Backend) repairFamily(ctx context.Context, p netfilter.FamilyPlan, rs iptplan.Ruleset) error {
	t := b.families[p.Family]
	d := iptplan.DetailOf(p)
	changed := netfilter.ChangedChains(rs.Chains, d.Observed.Owned)
	if len(changed) > 0 && len(rs.Sets) > 0 {
		// The chains look the sets up: make sure they exist and hold
		// the last installed elements before putting the chains back.
		b.sets.readAt = time.Time{}
		sp := netfilter.FamilyPlan{Family: p.Family, Result: policy.Result{Family: p.Family, Sets: rs.Sets}, Detail: &iptplan.Detail{}}
		if err := b.diffSets(sp); err != nil {
			return err
		}
		if err := b.applySets(sp); err != nil {
			return err
		}
	}
	if len(changed) > 0 {
		batch := iptplan.RestoreChains(rs, changed)
		if err := b.ensureBan(p.Family, batch); err != nil {
			return err
		}
		if err := t.Restore(ctx, []byte(batch)); err != nil {
			return fmt.Errorf("restoring chains %v: %w", changed, err)
		}
	}
	_, d.InputChain = rs.Chain(iptplan.ChainInput)
	_, err := fixHooks(ctx, t, d)
	return err
}

// destroySets removes a family's sets (no rule may still use them).
func (b *Backend) destroySets(fam rules.Family) error {
	for _, kind := range []string{policy.SetOpen, policy.SetFrom} {
		if err := b.sets.store.Destroy(iptplan.SetName(kind, fam)); err != nil {
			return fmt.Errorf("%s: %w", fam, err)
		}
	}
	return nil
}

// Uninstall implements netfilter.Backend: it removes the hooks and every
// chain and set of dockmoat's, and nothing else. Running it twice is fine.
func (b *Backend) Uninstall(ctx context.Context) error {
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		if b.families[fam] == nil {
			continue
		}
		if err := b.uninstallFamily(ctx, fam); err != nil {
			return err
		}
	}
	b.sets.forget()
	return nil
}

func (b *Backend) uninstallFamily(ctx context.Context, fam rules.Family) error {
	t := b.families[fam]
	obs, err := b.observe(ctx, fam)
	if err != nil {
		return err
	}
	for _, j := range []struct {
		chain string
		spec  []string
		n     int
	}{
		// The check's jumps first: alone, the check drops what no hook
		// marked (closed, never open, while this runs).
		{iptplan.HookChain, iptplan.CheckSpec(), len(obs.Check)},
		{"FORWARD", iptplan.CheckSpec(), len(obs.ForwardCheck)},
		{iptplan.InputHookChain, iptplan.InputCheckSpec(), len(obs.InputCheck)},
		{iptplan.HookChain, iptplan.HookSpec(), len(obs.Hook)},
		{"FORWARD", iptplan.HookSpec(), len(obs.ForwardHook)},
		{iptplan.InputHookChain, iptplan.InputHookSpec(), len(obs.InputHook)},
	} {
		if err := removeJumps(t, j.chain, j.spec, j.n); err != nil {
			return fmt.Errorf("%s: %w", fam, err)
		}
	}
	var owned []string
	for name := range obs.Owned {
		owned = append(owned, name)
	}
	sort.Strings(owned)
	if len(owned) > 0 {
		if err := t.Restore(ctx, []byte(iptplan.DeleteBatch(owned))); err != nil {
			return fmt.Errorf("%s: deleting chains %s: %w", fam, strings.Join(owned, ", "), err)
		}
	}
	n := len(obs.Hook) + len(obs.ForwardHook) + len(obs.Check) + len(obs.ForwardCheck) + len(obs.InputHook) + len(obs.InputCheck)
	b.log.WithField("family", fam.String()).Infof("removed %d hook rule(s) and chains %v", n, owned)
	if b.sets.store != nil {
		// After the chains: a set still referenced cannot be destroyed.
		if err := b.destroySets(fam); err != nil {
			return err
		}
		if _, ok := b.sets.store.(BanStore); ok {
			return b.sets.store.Destroy(iptplan.BanSet(fam))
		}
	}
	return nil
}
