// Package reconciler keeps the kernel firewall equal to the desired state
// computed by package rules. It is level-based: an event only says
// "something changed"; every pass reads Docker and the firewall in full,
// diffs by rule hash, and applies what differs in one
// `iptables-restore --noflush` batch per table, then puts the single hook
// rule at the top of DOCKER-USER with go-iptables (and, while docker-proxy
// serves a published port in a family, one jump at the top of INPUT to
// DOCKMOAT-INPUT). A family without DOCKER-USER whose ports docker-proxy
// serves is managed input-only. One family failing does not stop the other.
//
// Fail-closed by construction: the default deny lives in the same chain as
// the allows and is written in the same atomic batch; the hook is inserted
// before any stray copy is removed, so there is no instant without it; and
// nothing is ever removed on exit or on a failed Docker call. Only
// Uninstall removes dockmoat's rules.
//
// Thread safety: Sync, Plan and Uninstall serialise on an internal mutex;
// SetConfig may be called from any goroutine (SIGHUP).
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// dockerTimeout bounds one Docker snapshot.
const dockerTimeout = 15 * time.Second

// Source gives the current Docker state. dockerwatch implements it.
type Source interface {
	Snapshot(ctx context.Context) (rules.Snapshot, error)
}

// Reconciler owns dockmoat's chains in every family it is given.
type Reconciler struct {
	families map[rules.Family]*Tables
	src      Source
	log      logrus.FieldLogger

	// passMu serialises passes; mu guards the firewall and the state
	// below, and is never held across a Docker call, so that drift can be
	// repaired while a pass waits on a hung dockerd.
	passMu   sync.Mutex
	mu       sync.Mutex
	cfgMu    sync.Mutex
	cfg      config.Config
	reported map[string]bool // problems already logged
	// applied holds, per family, the chain hashes this process last
	// installed or verified, to tell drift from Docker changes.
	applied map[rules.Family]map[string][]string
	// ct, when set, cuts sessions whose access a pass withdrew, from a
	// worker beside the passes (see revoke.go).
	ct    Conntrack
	revMu sync.Mutex
	rev   revoker
	// last is the ruleset last installed per family, for repairs made
	// while Docker cannot be read.
	last map[rules.Family]rules.Ruleset
	// pendingDrift is drift repaired outside a pass, reported by the next.
	pendingDrift []string
	// hookIn is the chain holding the hook per family (see FamilyPlan.HookIn).
	hookIn map[rules.Family]string
	// nft is set for Docker's nftables backend (NewNFT); nftLast is the
	// last applied table script.
	nft     NFTRunner
	nftLast string
	// sets, when set, is the kernel's ipsets: allows go there unless the
	// config says `ipset: off` (see rules/sets.go). setState is what the
	// sets held when last read or written, setRead when they were last
	// read in full.
	sets     SetStore
	setState map[string]map[rules.SetElem]struct{}
	setRead  time.Time
	// setSynced is, per set, the generation of the rules.Incremental
	// result the set is known to hold (see rules.SetDelta).
	setSynced map[string]uint64
	// memo saves re-deciding unchanged containers from pass to pass; inc
	// keeps the set grouping per family (see rules.Incremental).
	memo *rules.Memo
	inc  map[rules.Family]*rules.Incremental
	// ufwSeen is, per family, whether the last listing had UFW's chain
	// (the one fact of the listing the rules depend on; see plan).
	ufwSeen map[rules.Family]bool
	// bridges are the last snapshot's bridges, and localNets where a
	// source counts as local for the revocation sweep (revoke.go).
	bridges   []string
	localNets func(bridges []string) []netip.Prefix
}

// UseSets gives the reconciler the kernel's ipsets: allows go there
// unless the config says `ipset: off`, and Uninstall removes them.
func (r *Reconciler) UseSets(s SetStore) {
	r.sets = s
	r.setState = nil
}

