package rules_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// Labels refer to the config's lists too; an unknown list keeps the
// container's ports closed and says which label.
func TestLabelsWithLists(t *testing.T) {
	cfg := config.Default()
	office := []config.Source{netip.MustParsePrefix("198.51.100.0/24")}
	cfg.Lists = map[string][]config.Source{"office": office}
	ctr := func(name string, labels map[string]string) rules.Container {
		return rules.Container{ID: name, Name: name, Labels: labels, Ports: []rules.PortBinding{{HostPort: 80, ContainerPort: 80, Proto: "tcp"}},
			Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}}
	}
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		ctr("web", map[string]string{rules.LabelAllow: "80", rules.LabelFrom: "list:office"}),
		ctr("typo", map[string]string{rules.LabelAllow + ".80": "list:ofice"}),
	}}
	res := policy.Build(cfg, snap, rules.IPv4, policy.Options{})
	for _, d := range res.Decisions() {
		switch d.Container {
		case "web":
			if !d.Open || d.Sources.Any || !slices.Equal(d.Sources.Prefixes, office) {
				t.Errorf("web: %+v", d)
			}
		case "typo":
			if d.Open {
				t.Errorf("typo: %+v", d)
			}
		}
	}
	if !slices.ContainsFunc(res.Problems, func(p rules.Problem) bool { return p.Container == "typo" && strings.Contains(p.Msg, `no list "ofice"`) }) {
		t.Errorf("problems: %+v", res.Problems)
	}
}
