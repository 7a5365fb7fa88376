package host

import (
	"context"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

func TestBackendFlag(t *testing.T) {
	for _, f := range []string{"iptables", "nftables"} {
		if b, _, err := DetectBackend(context.Background(), f); err != nil || b != f {
			t.Errorf("%s: %s %v", f, b, err)
		}
	}
	if _, _, err := DetectBackend(context.Background(), "ebpf"); err == nil {
		t.Error("an unknown backend must be refused")
	}
}

// A Swarm node with the nftables backend is refused with the reason and
// the fix; every other combination passes.
func TestRefuseSwarmNFT(t *testing.T) {
	err := refuseSwarmNFT("nftables", "Docker reports firewall backend nftables", swarm.LocalNodeStateActive)
	if err == nil || !strings.Contains(err.Error(), "Swarm") || !strings.Contains(err.Error(), "iptables backend") {
		t.Errorf("swarm + nftables: %v", err)
	}
	for _, c := range []struct {
		backend string
		state   swarm.LocalNodeState
	}{{"iptables", swarm.LocalNodeStateActive}, {"nftables", swarm.LocalNodeStateInactive}, {"nftables", ""}} {
		if err := refuseSwarmNFT(c.backend, "", c.state); err != nil {
			t.Errorf("%s on %q: %v", c.backend, c.state, err)
		}
	}
}
