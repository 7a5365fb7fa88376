package netfilter

import (
	"strings"

	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// FamilyPlan is one family's policy and what a pass changes to install
// it: what the loop, metrics, audit and the CLI read. How a backend gets
// there (its jumps, batches, set edits) is its Detail, which only it
// reads and which it prints for people.
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
	// Note says, for people, why the family is managed only in part.
	Note string
	// Result is the family's policy: decisions, allows, problems.
	Result policy.Result
	// Rules is what the backend installs for it (nil when skipped).
	Rules Rendered
	// UFWMissing is set when config says ufw: on but the chain is absent.
	UFWMissing bool
	// Changed lists what differs from the policy and will be rewritten:
	// owned chains, or the nftables table.
	Changed []string
	// Layer: this plan is the second layer of a netfilter.Layered
	// backend (table inet dockmoat under firewalld), not the main one.
	Layer bool
	// Detail is the backend's own part of the plan (nil: nothing beyond
	// Changed).
	Detail Detail
}

// Detail is a backend's own part of a plan.
type Detail interface {
	// InSync reports whether nothing of the detail needs to change.
	InSync() bool
	// WriteRules shows the desired rules of p, WriteDiff what a pass
	// would change, one indented line each.
	WriteRules(b *strings.Builder, p FamilyPlan)
	WriteDiff(b *strings.Builder, p FamilyPlan)
}

// InSync reports whether nothing needs to change.
func (p FamilyPlan) InSync() bool {
	return p.Skipped != "" || (len(p.Changed) == 0 && (p.Detail == nil || p.Detail.InSync()))
}

// Rendered is a backend's rendering of a family's policy, as plans show
// it to people and metrics count it.
type Rendered interface {
	// Lines are the rules as the backend's tool takes them, jumps first.
	Lines() []string
	// Count is how many rules (jumps included) are installed.
	Count() int
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