// SetConntrack enables revocation of live sessions (nil disables it).
// Call it before the first pass.
func (r *Reconciler) SetConntrack(ct Conntrack) { r.ct = ct }

// New returns a reconciler for Docker's iptables backend. v6 may be nil
// (no IPv6 handling).
func New(v4, v6 *Tables, src Source, cfg config.Config, log logrus.FieldLogger) *Reconciler {
	fam := map[rules.Family]*Tables{}
	if v4 != nil {
		fam[rules.IPv4] = v4
	}
	if v6 != nil {
		fam[rules.IPv6] = v6
	}
	return &Reconciler{families: fam, src: src, cfg: cfg, log: log, reported: map[string]bool{},
		applied: map[rules.Family]map[string][]string{}, hookIn: map[rules.Family]string{},
		last: map[rules.Family]rules.Ruleset{}, ufwSeen: map[rules.Family]bool{}, memo: rules.NewMemo(), setSynced: map[string]uint64{},
		localNets: interfaceNets,
		inc:       map[rules.Family]*rules.Incremental{rules.IPv4: rules.NewIncremental(rules.IPv4), rules.IPv6: rules.NewIncremental(rules.IPv6)}}
}

// Variant is the iptables variant of the IPv4 tables ("nft" or "legacy").
func (r *Reconciler) Variant() Variant {
	if r.nft != nil {
		return VariantNFT
	}
	if t := r.families[rules.IPv4]; t != nil && strings.HasSuffix(t.Variant, "-legacy") {
		return VariantLegacy
	}
	return VariantNFT
}

// SetConfig replaces the configuration used by the next pass.
func (r *Reconciler) SetConfig(cfg config.Config) {
	r.cfgMu.Lock()
	r.cfg = cfg
	r.cfgMu.Unlock()
}

func (r *Reconciler) config() config.Config {
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	return r.cfg
}

// FamilyPlan is the diff for one family.
type FamilyPlan struct {
	Family  rules.Family
	Variant string
	// Skipped is set when the family is not managed (no DOCKER-USER in
	// the ip6tables filter table: Docker does not manage IPv6 there).
	Skipped string
	// Unprotected is set with Skipped when Docker does forward that family
	// to containers but offers no DOCKER-USER to hook: a loud problem.
	Unprotected bool
	// NFT is the desired table text on the nftables backend.
	NFT    string
	Result rules.Result
	// UFW says whether unmatched traffic goes to ufw-user-forward.
	UFW bool
	// UFWMissing is set when config says ufw: on but the chain is absent.
	UFWMissing bool
	// Changed lists owned chains whose content differs (or are missing).
	Changed []string
	// Stale lists owned chains (rules.IsOwnedChain) no longer wanted.
	Stale []string
	// HookPositions are the hook's 1-based positions in HookChain.
	HookPositions []int
	// HookIn is the chain holding the hook: DOCKER-USER, or FORWARD for
	// ip6tables of Docker < 23 with ipv6_forward_hook.
	HookIn string
	// InputOnly is set for a family whose forward path dockmoat cannot
	// hook (no DOCKER-USER) but where docker-proxy serves published ports:
	// only DOCKMOAT-INPUT is managed; Note says why the rest is not.
	InputOnly bool
	Note      string
	// proxyAll: Docker does not DNAT this family at all.
	proxyAll bool
	// nftTable: the plan is part of table inet dockmoat, where the input
	// path is a base chain of the table (covered by Changed), not a jump.
	nftTable bool
	// DockerUserMissing is set when Docker's chain does not exist.
	DockerUserMissing bool
	// Batch is the iptables-restore input that fixes Changed.
	Batch    string
	Observed Observed
	// SetAdd and SetDel are the set elements to add and delete, per set,
	// and SetsMissing the sets to create (allows in ipsets only).
	SetAdd, SetDel map[string][]rules.SetElem
	SetsMissing    []string
}

