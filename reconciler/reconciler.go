// Package reconciler is the level-based loop that keeps the kernel
// firewall equal to the policy: an event only says "something changed";
// every pass reads Docker in full, asks the backend (package netfilter:
// iptables or nftables) to plan against what the kernel holds, and applies
// the diff. Between passes it repairs drift without Docker (WatchDrift),
// and beside them it cuts the sessions whose access a pass withdrew
// (revoke.go). The loop holds no backend state and never branches on the
// backend.
//
// Nothing is ever removed on exit or on a failed Docker call: only
// Uninstall removes dockmoat's rules.
//
// Thread safety: Sync, Plan, Guard and Uninstall serialise on an internal
// mutex; SetConfig and SetDisabled may be called from any goroutine.
package reconciler

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
)

// dockerTimeout bounds one Docker snapshot.
const dockerTimeout = 15 * time.Second

// Source gives the current Docker state. dockerwatch implements it.
type Source interface {
	Snapshot(ctx context.Context) (rules.Snapshot, error)
}

// Reconciler drives one netfilter.Backend.
type Reconciler struct {
	nf  netfilter.Backend
	src Source
	log logrus.FieldLogger

	// passMu serialises passes; mu guards the backend and the state
	// below, and is never held across a Docker call, so that drift can be
	// repaired while a pass waits on a hung dockerd.
	passMu sync.Mutex
	mu     sync.Mutex
	cfgMu  sync.Mutex
	cfg    config.Config
	// disabled is `dockmoat disable` (state, not the file: a SIGHUP reload
	// keeps it); offBefore says the last pass installed the bypass, so the
	// next enabled one sweeps the sessions opened meanwhile.
	disabled  bool
	offBefore bool
	// mode is `dockmoat observe` or `dockmoat enforce` (state, not the
	// file), over the config's mode; offBefore is set while observing too.
	mode Mode
	// ufwAllows are ufw's plain rules as allows (config.UFWInput), kept
	// apart from the file's so that a reload does not drop them.
	ufwAllows []config.AllowRule
	// lastSnap is the last snapshot Docker gave, for an enable while
	// Docker hangs (dockerDown).
	lastSnap *rules.Snapshot
	reported map[string]bool // problems already logged
	// pendingDrift is drift repaired outside a pass, reported by the next.
	pendingDrift []string
	// ct, when set, cuts sessions whose access a pass withdrew, from a
	// worker beside the passes (see revoke.go).
	ct    Conntrack
	revMu sync.Mutex
	rev   revoker
	// bridges are the last snapshot's bridges, and localNets where a
	// source counts as local for the revocation sweep (revoke.go).
	bridges   []string
	localNets func(bridges []string) []netip.Prefix
	// routeIface names the interface the host routes an address by: an
	// iface:NAME source's sessions are told by it (revoke.go).
	routeIface func(netip.Addr) string
}

// SetConntrack enables revocation of live sessions (nil disables it).
// Call it before the first pass.
func (r *Reconciler) SetConntrack(ct Conntrack) { r.ct = ct }

// New returns a reconciler driving backend nf.
func New(nf netfilter.Backend, src Source, cfg config.Config, log logrus.FieldLogger) *Reconciler {
	return &Reconciler{nf: nf, src: src, cfg: cfg, log: log, reported: map[string]bool{}, localNets: interfaceNets, routeIface: routeIface}
}

// SetConfig replaces the configuration used by the next pass.
func (r *Reconciler) SetConfig(cfg config.Config) {
	r.cfgMu.Lock()
	r.cfg = cfg
	r.cfgMu.Unlock()
}

// Config is the configuration the next pass uses (the mode and
// `dockmoat disable` applied).
func (r *Reconciler) Config() config.Config { return r.config() }

// SetDisabled switches protection off (one bypass rule per hook, the
// rest kept up to date) or back on, from the next pass; it reports
// whether that changed anything.
func (r *Reconciler) SetDisabled(off bool) bool {
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	changed := r.disabled != off
	r.disabled = off
	return changed
}

// Mode says whether the config's mode (observe or enforce) holds, or a
// command's: `dockmoat observe` and `dockmoat enforce` record theirs in
// the state directory, and it wins over the file and the flag.
type Mode int

const (
	ModeFromConfig Mode = iota
	ModeObserve
	ModeEnforce
)

// SetMode sets the mode of the next pass; it reports whether the
// effective mode changed.
func (r *Reconciler) SetMode(m Mode) bool {
	before := r.config().Observe
	r.cfgMu.Lock()
	r.mode = m
	r.cfgMu.Unlock()
	return r.config().Observe != before
}

func (r *Reconciler) config() config.Config {
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	cfg := r.cfg
	cfg.Disabled = r.disabled
	switch r.mode {
	case ModeObserve:
		cfg.Observe = true
	case ModeEnforce:
		cfg.Observe = false
	}
	if cfg.UFWInput && len(r.ufwAllows) > 0 {
		cfg.Allow = append(slices.Clip(cfg.Allow), r.ufwAllows...)
	}
	return cfg
}

