package netfilter

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// plan says where the checks' jumps are missing, and a plan with them
// misplaced is not in sync.
func TestFormatPlanChecks(t *testing.T) {
	p := FamilyPlan{Family: rules.IPv4, Tool: "iptables-nft", HookIn: rules.HookChain, HookPositions: []int{1}, WantCheck: true,
		CheckPositions: nil, StrayChecks: 1, InputChain: true, Observed: Observed{InputHook: []int{1}, InputCheck: []int{3}}}
	out := FormatPlan(p)
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
	p.CheckPositions, p.StrayChecks, p.Observed.InputCheck = []int{2}, 0, []int{2}
	if !p.InSync() || strings.Contains(FormatPlan(p), "check jump") {
		t.Errorf("in place, yet:\n%s", FormatPlan(p))
	}
}

// TestJSONPlan: the JSON plan carries each decision, its sources, the
// problems and the changes worded as in the text plan.
func TestJSONPlan(t *testing.T) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		{Name: "web", Labels: map[string]string{"dockmoat.allow": "80", "dockmoat.from": "192.0.2.0/24"}, Ports: []rules.PortBinding{{HostPort: 80, ContainerPort: 8080, Proto: "tcp"}}},
		{Name: "db", Labels: map[string]string{"dockmoat.allow": "x"}, Ports: []rules.PortBinding{{HostPort: 5432, ContainerPort: 5432, Proto: "tcp"}}},
	}}
	p := FamilyPlan{Family: rules.IPv4, Tool: "iptables-nft", HookIn: rules.HookChain, Changed: []string{rules.ChainMain},
		Result: rules.Build(config.Default(), snap, rules.IPv4, rules.Options{})}
	j := JSONPlan(p)
	if j.InSync || len(j.Ports) != 2 || len(j.Problems) == 0 || len(j.Changes) == 0 {
		t.Fatalf("%+v", j)
	}
	web, db := j.Ports[1], j.Ports[0]
	if !web.Open || web.Container != "web" || web.HostPort != 80 || web.ContainerPort != 8080 || len(web.Sources) != 1 || web.Sources[0] != "192.0.2.0/24" {
		t.Errorf("web: %+v", web)
	}
	if db.Open || db.Sources != nil {
		t.Errorf("db: %+v", db)
	}
	if !strings.Contains(strings.Join(j.Changes, "\n"), "chain DOCKMOAT missing: will be created") {
		t.Errorf("changes %q", j.Changes)
	}
	if s := JSONPlan(FamilyPlan{Family: rules.IPv6, Skipped: "no ip6tables"}); !s.InSync || s.Skipped == "" || s.Ports == nil {
		t.Errorf("skipped: %+v", s)
	}
}