// setChanges counts the set elements a plan adds and deletes.
func (p FamilyPlan) setChanges() int {
	n := len(p.SetsMissing)
	for _, e := range p.SetAdd {
		n += len(e)
	}
	for _, e := range p.SetDel {
		n += len(e)
	}
	return n
}

// InSync reports whether nothing needs to change.
func (p FamilyPlan) InSync() bool {
	return p.Skipped != "" || (len(p.Changed) == 0 && len(p.Stale) == 0 && p.setChanges() == 0 &&
		(p.InputOnly || slices.Equal(p.HookPositions, []int{1})) &&
		slices.Equal(p.Observed.InputHook, p.wantInputHook()))
}

// WantsInput reports whether the plan has DOCKMOAT-INPUT (and so its jump
// at the top of INPUT): some binding is served by docker-proxy.
func (p FamilyPlan) WantsInput() bool {
	_, ok := p.Result.Ruleset.Chain(rules.ChainInput)
	return ok && !p.nftTable
}

// wantInputHook is where the input hook belongs: first in INPUT, or nowhere.
func (p FamilyPlan) wantInputHook() []int {
	if p.WantsInput() {
		return []int{1}
	}
	return nil
}

// Plan computes what Sync would do, changing nothing.
func (r *Reconciler) Plan(ctx context.Context) ([]FamilyPlan, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	snap, err := r.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nft != nil {
		plans, _, err := r.planNFT(ctx, snap)
		return plans, err
	}
	r.setRead = time.Time{} // read the sets in full: plan shows the kernel's state
	return r.plan(ctx, snap)
}

// snapshot reads Docker, bounded so a hung dockerd cannot hang the loop.
func (r *Reconciler) snapshot(ctx context.Context) (rules.Snapshot, error) {
	dctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	snap, err := r.src.Snapshot(dctx)
	if err != nil {
		return snap, fmt.Errorf("reading containers from Docker: %w", err)
	}
	return snap, nil
}

// observe reads one family's filter table in one listing.
func (r *Reconciler) observe(ctx context.Context, fam rules.Family) (Observed, error) {
	data, err := r.families[fam].Save(ctx, "filter")
	if err != nil {
		return Observed{}, fmt.Errorf("reading %s filter table: %w", fam, err)
	}
	return ParseSave(data), nil
}

