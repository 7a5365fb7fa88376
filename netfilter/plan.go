package netfilter

import (
	"slices"

	"github.com/dockmoat/dockmoat/rules"
)

// Observed is what one listing of the kernel says about the chains
// dockmoat cares about (ipt.Observe reads it from iptables-save, nft from
// its table). It is read in one listing per pass: no per-rule check.
type Observed struct {
	// Chains lists every chain of the table (builtin and user).
	Chains map[string]bool
	// Owned holds, per chain of dockmoat's (rules.IsOwnedChain), the hash
	// of each rule in order ("" for a rule without a dockmoat comment:
	// someone else's rule in our chain, which makes the chain differ and
	// be rewritten).
	Owned map[string][]string
	// Hook lists the 1-based positions of dockmoat's hook in DOCKER-USER.
	Hook []int
	// Check and ForwardCheck list the positions of the jump to the
	// check (second after the hook: netfilter/ipt's fail-closed layout)
	// in DOCKER-USER and in FORWARD.
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
	// INPUT (the docker-proxy path, rules/proxy.go), InputCheck those of
	// the jump to its check (second after it).
	InputHook, InputCheck []int
}

// FamilyPlan is the diff for one family.
type FamilyPlan struct {
	Family rules.Family
	// Tool names what holds the rules, for people: the iptables binary
	// ("iptables-nft", "ip6tables-legacy") or "nftables, table inet dockmoat".
	Tool string
	// Skipped is set when the family is not managed (no DOCKER-USER in
	// the ip6tables filter table: Docker does not manage IPv6 there).
	Skipped string
	// Unprotected is set with Skipped when Docker does forward that family
	// to containers but offers no DOCKER-USER to hook: a loud problem.
	Unprotected bool
	// NFT is the desired table text on the nftables backend (on the first
	// plan: the table holds both families).
	NFT string
	// Result is the family's policy: decisions, allows, problems.
	Result rules.Result
	// Rules is what the backend installs for it (nil when skipped).
	Rules Rendered
	// InputChain: the plan has DOCKMOAT-INPUT, reached by a jump from the
	// top of INPUT (the docker-proxy path, iptables backend).
	InputChain bool
	// UFW says whether unmatched traffic goes to ufw-user-forward.
	UFW bool
	// UFWMissing is set when config says ufw: on but the chain is absent.
	UFWMissing bool
	// Changed lists owned chains whose content differs (or are missing).
	Changed []string
	// Stale lists owned chains (rules.IsOwnedChain) no longer wanted.
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
	// only DOCKMOAT-INPUT is managed; Note says why the rest is not.
	InputOnly bool
	Note      string
	// ProxyAll: Docker does not DNAT this family at all.
	ProxyAll bool
	// InTable: the plan is part of table inet dockmoat, where the input
	// path is a base chain of the table (covered by Changed), not a jump.
	InTable bool
	// Layer: this plan is the second layer of a netfilter.Layered
	// backend (table inet dockmoat under firewalld), not the main one.
	Layer bool
	// DockerUserMissing is set when Docker's chain does not exist (the
	// hook then sits in FORWARD, unless the family is skipped).
	DockerUserMissing bool
	// Batch is what fixes Changed: iptables-restore input, or the nft
	// script that replaces the table.
	Batch    string
	Observed Observed
	// SetAdd and SetDel are the set elements to add and delete, per set,
	// and SetsMissing the sets to create (allows in ipsets only).
	SetAdd, SetDel map[string][]rules.SetElem
	SetsMissing    []string
}

// SetChanges counts the set elements a plan adds and deletes.
func (p FamilyPlan) SetChanges() int {
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
	return p.Skipped != "" || (len(p.Changed) == 0 && len(p.Stale) == 0 && p.SetChanges() == 0 && p.StrayHooks+p.StrayChecks == 0 &&
		(p.InputOnly || p.HooksInPlace()) &&
		p.InputHooksInPlace())
}

// InputHooksInPlace: the input hook first in INPUT and its check's jump
// second when DOCKMOAT-INPUT is wanted; neither otherwise.
func (p FamilyPlan) InputHooksInPlace() bool {
	if !p.WantsInput() {
		return len(p.Observed.InputHook)+len(p.Observed.InputCheck) == 0
	}
	return slices.Equal(p.Observed.InputHook, []int{1}) && (!p.WantCheck || slices.Equal(p.Observed.InputCheck, []int{2}))
}

// HooksInPlace: the hook is first in HookIn, and the check's jump (when
// wanted) second.
func (p FamilyPlan) HooksInPlace() bool {
	return slices.Equal(p.HookPositions, []int{1}) && (!p.WantCheck || slices.Equal(p.CheckPositions, []int{2}))
}

// Rendered is a backend's rendering of a family's policy, as plans show
// it to people and metrics count it.
type Rendered interface {
	// Lines are the rules as the backend's tool takes them, jumps first.
	Lines() []string
	// Count is how many rules (jumps included) are installed.
	Count() int
}

// WantsInput reports whether the plan has DOCKMOAT-INPUT (and so its jump
// at the top of INPUT): some binding is served by docker-proxy.
func (p FamilyPlan) WantsInput() bool { return p.InputChain && !p.InTable }

// WantInputHook is where the input hook belongs: first in INPUT, or nowhere.
func (p FamilyPlan) WantInputHook() []int {
	if p.WantsInput() {
		return []int{1}
	}
	return nil
}

// Problems are what the plan's family has to report: a family Docker
// forwards but dockmoat cannot hook, the containers' label problems, and
// ufw asked for but absent.
func (p FamilyPlan) Problems() []rules.Problem {
	var out []rules.Problem
	if p.Unprotected {
		out = append(out, rules.Problem{Container: "-", Label: p.Family.String(), Value: "DOCKER-USER missing", Msg: p.Skipped + p.Note, Fatal: true})
	}
	if p.Skipped != "" {
		return out
	}
	out = append(out, p.Result.Problems...)
	if p.UFWMissing {
		out = append(out, rules.Problem{Container: "-", Label: "config ufw", Value: "on",
			Msg: "chain ufw-user-forward not found (is ufw enabled?); ufw route rules are not consulted, so those ports stay closed"})
	}
	return out
}
