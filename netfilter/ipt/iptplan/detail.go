package iptplan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/setelem"
)

// Observed is what one listing of the filter table says about the chains
// dockmoat cares about (Observe reads it from iptables-save). It is read
// in one listing per pass: no per-rule check.
type Observed struct {
	// Chains lists every chain of the table (builtin and user).
	Chains map[string]bool
	// Owned holds, per chain of dockmoat's (IsOwnedChain), the hash
	// of each rule in order ("" for a rule without a dockmoat comment:
	// someone else's rule in our chain, which makes the chain differ and
	// be rewritten).
	Owned map[string][]string
	// Hook lists the 1-based positions of dockmoat's hook in DOCKER-USER.
	Hook []int
	// Check and ForwardCheck list the positions of the jump to the
	// check (second after the hook: the fail-closed layout) in
	// DOCKER-USER and in FORWARD.
	Check, ForwardCheck []int
	// DockerUser is the raw rule lines of DOCKER-USER, for audit and tests.
	DockerUser []string
	// ForwardHook lists the hook's positions in FORWARD, where it sits on
	// ip6tables of Docker older than 23 with ipv6_forward_hook enabled,
	// and while DOCKER-USER is not live.
	ForwardHook []int
	// DockerUserLive: DOCKER-USER exists and FORWARD jumps to it (while
	// Docker recreates its chains, the first may hold without the second).
	DockerUserLive bool
	// InputHook lists the positions of the jump to DOCKMOAT-INPUT in
	// INPUT (the docker-proxy path, rules/policy/proxy.go), InputCheck those of
	// the jump to its check (second after it).
	InputHook, InputCheck []int
}

// Detail is the iptables backend's part of a plan (netfilter.Detail):
// where its jumps are and belong, the batch that rewrites what differs,
// and the set elements to add and delete.
type Detail struct {
	Observed Observed
	// InputChain: the plan has DOCKMOAT-INPUT, reached by a jump from the
	// top of INPUT (the docker-proxy path).
	InputChain bool
	// UFW says whether unmatched traffic goes to ufw-user-forward.
	UFW bool
	// Stale lists owned chains (IsOwnedChain) no longer wanted.
	Stale []string
	// HookPositions are the hook's 1-based positions in HookIn.
	HookPositions []int
	// HookIn is the chain holding the hook: DOCKER-USER, or FORWARD for
	// ip6tables of Docker < 23 with ipv6_forward_hook and while Docker's
	// DOCKER-USER is missing (DockerUserMissing).
	HookIn string
	// StrayHooks counts copies of the hook in FORWARD once it belongs in
	// DOCKER-USER again (left from while DOCKER-USER was missing), and
	// StrayChecks copies of the check's jump there.
	StrayHooks, StrayChecks int
	// CheckPositions are the positions in HookIn of the jump to the
	// check, which belongs right after the hook when WantCheck.
	CheckPositions []int
	WantCheck      bool
	// InputOnly is set for a family whose forward path dockmoat cannot
	// hook (no DOCKER-USER) but where docker-proxy serves published ports:
	// only DOCKMOAT-INPUT is managed; the plan's Note says why.
	InputOnly bool
	// ProxyAll: Docker does not DNAT this family at all.
	ProxyAll bool
	// DockerUserMissing is set when Docker's chain does not exist (the
	// hook then sits in FORWARD, unless the family is skipped).
	DockerUserMissing bool
	// Batch is the iptables-restore input that fixes the plan's Changed.
	Batch string
	// SetAdd and SetDel are the set elements to add and delete, per set,
	// and SetsMissing the sets to create (allows in ipsets only).
	SetAdd, SetDel map[string][]setelem.Elem
	SetsMissing    []string
}

// DetailOf is the iptables detail of p (an empty one for a plan of
// another backend's).
func DetailOf(p netfilter.FamilyPlan) *Detail {
	if d, ok := p.Detail.(*Detail); ok {
		return d
	}
	return &Detail{}
}

// SetChanges counts the set elements a plan adds and deletes.
func (d *Detail) SetChanges() int {
	n := len(d.SetsMissing)
	for _, e := range d.SetAdd {
		n += len(e)
	}
	for _, e := range d.SetDel {
		n += len(e)
	}
	return n
}

// InSync implements netfilter.Detail.
func (d *Detail) InSync() bool {
	return len(d.Stale) == 0 && d.SetChanges() == 0 && d.StrayHooks+d.StrayChecks == 0 &&
		(d.InputOnly || d.HooksInPlace()) && d.InputHooksInPlace()
}

// InputHooksInPlace: the input hook first in INPUT and its check's jump
// second when DOCKMOAT-INPUT is wanted; neither otherwise.
func (d *Detail) InputHooksInPlace() bool {
	if !d.InputChain {
		return len(d.Observed.InputHook)+len(d.Observed.InputCheck) == 0
	}
	return slices.Equal(d.Observed.InputHook, []int{1}) && (!d.WantCheck || slices.Equal(d.Observed.InputCheck, []int{2}))
}