func (r *Reconciler) plan(ctx context.Context, snap rules.Snapshot) ([]FamilyPlan, error) {
	cfg := r.config()
	sets := r.sets != nil && !cfg.NoIPSet
	var plans []FamilyPlan
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		t := r.families[fam]
		if t == nil {
			continue
		}
		// The listing is an exec (~2 ms) and the recomputation mostly
		// CPU: run them side by side. The rules depend on the listing
		// only through whether UFW's chain is there, so the recomputation
		// assumes what the last listing said and is redone if that changed.
		// The listing stays on this goroutine: a child process inherits
		// the network namespace of the thread that starts it.
		opt := rules.Options{Sets: sets, Memo: r.memo, Inc: r.inc[fam]}
		var early chan rules.Result
		guess, guessed := r.ufwSeen[fam]
		if guessed {
			early = make(chan rules.Result, 1)
			go func(o rules.Options) {
				o.UFWForward = guess
				early <- rules.Build(cfg, snap, fam, o)
			}(opt)
		}
		obs, err := r.observe(ctx, fam)
		var guessRes rules.Result
		if early != nil {
			guessRes = <-early // joined before anything else uses r.inc
		}
		if err != nil {
			return nil, err
		}
		p, build := planHead(cfg, fam, t.Variant, obs)
		if !build {
			p.planInputOnly(cfg, snap)
		} else {
			if guessed && guess == p.UFW {
				p.Result = guessRes
			} else {
				opt.UFWForward = p.UFW
				p.Result = rules.Build(cfg, snap, fam, opt)
			}
			p.diff()
			r.ufwSeen[fam] = p.UFW
		}
		if sets && p.Skipped == "" {
			if err := r.diffSets(&p); err != nil {
				return nil, err
			}
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// PlanFamily is the pure part of a pass: observed state + inputs → diff.
// Audit uses it too, to tell whether the installed protection is intact.
// opt.Sets and opt.Memo are passed to rules.Build; UFWForward is decided here.
func PlanFamily(cfg config.Config, snap rules.Snapshot, fam rules.Family, variant string, obs Observed, opt rules.Options) FamilyPlan {
	p, build := planHead(cfg, fam, variant, obs)
	if !build {
		p.planInputOnly(cfg, snap)
		return p
	}
	opt.UFWForward = p.UFW
	p.Result = rules.Build(cfg, snap, fam, opt)
	p.diff()
	return p
}

// planHead reads from the observed table what the rules depend on: where
// the hook goes, and whether UFW's chain is there. build is false when
// the family is skipped.
func planHead(cfg config.Config, fam rules.Family, variant string, obs Observed) (p FamilyPlan, build bool) {
	p = FamilyPlan{Family: fam, Variant: variant, Observed: obs, HookPositions: obs.Hook, HookIn: rules.HookChain}
	if fam == rules.IPv6 && !obs.Chains[rules.HookChain] && obs.Chains["DOCKER"] && cfg.IPv6ForwardHook {
		// Docker 20.10 with --ip6tables: no DOCKER-USER, so the hook goes
		// to the top of FORWARD, where Docker ≥ 23 would jump to DOCKER-USER.
		p.HookIn, p.HookPositions = "FORWARD", obs.ForwardHook
	} else if !obs.Chains[rules.HookChain] {
		p.DockerUserMissing = true
		if fam == rules.IPv6 {
			p.Skipped = "no DOCKER-USER chain in the ip6tables filter table (Docker does not manage IPv6 here)"
			p.proxyAll = !obs.Chains["DOCKER"]
			if obs.Chains["DOCKER"] {
				// Docker 20.10 with --ip6tables publishes over IPv6 but
				// creates DOCKER-USER only for IPv4 (added in Docker 23).
				p.Skipped = "Docker manages ip6tables but created no DOCKER-USER chain there (Docker older than 23): IPv6 published ports are NOT protected by dockmoat; upgrade Docker, set ipv6_forward_hook: true in the config (dockmoat then hooks the top of ip6tables FORWARD), or publish on IPv4 addresses only (-p 0.0.0.0:PORT:PORT)"
				p.Unprotected = true
			}
			return p, false
		}
	}
	hasUFW := obs.Chains[rules.UFWChain]
	switch cfg.UFW {
	case config.UFWAuto:
		p.UFW = hasUFW
	case config.UFWOn:
		p.UFW, p.UFWMissing = hasUFW, !hasUFW
	}
	return p, true
}

// planInputOnly turns a skipped family into an input-only one when
// docker-proxy serves published ports there (or DOCKMOAT-INPUT is left
// from an earlier pass and must go): the proxy path is closed even where
// the forward path cannot be hooked.
func (p *FamilyPlan) planInputOnly(cfg config.Config, snap rules.Snapshot) {
	res := rules.Build(cfg, snap, p.Family, rules.Options{InputOnly: true, ProxyAll: p.proxyAll})
	_, had := p.Observed.Owned[rules.ChainInput]
	if len(res.Ruleset.Chains) == 0 && !had && len(p.Observed.InputHook) == 0 {
		return
	}
	p.InputOnly, p.Note, p.Skipped = true, p.Skipped, ""
	p.Result = res
	p.diff()
}

// diff fills Changed, Stale and Batch from p.Result and p.Observed.
func (p *FamilyPlan) diff() {
	want := map[string]bool{}
	for _, ch := range p.Result.Ruleset.Chains {
		want[ch.Name] = true
		got, ok := p.Observed.Owned[ch.Name]
		if !ok || !slices.Equal(got, ch.Hashes()) {
			p.Changed = append(p.Changed, ch.Name)
		}
	}
	for name := range p.Observed.Owned {
		if !want[name] {
			p.Stale = append(p.Stale, name)
		}
	}
	sort.Strings(p.Stale)
	if len(p.Changed) > 0 {
		p.Batch = p.Result.Ruleset.RestoreLines(p.Changed)
	}
}

// SyncResult tells what a pass changed.
type SyncResult struct {
	Plans    []FamilyPlan
	Applied  bool // a batch was restored
	HookFix  bool // the hook was (re)inserted or de-duplicated
	Problems []rules.Problem
	// Drift lists what someone else changed since our last pass ("hook
	// missing", "chain DOCKMOAT-INGRESS flushed"…); empty on the first pass
	// and when only Docker's state changed.
	Drift []string
}

// drift compares what is installed with what this process installed last.
func drift(p FamilyPlan, last map[string][]string) []string {
	if last == nil {
		return nil
	}
	var out []string
	fam := p.Family.String() + ": "
	if !p.DockerUserMissing {
		out = append(out, jumpDrift(fam+"hook", rules.HookChain, p.HookPositions)...)
	}
	if _, ok := last[rules.ChainInput]; ok {
		out = append(out, jumpDrift(fam+"input hook", rules.InputHookChain, p.Observed.InputHook)...)
	}
	names := make([]string, 0, len(last))
	for name := range last {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want := last[name]
		got, ok := p.Observed.Owned[name]
		switch {
		case !ok:
			out = append(out, fam+"chain "+name+" deleted")
		case len(got) == 0 && len(want) > 0:
			out = append(out, fam+"chain "+name+" flushed")
		case !slices.Equal(got, want):
			sortedGot, sortedWant := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
			if slices.Equal(sortedGot, sortedWant) {
				out = append(out, fam+"rule order changed in "+name)
			} else {
				out = append(out, fam+"chain "+name+" edited")
			}
		}
	}
	return out
}

// jumpDrift tells how a jump of dockmoat's that belongs first in chain
// was found at positions pos: missing, moved or duplicated (nil: in place).
func jumpDrift(what, chain string, pos []int) []string {
	switch {
	case len(pos) == 0:
		return []string{what + " missing"}
	case pos[0] != 1:
		return []string{what + " moved (rule order changed in " + chain + ")"}
	case len(pos) > 1:
		return []string{what + " duplicated"}
	}
	return nil
}

// Sync runs one full level-based pass: read everything, diff, apply.
func (r *Reconciler) Sync(ctx context.Context) (SyncResult, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	var res SyncResult
	snap, err := r.snapshot(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// Docker is unreachable: leave the policy as it was, but put back
		// what someone else removed meanwhile (the last installed state,
		// nothing new is opened).
		if _, rerr := r.repairLast(ctx); rerr != nil {
			err = fmt.Errorf("%w; repairing the last installed rules also failed: %v", err, rerr)
		}
		res.Drift, r.pendingDrift = r.pendingDrift, nil
		return res, err
	}
	if r.nft != nil {
		return res, r.syncNFT(ctx, snap, &res)
	}
	plans, err := r.plan(ctx, snap)
	if err != nil {
		return res, err
	}
	res.Plans = plans
	res.Drift, r.pendingDrift = r.pendingDrift, nil
	r.bridges = snap.Bridges
	// A family that fails does not stop the other: each is applied, and
	// the errors are returned together (the pass is retried).
	var errs []error
	for _, p := range plans {
		if p.Unprotected {
			res.Problems = append(res.Problems, rules.Problem{Container: "-", Label: p.Family.String(), Value: "DOCKER-USER missing", Msg: p.Skipped + p.Note, Fatal: true})
		}
		if p.Skipped != "" {
			continue
		}
		res.Problems = append(res.Problems, p.Result.Problems...)
		res.Drift = append(res.Drift, drift(p, r.applied[p.Family])...)
		if p.UFWMissing {
			res.Problems = append(res.Problems, rules.Problem{Container: "-", Label: "config ufw", Value: "on",
				Msg: "chain ufw-user-forward not found (is ufw enabled?); ufw route rules are not consulted, so those ports stay closed"})
		}
		if err := r.applyFamily(ctx, p, &res, len(res.Drift) > 0); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Family, err))
		}
	}
	r.report(res.Problems)
	return res, errors.Join(errs...)
}

