// Package ipt is dockmoat's iptables backend (iptables-nft or
// iptables-legacy, with ipsets): it reads the filter table in one
// iptables-save per family, diffs dockmoat's chains by rule hash, applies
// what differs in one `iptables-restore --noflush` batch per table, then
// puts its jumps at the top of their chains in one more batch (hooks.go):
// the hook and the check's jump in DOCKER-USER (FORWARD while that is
// missing), and, while a port is published or a container's egress is
// limited, the input hook and its check in INPUT. A family without
// DOCKER-USER whose ports docker-proxy serves is managed input-only. What
// needs no exec is in netfilter/ipt/iptplan: the names, the rendering of
// the policy as chains, the reading of what is installed and the diff.
// It reads and writes iptables text through package iptsave.
//
// Fail-closed by construction: the default deny is written in the same
// atomic batch as the allows (in their chain, or DOCKMOAT-DENY with sets);
// what the chains let through is marked, and the check after the hook
// drops a new DNATed connection without the mark, so a flushed chain or a
// deleted hook closes; jumps are inserted before any stray copy is
// removed; and nothing is removed except by Uninstall.
package ipt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// Backend implements netfilter.Backend on the iptables binaries of one
// variant, and on ipsets when given a SetStore. Not safe for concurrent
// use: the reconciler serialises calls.
type Backend struct {
	families map[rules.Family]*Tables
	log      logrus.FieldLogger
	notifies bool
	// last is, per family, the ruleset last installed: what drift is
	// measured against and repairs put back without Docker; hookIn the
	// chain holding its hook (see FamilyPlan.HookIn).
	last   map[rules.Family]iptplan.Ruleset
	hookIn map[rules.Family]string
	sets   setRecord
	// memo saves re-deciding unchanged containers from pass to pass; inc
	// keeps the set grouping per family (see policy.Incremental).
	memo *policy.Memo
	inc  map[rules.Family]*policy.Incremental
	// hooked is, per family, whether the last pass found it hooked (not
	// skipped): its policy is then computed beside the listing.
	hooked map[rules.Family]bool
	// drift found outside Apply (set edits seen while planning), reported
	// by the next Apply.
	pending []string
	// listed is, per family, the last listing and the nf_tables
	// generation read just before it (Tables.Generation).
	listed map[rules.Family]listing
}

// listing is one family's filter table as read at generation gen (or
// known unchanged up to gen) at time at.
type listing struct {
	gen uint32
	obs iptplan.Observed
	at  time.Time
}

// listingAge bounds how long a listing is trusted on the notifications'
// word alone: past it the table is read again.
const listingAge = 10 * time.Second

// New returns the backend for the given tables; v6 may be nil (no IPv6
// handling). sets may be nil (no ipsets: one rule per allow).
func New(v4, v6 *Tables, sets SetStore, log logrus.FieldLogger) *Backend {
	fam := map[rules.Family]*Tables{}
	if v4 != nil {
		fam[rules.IPv4] = v4
	}
	if v6 != nil {
		fam[rules.IPv6] = v6
	}
	return &Backend{families: fam, log: log, notifies: v4 == nil || !strings.HasSuffix(v4.Tool, "-legacy"),
		hookIn: map[rules.Family]string{},
		last:   map[rules.Family]iptplan.Ruleset{}, hooked: map[rules.Family]bool{}, memo: policy.NewMemo(),
		listed: map[rules.Family]listing{},
		sets:   setRecord{store: sets, synced: map[string]uint64{}},
		inc:    map[rules.Family]*policy.Incremental{rules.IPv4: policy.NewIncremental(rules.IPv4), rules.IPv6: policy.NewIncremental(rules.IPv6)}}
}

// Notifies implements netfilter.Backend: iptables-nft rules live in
// nf_tables, which announces every change; legacy tables do not.
func (b *Backend) Notifies() bool { return b.notifies }

