package rules_test

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// An image's dockmoat.allow opens nothing and is reported; with
// image_labels: trust it opens the port.
func TestImageLabels(t *testing.T) {
	c := rules.Container{ID: "1", Name: "img", Rev: 7, ImageLabels: map[string]string{rules.LabelAllow: "8080"},
		Ports:     []rules.PortBinding{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: addr("172.17.0.2")}}}
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{c}}
	open := func(res policy.Result) bool {
		for _, d := range res.Decisions() {
			if d.Open {
				return true
			}
		}
		return false
	}
	cfg := config.Default()
	res := policy.Build(cfg, snap, rules.IPv4, policy.Options{})
	if open(res) {
		t.Error("an image's label opened its port")
	}
	var told bool
	for _, p := range res.Problems {
		told = told || (p.Label == rules.LabelAllow && strings.Contains(p.String(), "comes from the container's image"))
	}
	if !told {
		t.Errorf("the ignored image label is not reported: %v", res.Problems)
	}
	cfg.TrustImageLabels = true
	trusted := rules.TrustImageLabels(cfg, snap)
	if trusted.Containers[0].Rev != 0 || snap.Containers[0].Labels != nil {
		t.Errorf("trusting must copy (and reset Rev): %+v / %+v", trusted.Containers[0], snap.Containers[0])
	}
	if res := policy.Build(cfg, snap, rules.IPv4, policy.Options{}); !open(res) || len(res.Problems) != 0 {
		t.Errorf("image_labels: trust: open %v, problems %v", open(res), res.Problems)
	}
}