// applyFamily installs one family's plan: sets, chains, hooks, stale
// chains. A failure to write the sets does not stop the rest: the chains
// carry the default deny and the catch-all for networks not seen yet,
// and a set lookup that lags only misses (closed). That error is returned
// once the rest is done.
func (r *Reconciler) applyFamily(ctx context.Context, p FamilyPlan, res *SyncResult, drifted bool) error {
	t := r.families[p.Family]
	// Sets first: the rules that look them up must find them filled.
	setsChanged := p.setChanges() > 0
	setErr := r.applySets(p)
	res.Applied = res.Applied || (setsChanged && setErr == nil)
	if p.Batch != "" {
		if err := t.Restore(ctx, []byte(p.Batch)); err != nil {
			return errors.Join(setErr, fmt.Errorf("applying chains %s: %w", strings.Join(p.Changed, ", "), err))
		}
		res.Applied = true
	}
	if p.DockerUserMissing && !p.InputOnly {
		return errors.Join(setErr, fmt.Errorf("chain %s does not exist in %s; is Docker running with its iptables integration enabled?", rules.HookChain, t.Variant))
	}
	fixed, err := fixHooks(t, p)
	if err != nil {
		return errors.Join(setErr, err)
	}
	res.HookFix = res.HookFix || fixed
	if len(p.Stale) > 0 {
		if err := deleteChains(ctx, t, p.Stale); err != nil {
			return errors.Join(setErr, fmt.Errorf("removing stale chains: %w", err))
		}
	}
	if r.sets != nil && len(p.Result.Ruleset.Sets) == 0 {
		// `ipset: off`: no rule uses the sets any more; remove them.
		if err := r.destroySets(p.Family); err != nil {
			return errors.Join(setErr, err)
		}
		r.setState = nil
	}
	last := map[string][]string{}
	for _, ch := range p.Result.Ruleset.Chains {
		last[ch.Name] = ch.Hashes()
	}
	r.applied[p.Family] = last
	r.last[p.Family] = p.Result.Ruleset
	r.hookIn[p.Family] = p.HookIn
	r.queueRevocation(p.Family, p.Result, p.Batch != "" || setsChanged, drifted)
	return setErr
}