// observe reads one family's filter table in one listing, or, where the
// tables live in nf_tables, reuses the last listing while the ruleset
// generation has not moved since it was read (nothing, ours or anyone
// else's, has been committed since, so it is still exact), or while the
// nf_tables notifications show that what moved it touched nothing the
// listing reads (Tables.Changes: Docker's connect of a container writes
// its nat table and its own chains; so a pass at a connect need not list
// before the allow goes in), for listingAge at most. A pass that only
// changes set elements (ipsets are not nf_tables) then execs nothing.
// The generation is read before the listing, so a change made while
// listing moves it and the next pass lists again.
func (b *Backend) observe(ctx context.Context, fam rules.Family) (iptplan.Observed, error) {
	t := b.families[fam]
	gen, genErr := uint32(0), errors.New("no generation")
	if t.Generation != nil {
		gen, genErr = t.Generation()
		if l, ok := b.listed[fam]; ok && genErr == nil && (l.gen == gen || b.quiet(t, l, gen)) {
			l.gen = gen
			b.listed[fam] = l
			return l.obs, nil
		}
	}
	delete(b.listed, fam)
	data, err := t.Save(ctx, "filter")
	if err != nil {
		return iptplan.Observed{}, fmt.Errorf("reading %s filter table: %w", fam, err)
	}
	obs := iptplan.Observe(data)
	if genErr == nil {
		b.listed[fam] = listing{gen: gen, obs: obs, at: time.Now()}
	}
	return obs, nil
}

// quiet reports whether the nf_tables notifications prove that nothing a
// listing reads changed since l was made, up to generation gen.
func (b *Backend) quiet(t *Tables, l listing, gen uint32) bool {
	return t.Changes != nil && time.Since(l.at) < listingAge && t.Changes.Quiet(l.gen, gen)
}

// Plan implements netfilter.Backend.
func (b *Backend) Plan(ctx context.Context, cfg config.Config, snap rules.Snapshot, fresh bool) ([]netfilter.FamilyPlan, error) {
	useSets := b.sets.store != nil && !cfg.NoIPSet
	if fresh {
		b.sets.readAt = time.Time{} // read the sets in full
	}
	var plans []netfilter.FamilyPlan
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		if b.families[fam] == nil {
			continue
		}
		p, err := b.planFamily(ctx, cfg, snap, fam, useSets)
		if err != nil {
			return nil, err
		}
		if useSets && p.Skipped == "" {
			if err := b.diffSets(p); err != nil {
				return nil, err
			}
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// planFamily lists one family's table and computes its policy side by
// side: the listing is an exec (~2 ms) and the policy mostly CPU, and the
// policy does not depend on the listing. A family skipped last time
// (no DOCKER-USER) is only computed once the listing says it is hooked.
// The listing stays on this goroutine: a child process inherits the
// network namespace of the thread that starts it.
func (b *Backend) planFamily(ctx context.Context, cfg config.Config, snap rules.Snapshot, fam rules.Family, useSets bool) (netfilter.FamilyPlan, error) {
	opt := policy.Options{Sets: useSets, Memo: b.memo, Inc: b.inc[fam]}
	var early chan policy.Result
	if b.hooked[fam] {
		early = make(chan policy.Result, 1)
		go func() { early <- policy.Build(cfg, snap, fam, opt) }()
	}
	obs, err := b.observe(ctx, fam)
	var res policy.Result
	if early != nil {
		res = <-early // joined before anything else uses b.inc
	}
	if err != nil {
		return netfilter.FamilyPlan{}, err
	}
	p, hooked := iptplan.PlanWith(cfg, snap, fam, b.families[fam].Tool, obs, b.hooked[fam], b.bans(cfg), func() policy.Result {
		if early == nil {
			res = policy.Build(cfg, snap, fam, opt)
		}
		return res
	})
	b.hooked[fam] = hooked
	return p, nil
}

// Apply implements netfilter.Backend. A family that fails does not stop
// the other: each is applied, and the errors are returned together.
func (b *Backend) Apply(ctx context.Context, plans []netfilter.FamilyPlan) (netfilter.Applied, error) {
	out := netfilter.Applied{Drift: b.pending}
	b.pending = nil
	var errs []error
	for _, p := range plans {
		if p.Skipped != "" {
			continue
		}
		out.Drift = append(out.Drift, b.drift(p)...)
		changed, done, err := b.applyFamily(ctx, p, &out)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Family, err))
		}
		if done {
			out.Families = append(out.Families, netfilter.Installed{Plan: p, Changed: changed})
		}
	}
	return out, errors.Join(errs...)
}

