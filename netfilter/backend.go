// Package netfilter is the seam between the reconcile loop and the kernel.
// A Backend is one way of holding dockmoat's rules: package ipt for the
// iptables variants (with ipsets), package nft for Docker's nftables
// backend. The loop (package reconciler) drives a Backend and never knows
// which one it holds; each Backend keeps its own record of what it
// installed. This package also holds what both share and the loop, audit,
// metrics and the CLI read: the per-family plan, drift wording, and how a
// plan is shown to people.
package netfilter

import (
	"context"
	"fmt"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// Backend holds dockmoat's rules in the kernel. Callers serialise calls
// (the reconciler does); no method removes protection except Uninstall.
type Backend interface {
	// Plan reads what is installed and returns, per family, the policy
	// for cfg and snap and what differs from the kernel. fresh asks it to
	// trust no cached view of the kernel (the `plan` command).
	Plan(ctx context.Context, cfg config.Config, snap rules.Snapshot, fresh bool) ([]FamilyPlan, error)
	// Apply installs plans made by the last Plan and records them as the
	// last installed state. It applies every family it can, and returns
	// the errors of the others together.
	Apply(ctx context.Context, plans []FamilyPlan) (Applied, error)
	// Repair puts back the last installed state where someone else changed
	// it, without a new policy: safe while Docker cannot be read. It
	// returns what it found changed.
	Repair(ctx context.Context) ([]string, error)
	// Intact reports whether the installed rules still equal the last
	// installed state. It is cheap: one listing, no Docker call.
	Intact(ctx context.Context) (bool, error)
	// Guard installs the boot-time default deny, unless dockmoat's
	// protection is already there; it returns one line per family.
	Guard(ctx context.Context, cfg config.Config, boot Boot) ([]string, error)
	// Uninstall removes everything of dockmoat's, and nothing else.
	Uninstall(ctx context.Context) error
	// Notifies reports whether the kernel announces changes to these
	// rules (nf_tables netlink events); if not, drift is polled.
	Notifies() bool
}

// Applied tells what an Apply changed.
type Applied struct {
	Wrote   bool // rules or set elements were written
	HookFix bool // a jump was (re)inserted, moved, de-duplicated or removed
	// Drift lists what someone else changed since the last Apply.
	Drift []string
	// Families lists the families installed, in plan order; Changed says
	// whether this Apply changed what is installed there.
	Families []Installed
}

// Installed is one family an Apply installed.
type Installed struct {
	Plan    FamilyPlan
	Changed bool
}

// SyncResult tells what a pass of the reconcile loop changed.
type SyncResult struct {
	Plans    []FamilyPlan
	Applied  bool // rules or set elements were written
	HookFix  bool // a jump was (re)inserted or de-duplicated
	Problems []rules.Problem
	// Drift lists what someone else changed since our last pass ("hook
	// missing", "chain DOCKMOAT-INGRESS flushed"…); empty on the first pass
	// and when only Docker's state changed.
	Drift []string
	// Observe: the pass ran in observe mode (config.Observe).
	Observe bool
}

// RestoreError keeps the batch that failed (an iptables-restore or nft
// script), so the log can show its lines.
type RestoreError struct {
	Cmd    string
	Err    error
	Stderr string
	Input  string
}

func (e *RestoreError) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, e.Stderr)
}

func (e *RestoreError) Unwrap() error { return e.Err }

// Boot is what `dockmoat guard` knows before Docker starts.
type Boot struct {
	// Links are the host's interfaces (the host's own br-* bridges are
	// exempted by name: rules.ForeignBridges).
	Links []string
	// Published are the published ports of dockmoat's last pass, IPv4
	// then IPv6. dockerd restarts its restart-policy containers on them,
	// and docker-proxy answers them over INPUT before dockmoat's first
	// pass: the guard closes them there too.
	Published [2][]policy.PortRun
}