// RepairLast puts back the last installed ruleset where someone changed
// it, without asking Docker: the fast path of drift repair, safe while a
// pass waits on a hung dockerd. It opens nothing that was not open.
func (r *Reconciler) RepairLast(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repairLast(ctx)
}

// observedPlan describes the installed hook of a family the way the last
// pass placed it, for drift checks made without Docker.
func (r *Reconciler) observedPlan(fam rules.Family, obs Observed) FamilyPlan {
	p := FamilyPlan{Family: fam, Observed: obs, HookPositions: obs.Hook, HookIn: rules.HookChain,
		DockerUserMissing: !obs.Chains[rules.HookChain]}
	if r.hookIn[fam] == "FORWARD" {
		p.HookIn, p.HookPositions, p.DockerUserMissing = "FORWARD", obs.ForwardHook, false
	}
	return p
}

// repairLast re-installs the last installed ruleset where it drifted.
func (r *Reconciler) repairLast(ctx context.Context) ([]string, error) {
	if r.nft != nil {
		return r.repairNFT(ctx)
	}
	var found []string
	for fam, rs := range r.last {
		t := r.families[fam]
		obs, err := r.observe(ctx, fam)
		if err != nil {
			return found, err
		}
		p := r.observedPlan(fam, obs)
		d := drift(p, r.applied[fam])
		if len(d) == 0 {
			continue
		}
		found = append(found, d...)
		var changed []string
		for _, ch := range rs.Chains {
			if got, ok := obs.Owned[ch.Name]; !ok || !slices.Equal(got, ch.Hashes()) {
				changed = append(changed, ch.Name)
			}
		}
		if len(changed) > 0 && len(rs.Sets) > 0 {
			// The chains look the sets up: make sure they exist and hold
			// the last installed elements before putting the chains back.
			r.setRead = time.Time{}
			sp := FamilyPlan{Family: fam, Result: rules.Result{Ruleset: rs}}
			if err := r.diffSets(&sp); err != nil {
				return found, err
			}
			if err := r.applySets(sp); err != nil {
				return found, fmt.Errorf("%s: %w", fam, err)
			}
		}
		if len(changed) > 0 {
			if err := t.Restore(ctx, []byte(rs.RestoreLines(changed))); err != nil {
				return found, fmt.Errorf("%s: restoring chains %v: %w", fam, changed, err)
			}
		}
		if !p.DockerUserMissing && !slices.Equal(p.HookPositions, []int{1}) {
			if err := ensureHook(t, p.HookIn); err != nil {
				return found, fmt.Errorf("%s: %w", fam, err)
			}
		}
		if _, ok := rs.Chain(rules.ChainInput); ok && !slices.Equal(obs.InputHook, []int{1}) {
			if err := ensureJump(t, rules.InputHookChain, rules.InputHookSpec(), isInputHook); err != nil {
				return found, fmt.Errorf("%s: %w", fam, err)
			}
		}
	}
	if len(found) > 0 {
		r.log.WithField("found", found).Warn("drift repaired: put back the last installed rules")
		r.pendingDrift = append(r.pendingDrift, found...)
	}
	return found, nil
}

