package rules_test

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// TestUnenforcedReported: a container on a macvlan network is reported as
// unfiltered, and a deny container's egress as not enforced where it
// cannot be (macvlan, network_mode container:); a bridge container is
// not reported.
func TestUnenforcedReported(t *testing.T) {
	deny := map[string]string{rules.LabelEgress: "deny"}
	snap := egressSnap(
		rules.Container{ID: "id-cam", Name: "cam", Labels: deny, Endpoints: []rules.Endpoint{{Network: "lan", IPv4: addr("192.168.1.50")}}},
		rules.Container{ID: "id-side", Name: "side", Labels: deny, SharesNetOf: "0123456789abcdef0123"},
		rules.Container{ID: "id-web", Name: "web", Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: addr("172.17.0.2")}}},
	)
	snap.Direct = map[string]string{"lan": "macvlan"}
	res := policy.Build(config.Default(), snap, rules.IPv4, policy.Options{})
	var got []string
	for _, p := range res.Problems {
		got = append(got, p.String())
	}
	text := strings.Join(got, "\n")
	for _, want := range []string{
		`container cam on macvlan network lan: on the LAN's own link`,
		`container cam: label dockmoat.egress="deny": egress is NOT enforced on macvlan network lan`,
		`container side: label dockmoat.egress="deny": egress is NOT enforced: the container uses the network of container 0123456789ab`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("want %q in\n%s", want, text)
		}
	}
	if strings.Contains(text, "web") || len(got) != 3 {
		t.Errorf("%d problems:\n%s", len(got), text)
	}
}
