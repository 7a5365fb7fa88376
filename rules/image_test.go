package rules

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
)

// An image's dockmoat.allow opens nothing and is reported; with
// image_labels: trust it opens the port.
func TestImageLabels(t *testing.T) {
	c := Container{ID: "1", Name: "img", Rev: 7, ImageLabels: map[string]string{LabelAllow: "8080"},
		Ports:     []PortBinding{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		Endpoints: []Endpoint{{Network: "bridge", IPv4: addr("172.17.0.2")}}}
	snap := Snapshot{Bridges: []string{"docker0"}, Containers: []Container{c}}
	open := func(res Result) bool {
		for _, d := range res.Decisions() {
			if d.Open {
				return true
			}
		}
		return false
	}
	cfg := config.Default()
	res := Build(cfg, snap, IPv4, Options{})
	if open(res) {
		t.Error("an image's label opened its port")
	}
	var told bool
	for _, p := range res.Problems {
		told = told || (p.Label == LabelAllow && strings.Contains(p.String(), "comes from the container's image"))
	}
	if !told {
		t.Errorf("the ignored image label is not reported: %v", res.Problems)
	}
	cfg.TrustImageLabels = true
	trusted := TrustImageLabels(cfg, snap)
	if trusted.Containers[0].Rev != 0 || snap.Containers[0].Labels != nil {
		t.Errorf("trusting must copy (and reset Rev): %+v / %+v", trusted.Containers[0], snap.Containers[0])
	}
	if res := Build(cfg, snap, IPv4, Options{}); !open(res) || len(res.Problems) != 0 {
		t.Errorf("image_labels: trust: open %v, problems %v", open(res), res.Problems)
	}
}