// SetUFWAllows sets ufw's plain rules as allows (used while the config
// says ufw_input: true); it reports whether they changed.
func (r *Reconciler) SetUFWAllows(allows []config.AllowRule) bool {
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	changed := !reflect.DeepEqual(r.ufwAllows, allows)
	r.ufwAllows = allows
	return changed
}

// Plan computes what Sync would do, changing nothing.
func (r *Reconciler) Plan(ctx context.Context) ([]netfilter.FamilyPlan, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	snap, err := r.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nf.Plan(ctx, r.config(), snap, true)
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

// Sync runs one full level-based pass: read everything, diff, apply.
func (r *Reconciler) Sync(ctx context.Context) (netfilter.SyncResult, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	snap, err := r.snapshot(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		return r.dockerDown(ctx, err)
	}
	r.lastSnap = &snap
	return r.pass(ctx, snap)
}

// dockerDown is a pass without Docker: leave the policy as it was, but
// put back what someone else removed meanwhile (the last installed state,
// nothing new is opened). One exception closes: `dockmoat enable` while
// Docker hangs (or `dockmoat enforce`) is applied at once, from the last
// snapshot, rather than leaving the bypass until Docker answers.
func (r *Reconciler) dockerDown(ctx context.Context, err error) (netfilter.SyncResult, error) {
	if cfg := r.config(); r.offBefore && !cfg.Disabled && !cfg.Observe && r.lastSnap != nil {
		res, perr := r.pass(ctx, *r.lastSnap)
		if perr != nil {
			err = fmt.Errorf("%w; enabling from the last snapshot also failed: %v", err, perr)
		}
		return res, err
	}
	res := netfilter.SyncResult{Observe: r.config().Observe}
	if _, rerr := r.repairLast(ctx); rerr != nil {
		err = fmt.Errorf("%w; repairing the last installed rules also failed: %v", err, rerr)
	}
	res.Drift, r.pendingDrift = r.pendingDrift, nil
	return res, err
}

// pass plans and applies the policy for snap (r.mu held).
func (r *Reconciler) pass(ctx context.Context, snap rules.Snapshot) (netfilter.SyncResult, error) {
	cfg := r.config()
	res := netfilter.SyncResult{Observe: cfg.Observe}
	plans, err := r.nf.Plan(ctx, cfg, snap, false)
	if err != nil {
		return res, err
	}
	res.Plans = plans
	r.bridges = snap.Bridges
	applied, err := r.nf.Apply(ctx, plans)
	res.Drift, r.pendingDrift = append(r.pendingDrift, applied.Drift...), nil
	res.Applied, res.HookFix = applied.Wrote, applied.HookFix
	for _, p := range plans {
		res.Problems = append(res.Problems, p.Problems()...)
	}
	r.revokeAfter(cfg.Disabled || cfg.Observe, applied, len(res.Drift) > 0)
	r.report(res.Problems)
	return res, err
}

// revokeAfter hands the pass's result to revocation. While disabled or
// observing nothing is cut (every port is Docker's, or let through); the
// first pass after enable or enforce sweeps, like one that repaired
// drift, so sessions opened meanwhile to ports the policy closes are cut.
func (r *Reconciler) revokeAfter(off bool, applied netfilter.Applied, drifted bool) {
	if off {
		r.offBefore = true
		return
	}
	for _, in := range applied.Families {
		r.queueRevocation(in.Plan.Family, in.Plan.Result, in.Changed, drifted || r.offBefore)
	}
	r.offBefore = false
}

// LastSnapshot is the last snapshot Docker gave (ok false before one).
func (r *Reconciler) LastSnapshot() (snap rules.Snapshot, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastSnap == nil {
		return rules.Snapshot{}, false
	}
	return *r.lastSnap, true
}

// Backend is the netfilter backend the reconciler drives.
func (r *Reconciler) Backend() netfilter.Backend { return r.nf }

// RepairLast puts back the last installed ruleset where someone changed
// it, without asking Docker: the fast path of drift repair, safe while a
// pass waits on a hung dockerd. It opens nothing that was not open.
func (r *Reconciler) RepairLast(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repairLast(ctx)
}

func (r *Reconciler) repairLast(ctx context.Context) ([]string, error) {
	found, err := r.nf.Repair(ctx)
	if err != nil || len(found) == 0 {
		return found, err
	}
	r.log.WithField("found", found).Warn("drift repaired: put back the last installed rules")
	r.pendingDrift = append(r.pendingDrift, found...)
	return found, nil
}

// Intact reports whether the installed rules still equal what this process
// last installed. One listing, no Docker call, so it is cheap enough to
// run on every netfilter change notification.
func (r *Reconciler) Intact(ctx context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nf.Intact(ctx)
}

// Guard installs the boot-time default deny before Docker starts (see
// netfilter.Backend.Guard).
func (r *Reconciler) Guard(ctx context.Context, cfg config.Config, boot netfilter.Boot) ([]string, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nf.Guard(ctx, cfg, boot)
}

// Uninstall removes everything of dockmoat's, and nothing else. Running
// it twice is fine.
func (r *Reconciler) Uninstall(ctx context.Context) error {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nf.Uninstall(ctx)
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
