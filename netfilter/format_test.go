package netfilter

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// TestJSONPlan: the JSON plan carries each decision, its sources, the
// problems and the changes worded as in the text plan.
func TestJSONPlan(t *testing.T) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		{Name: "web", Labels: map[string]string{"dockmoat.allow": "80", "dockmoat.from": "192.0.2.0/24"}, Ports: []rules.PortBinding{{HostPort: 80, ContainerPort: 8080, Proto: "tcp"}}},
		{Name: "db", Labels: map[string]string{"dockmoat.allow": "x"}, Ports: []rules.PortBinding{{HostPort: 5432, ContainerPort: 5432, Proto: "tcp"}}},
	}}
	p := FamilyPlan{Family: rules.IPv4, Tool: "iptables-nft", Changed: []string{"DOCKMOAT"},
		Result: policy.Build(config.Default(), snap, rules.IPv4, policy.Options{})}
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
	if !strings.Contains(strings.Join(j.Changes, "\n"), "DOCKMOAT differs: will be replaced atomically") {
		t.Errorf("changes %q", j.Changes)
	}
	if s := JSONPlan(FamilyPlan{Family: rules.IPv6, Skipped: "no ip6tables"}); !s.InSync || s.Skipped == "" || s.Ports == nil {
		t.Errorf("skipped: %+v", s)
	}
}