// report logs each problem once, when it first appears.
func (r *Reconciler) report(problems []rules.Problem) {
	now := map[string]bool{}
	for _, p := range problems {
		s := p.String()
		if now[s] {
			continue
		}
		now[s] = true
		if !r.reported[s] {
			e := r.log.WithFields(logrus.Fields{"container": p.Container, "label": p.Label, "value": rules.ShortValue(p.Value)})
			if p.Fatal {
				e.Error(s)
			} else {
				e.Warn(s)
			}
		}
	}
	r.reported = now
}

// fixHooks puts the jumps a plan needs at the top of their chains (the
// hook in DOCKER-USER, or FORWARD, unless input-only; the input hook when
// DOCKMOAT-INPUT is wanted) and removes the input hook when that chain is
// no longer wanted, before the chain itself goes. fixed says whether
// anything was changed.
func fixHooks(t *Tables, p FamilyPlan) (fixed bool, err error) {
	if !p.InputOnly && !slices.Equal(p.HookPositions, []int{1}) {
		if err := ensureHook(t, p.HookIn); err != nil {
			return false, err
		}
		fixed = true
	}
	switch {
	case p.WantsInput() && !slices.Equal(p.Observed.InputHook, []int{1}):
		if err := ensureJump(t, rules.InputHookChain, rules.InputHookSpec(), isInputHook); err != nil {
			return fixed, err
		}
		fixed = true
	case !p.WantsInput() && len(p.Observed.InputHook) > 0:
		if err := removeJumps(t, rules.InputHookChain, rules.InputHookSpec(), len(p.Observed.InputHook)); err != nil {
			return fixed, err
		}
		fixed = true
	}
	return fixed, nil
}

// removeJumps deletes n copies of a jump; one already gone is fine.
func removeJumps(t *Tables, chain string, spec []string, n int) error {
	for range n {
		if err := t.Delete("filter", chain, spec...); err != nil && !isNotExist(err) {
			return fmt.Errorf("removing dockmoat's jump from %s: %w", chain, err)
		}
	}
	return nil
}