// drift compares what is installed with what this backend installed last.
func (b *Backend) drift(p netfilter.FamilyPlan) []string {
	rs, ok := b.last[p.Family]
	if !ok {
		return nil
	}
	last := netfilter.HashesOf(rs.Chains)
	var out []string
	fam, d := p.Family.String()+": ", iptplan.DetailOf(p)
	if !d.InputOnly {
		out = append(out, netfilter.JumpDrift(fam+"hook", d.HookIn, d.HookPositions)...)
		if _, ok := last[iptplan.ChainCheck]; ok {
			out = append(out, netfilter.JumpDriftAt(fam+"check", d.HookIn, d.CheckPositions, 2)...)
		}
	}
	if _, ok := last[iptplan.ChainInput]; ok {
		out = append(out, netfilter.JumpDrift(fam+"input hook", iptplan.InputHookChain, d.Observed.InputHook)...)
		if _, ok := last[iptplan.ChainInputCheck]; ok {
			out = append(out, netfilter.JumpDriftAt(fam+"input check", iptplan.InputHookChain, d.Observed.InputCheck, 2)...)
		}
	}
	return append(out, netfilter.ChainDrift(fam, d.Observed.Owned, last)...)
}

// applyFamily installs one family's plan: sets, chains, hooks, stale
// chains. A failure to write the sets does not stop the rest: the chains
// carry the default deny and the catch-all for networks not seen yet,
// and a set lookup that lags only misses (closed). That error is returned
// once the rest is done. changed says whether rules or sets were written,
// done whether the plan is installed (with or without its sets).
func (b *Backend) applyFamily(ctx context.Context, p netfilter.FamilyPlan, out *netfilter.Applied) (changed, done bool, err error) {
	t, d := b.families[p.Family], iptplan.DetailOf(p)
	// Sets first: the rules that look them up must find them filled.
	setsChanged := d.SetChanges() > 0
	setErr := b.applySets(p)
	out.Wrote = out.Wrote || (setsChanged && setErr == nil)
	if d.Batch != "" {
		if err := b.ensureBan(p.Family, d.Batch); err != nil {
			return false, false, errors.Join(setErr, err)
		}
		if err := t.Restore(ctx, []byte(d.Batch)); err != nil {
			return false, false, errors.Join(setErr, fmt.Errorf("applying chains %s: %w", strings.Join(p.Changed, ", "), err))
		}
		out.Wrote = true
	}
	if d.DockerUserMissing && !d.InputOnly && b.hookIn[p.Family] != "FORWARD" {
		b.log.WithField("family", p.Family.String()).Warnf("chain %s does not exist in %s, or FORWARD does not jump to it: dockmoat hooks the top of FORWARD until Docker recreates it "+
			"(someone flushed or restored the filter table, Docker is not running, or it runs with \"iptables\": false, "+
			"which dockmoat cannot fully protect: turn Docker's iptables integration on, the default)", iptplan.HookChain, t.Tool)
	}
	fixed, err := fixHooks(ctx, t, d)
	if err != nil {
		return false, false, errors.Join(setErr, err)
	}
	out.HookFix = out.HookFix || fixed
	if len(d.Stale) > 0 {
		if err := t.Restore(ctx, []byte(iptplan.DeleteBatch(d.Stale))); err != nil {
			return false, false, errors.Join(setErr, fmt.Errorf("removing stale chains: %w", err))
		}
	}
	if b.sets.store != nil && len(p.Result.Sets) == 0 {
		// `ipset: off`: no rule uses the sets any more; remove them.
		if err := b.destroySets(p.Family); err != nil {
			return false, false, errors.Join(setErr, err)
		}
		b.sets.forget()
	}
	b.last[p.Family] = iptplan.RulesetOf(p)
	b.hookIn[p.Family] = d.HookIn
	return d.Batch != "" || setsChanged, true, setErr
}
