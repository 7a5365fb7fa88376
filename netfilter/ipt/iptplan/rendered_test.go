package iptplan

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// The rendering a plan carries counts what is installed (the metric
// dockmoat_rules_installed): every chain's rules and the jumps, which
// come first in the lines `plan` prints.
func TestRenderedCountsJumps(t *testing.T) {
	cfg := config.Default()
	rs := Render(cfg, policy.Build(cfg, rulestest.ProxySnap(), rules.IPv6, policy.Options{Sets: true}), RenderOptions{})
	n := 0
	for _, ch := range rs.Chains {
		n += len(ch.Rules)
	}
	r := rendered{rs: rs, hookIn: HookChain, inputHook: true}
	if r.Count() != n+4 || n == 0 {
		t.Errorf("Count = %d, want %d chain rules + 4 jumps", r.Count(), n)
	}
	l := r.Lines()
	if len(l) != r.Count() || !strings.HasPrefix(l[0], "-I DOCKER-USER 1 ") || !strings.HasPrefix(l[1], "-I DOCKER-USER 2 ") ||
		!strings.HasPrefix(l[2], "-I INPUT 1 ") || !strings.HasPrefix(l[3], "-I INPUT 2 ") {
		t.Errorf("lines: %d, first %q", len(l), l[:4])
	}
	if input := (rendered{rs: rs}); input.Count() != n {
		t.Errorf("input-only: Count = %d, want %d", input.Count(), n)
	}
}
