package iptplan

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
)

// plan says where the checks' jumps are missing, and a plan with them
// misplaced is not in sync.
func TestFormatPlanChecks(t *testing.T) {
	d := &Detail{HookIn: HookChain, HookPositions: []int{1}, WantCheck: true,
		CheckPositions: nil, StrayChecks: 1, InputChain: true, Observed: Observed{InputHook: []int{1}, InputCheck: []int{3}}}
	p := netfilter.FamilyPlan{Family: rules.IPv4, Tool: "iptables-nft", Detail: d}
	out := netfilter.FormatPlan(p)
	for _, want := range []string{
		"check jump at position(s) [] of DOCKER-USER: will be put second, after the hook",
		"1 check jump(s) left in FORWARD",
		"input check jump at position(s) [3] of INPUT: will be put second",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if p.InSync() {
		t.Error("in sync with the checks' jumps misplaced")
	}
	d.CheckPositions, d.StrayChecks, d.Observed.InputCheck = []int{2}, 0, []int{2}
	if !p.InSync() || strings.Contains(netfilter.FormatPlan(p), "check jump") {
		t.Errorf("in place, yet:\n%s", netfilter.FormatPlan(p))
	}
}
