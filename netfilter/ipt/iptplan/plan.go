// Package iptplan is the iptables backend's pure half: what dockmoat
// installs with iptables and how it compares with what is installed, with
// no exec. It owns the chain, ipset and hashlimit names (names.go),
// renders the policy of package rules as chains (render.go: the
// fail-closed layout is described there) and as iptables-restore
// batches (batch.go), reads an iptables-save listing into Observed
// (observe.go), and diffs the two into a netfilter.FamilyPlan with its
// Detail (plan.go, detail.go). netfilter/ipt runs what it plans; audit
// uses PlanFamily to tell whether the installed protection is intact.
package iptplan

import (
	"sort"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// PlanFamily is the pure part of a pass: observed state + inputs → diff.
// Audit uses it too, to tell whether the installed protection is intact.
// opt is passed to policy.Build; whether to hand over to UFW is decided here.
// bans says whether the family's chains refuse its ban set first.
func PlanFamily(cfg config.Config, snap rules.Snapshot, fam rules.Family, tool string, obs Observed, opt policy.Options, bans bool) netfilter.FamilyPlan {
	p, _ := PlanWith(cfg, snap, fam, tool, obs, false, bans, func() policy.Result { return policy.Build(cfg, snap, fam, opt) })
	return p
}

// PlanWith plans a family from its observed table: a skipped family is
// planned input-only; a hooked one gets the policy (asked of policy only
// then) rendered and diffed. hooked says which; wasHooked, whether the
// last pass hooked the family (see planHead).
func PlanWith(cfg config.Config, snap rules.Snapshot, fam rules.Family, tool string, obs Observed, wasHooked, bans bool, policy func() policy.Result) (p netfilter.FamilyPlan, hooked bool) {
	p, hooked = planHead(cfg, fam, tool, obs, wasHooked)
	if !hooked {
		planInputOnly(&p, cfg, snap, bans)
		return p, false
	}
	p.Result = policy()
	render(&p, cfg, RenderOptions{UFWForward: DetailOf(p).UFW, Bans: bans})
	return p, true
}

// planHead reads from the observed table what the rules depend on: where
// the hook goes, and whether UFW's chain is there. build is false when
// the family is skipped.
//
// Where DOCKER-USER is missing, or FORWARD does not jump to it, in a
// family Docker forwards (always IPv4; IPv6 once hooked, with the hook
// already in FORWARD, or with DOCKER-USER present but unreached), the hook
// goes to the top of FORWARD until Docker recreates its chain: a foreign
// restore or firewalld's flush removes Docker's chains, and Docker's
// DNAT (in the nat table) may still send packets through a FORWARD that
// now accepts them. It moves back to DOCKER-USER when that is live again.
func planHead(cfg config.Config, fam rules.Family, tool string, obs Observed, wasHooked bool) (p netfilter.FamilyPlan, build bool) {
	d := &Detail{Observed: obs, HookPositions: obs.Hook, HookIn: HookChain, CheckPositions: obs.Check, WantCheck: true}
	p = netfilter.FamilyPlan{Family: fam, Tool: tool, Detail: d}
	switch {
	case obs.DockerUserLive:
		d.StrayHooks, d.StrayChecks = len(obs.ForwardHook), len(obs.ForwardCheck)
	case fam == rules.IPv6 && obs.Chains["DOCKER"] && cfg.IPv6ForwardHook:
		// Docker 20.10 with --ip6tables: no DOCKER-USER, so the hook goes
		// to the top of FORWARD, where Docker ≥ 23 would jump to DOCKER-USER.
		d.HookIn, d.HookPositions, d.CheckPositions = "FORWARD", obs.ForwardHook, obs.ForwardCheck
	case fam == rules.IPv4 || wasHooked || len(obs.ForwardHook) > 0 || obs.Chains[HookChain]:
		d.HookIn, d.HookPositions, d.CheckPositions, d.DockerUserMissing = "FORWARD", obs.ForwardHook, obs.ForwardCheck, true
	default:
		d.DockerUserMissing = true
		p.Skipped = "no DOCKER-USER chain in the ip6tables filter table (Docker does not manage IPv6 here)"
		d.ProxyAll = !obs.Chains["DOCKER"]
		if obs.Chains["DOCKER"] {
			// Docker 20.10 with --ip6tables publishes over IPv6 but
			// creates DOCKER-USER only for IPv4 (added in Docker 23).
			p.Skipped = "Docker manages ip6tables but created no DOCKER-USER chain there (Docker older than 23): IPv6 published ports are NOT protected by dockmoat; upgrade Docker, set ipv6_forward_hook: true in the config (dockmoat then hooks the top of ip6tables FORWARD), or publish on IPv4 addresses only (-p 0.0.0.0:PORT:PORT)"
			p.Unprotected = true
		}
		return p, false
	}
	hasUFW := obs.Chains[UFWChain(fam)]
	switch cfg.UFW {
	case config.UFWAuto:
		d.UFW = hasUFW
	case config.UFWOn:
		d.UFW, p.UFWMissing = hasUFW, !hasUFW
	}
	return p, true
}

// planInputOnly turns a skipped family into an input-only one when
// docker-proxy serves published ports there (or DOCKMOAT-INPUT is left
// from an earlier pass and must go): the proxy path is closed even where
// the forward path cannot be hooked.
func planInputOnly(p *netfilter.FamilyPlan, cfg config.Config, snap rules.Snapshot, bans bool) {
	d := DetailOf(*p)
	res := policy.Build(cfg, snap, p.Family, policy.Options{ProxyAll: d.ProxyAll})
	_, had := d.Observed.Owned[ChainInput]
	if len(res.Proxied) == 0 && !had && len(d.Observed.InputHook) == 0 {
		return
	}
	d.InputOnly, p.Note, p.Skipped = true, p.Skipped, ""
	p.Result = res
	render(p, cfg, RenderOptions{InputOnly: true, Bans: bans})
}

// render renders p.Result and fills Rules and Changed, and the detail's
// InputChain, Stale and Batch, against the observed chains: chains whose
// rule hashes differ, owned chains no longer wanted, and the batch that
// rewrites the former.
func render(p *netfilter.FamilyPlan, cfg config.Config, opt RenderOptions) {
	d := DetailOf(*p)
	rs := Render(cfg, p.Result, opt)
	_, d.InputChain = rs.Chain(ChainInput)
	r := rendered{rs: rs, inputHook: d.InputChain}
	if !opt.InputOnly {
		r.hookIn = d.HookIn
	}
	p.Rules = r
	p.Changed = netfilter.ChangedChains(rs.Chains, d.Observed.Owned)
	for name := range d.Observed.Owned {
		if _, wanted := rs.Chain(name); !wanted {
			d.Stale = append(d.Stale, name)
		}
	}
	sort.Strings(d.Stale)
	if len(p.Changed) > 0 {
		d.Batch = RestoreChains(rs, p.Changed)
	}
}