// HooksInPlace: the hook is first in HookIn, and the check's jump (when
// wanted) second.
func (d *Detail) HooksInPlace() bool {
	return slices.Equal(d.HookPositions, []int{1}) && (!d.WantCheck || slices.Equal(d.CheckPositions, []int{2}))
}

// WriteRules implements netfilter.Detail: the jumps, chains and sets.
func (d *Detail) WriteRules(b *strings.Builder, p netfilter.FamilyPlan) {
	b.WriteString("rules:\n")
	if p.Rules != nil {
		for _, l := range p.Rules.Lines() {
			fmt.Fprintf(b, "  %s\n", l)
		}
	}
	for _, set := range p.Result.Sets {
		fmt.Fprintf(b, "ipset %s (%s), %d element(s):\n", setName(set), SetType(set.Kind), set.Len())
		for _, e := range set.Sorted() {
			fmt.Fprintf(b, "  %s\n", e)
		}
	}
}

// WriteDiff implements netfilter.Detail: chains, sets, then jumps.
func (d *Detail) WriteDiff(b *strings.Builder, p netfilter.FamilyPlan) {
	for _, c := range p.Changed {
		if _, ok := d.Observed.Owned[c]; ok {
			fmt.Fprintf(b, "  chain %s differs: will be replaced atomically\n", c)
		} else {
			fmt.Fprintf(b, "  chain %s missing: will be created\n", c)
		}
	}
	for _, c := range d.Stale {
		fmt.Fprintf(b, "  chain %s is no longer used: will be deleted\n", c)
	}
	for _, name := range d.SetsMissing {
		fmt.Fprintf(b, "  ipset %s missing: will be created\n", name)
	}
	for _, set := range p.Result.Sets {
		for _, e := range d.SetDel[setName(set)] {
			fmt.Fprintf(b, "  ipset %s: will delete %s\n", setName(set), e)
		}
		for _, e := range d.SetAdd[setName(set)] {
			fmt.Fprintf(b, "  ipset %s: will add %s\n", setName(set), e)
		}
	}
	d.writeInputHook(b)
	d.writeHook(b)
	d.writeChecks(b)
}

// writeInputHook tells where the input hook is not.
func (d *Detail) writeInputHook(b *strings.Builder) {
	switch in := d.Observed.InputHook; {
	case d.InputChain && len(in) == 0:
		fmt.Fprintf(b, "  input hook missing: will be inserted at the top of %s\n", InputHookChain)
	case d.InputChain && !slices.Equal(in, []int{1}):
		fmt.Fprintf(b, "  input hook at position(s) %v of %s: will be moved to the top\n", in, InputHookChain)
	case !d.InputChain && len(in) > 0:
		fmt.Fprintf(b, "  input hook no longer needed: will be removed from %s\n", InputHookChain)
	}
}

// writeHook tells where the hook is not, and what is left in FORWARD.
func (d *Detail) writeHook(b *strings.Builder) {
	switch {
	case d.InputOnly:
	case d.DockerUserMissing && !slices.Equal(d.HookPositions, []int{1}):
		fmt.Fprintf(b, "  chain %s missing (flushed, or Docker's iptables integration is off): the hook will be inserted at the top of FORWARD until it is back\n", HookChain)
	case d.DockerUserMissing:
		fmt.Fprintf(b, "  chain %s missing (flushed, or Docker's iptables integration is off): the hook stands at the top of FORWARD until it is back\n", HookChain)
	case len(d.HookPositions) == 0:
		fmt.Fprintf(b, "  hook missing: will be inserted at the top of %s\n", d.HookIn)
	case d.HookPositions[0] != 1 || len(d.HookPositions) > 1:
		fmt.Fprintf(b, "  hook at position(s) %v of %s: will be moved to the top\n", d.HookPositions, d.HookIn)
	}
	if d.StrayHooks > 0 {
		fmt.Fprintf(b, "  %d hook(s) left in FORWARD from while %s was missing: will be removed\n", d.StrayHooks, HookChain)
	}
}

// writeChecks tells where the checks' jumps (second after each hook: the
// fail-closed layout) are not.
func (d *Detail) writeChecks(b *strings.Builder) {
	if !d.WantCheck {
		return
	}
	if !d.InputOnly && slices.Equal(d.HookPositions, []int{1}) && !slices.Equal(d.CheckPositions, []int{2}) {
		fmt.Fprintf(b, "  check jump at position(s) %v of %s: will be put second, after the hook\n", d.CheckPositions, d.HookIn)
	}
	if d.StrayChecks > 0 {
		fmt.Fprintf(b, "  %d check jump(s) left in FORWARD from while %s was missing: will be removed\n", d.StrayChecks, HookChain)
	}
	if in := d.Observed.InputCheck; d.InputChain && slices.Equal(d.Observed.InputHook, []int{1}) && !slices.Equal(in, []int{2}) {
		fmt.Fprintf(b, "  input check jump at position(s) %v of %s: will be put second, after the input hook\n", in, InputHookChain)
	}
}