// ensureHook puts the hook at position 1 of DOCKER-USER (or FORWARD).
func ensureHook(t *Tables, chain string) error {
	return ensureJump(t, chain, rules.HookSpec(), isHook)
}

// ensureJump puts a jump of dockmoat's at position 1 of a chain and
// removes any other copy. It inserts first and deletes after, so the chain
// is never without it; it is idempotent.
func ensureJump(t *Tables, chain string, spec []string, is func(string) bool) error {
	lines, err := t.List("filter", chain)
	if err != nil {
		return fmt.Errorf("listing %s: %w", chain, err)
	}
	pos := jumpPositions(lines, is)
	if len(pos) == 0 || pos[0] != 1 {
		if err := t.Insert("filter", chain, 1, spec...); err != nil {
			return fmt.Errorf("inserting dockmoat's jump at the top of %s: %w", chain, err)
		}
		if lines, err = t.List("filter", chain); err != nil {
			return fmt.Errorf("listing %s: %w", chain, err)
		}
		pos = jumpPositions(lines, is)
	}
	// Delete extra copies from the bottom so positions above stay valid.
	for i := len(pos) - 1; i >= 1; i-- {
		if err := t.DeleteById("filter", chain, pos[i]); err != nil && !isNotExist(err) {
			return fmt.Errorf("removing duplicate hook at %s position %d: %w", chain, pos[i], err)
		}
	}
	return nil
}

// jumpPositions reads go-iptables List output (a "-N CHAIN" line, then
// one "-A" line per rule) and returns the 1-based positions of a jump.
func jumpPositions(lines []string, is func(string) bool) []int {
	var pos []int
	n := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		n++
		if is(l) {
			pos = append(pos, n)
		}
	}
	return pos
}

func isNotExist(err error) bool {
	var e *iptables.Error
	if errors.As(err, &e) && e.IsNotExist() {
		return true
	}
	var nf interface{ IsNotExist() bool }
	return errors.As(err, &nf) && nf.IsNotExist()
}

// deleteChains flushes and deletes owned chains in one batch.
func deleteChains(ctx context.Context, t *Tables, chains []string) error {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, c := range chains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, c := range chains {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return t.Restore(ctx, []byte(b.String()))
}

// destroySets removes a family's sets (no rule may still use them).
func (r *Reconciler) destroySets(fam rules.Family) error {
	for _, kind := range []string{rules.SetOpen, rules.SetFrom} {
		if err := r.sets.Destroy(rules.SetName(kind, fam)); err != nil {
			return fmt.Errorf("%s: %w", fam, err)
		}
	}
	return nil
}

// Uninstall removes the hook and every chain of dockmoat's, and nothing else.
// Running it twice is fine.
func (r *Reconciler) Uninstall(ctx context.Context) error {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nft != nil {
		return r.uninstallNFT(ctx)
	}
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		t := r.families[fam]
		if t == nil {
			continue
		}
		obs, err := r.observe(ctx, fam)
		if err != nil {
			return err
		}
		for _, j := range []struct {
			chain string
			spec  []string
			n     int
		}{
			{rules.HookChain, rules.HookSpec(), len(obs.Hook)},
			{"FORWARD", rules.HookSpec(), len(obs.ForwardHook)},
			{rules.InputHookChain, rules.InputHookSpec(), len(obs.InputHook)},
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
			if err := deleteChains(ctx, t, owned); err != nil {
				return fmt.Errorf("%s: deleting chains %s: %w", fam, strings.Join(owned, ", "), err)
			}
		}
		r.log.WithField("family", fam.String()).Infof("removed %d hook rule(s) and chains %v", len(obs.Hook)+len(obs.ForwardHook)+len(obs.InputHook), owned)
		if r.sets != nil {
			// After the chains: a set still referenced cannot be destroyed.
			if err := r.destroySets(fam); err != nil {
				return err
			}
		}
	}
	r.setState = nil
	return nil
}
