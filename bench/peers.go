package main

import (
	"fmt"
	"os/exec"
	"strings"

	"github.com/dockmoat/dockmoat/integration/testbed"
	"github.com/dockmoat/dockmoat/rules"
)

// installUFWDocker installs the ufw-docker recipe in the router as ufw
// would (iptables-restore --noflush of its after.rules block), and what
// `ufw route allow proto tcp from any to CONTAINER port PORT` adds to
// ufw-user-forward for every allowed port of snap, in snap's order (the
// tested container last). Only the chains on the forward path are
// written: ufw's own chains come after Docker's DOCKER-USER jump in
// FORWARD and never see these packets. It checks the same controls as
// installWith and returns the undo.
func (t *topo) installUFWDocker(snap rules.Snapshot) (func() error, error) {
	var b strings.Builder
	b.WriteString(testbed.UFWDockerRecipe)
	b.WriteString("*filter\n")
	n := 0
	for _, c := range snap.Containers {
		if c.Labels["dockmoat.allow"] == "" {
			continue
		}
		for _, p := range c.Ports {
			if p.HostPort == uint16(t.closed.port) {
				continue // published, not allowed
			}
			fmt.Fprintf(&b, "-A ufw-user-forward -p %s -d %s --dport %d -j ACCEPT\n", p.Proto, c.Endpoints[0].IPv4, p.ContainerPort)
			n++
		}
	}
	b.WriteString("COMMIT\n")
	undo := func() error {
		return t.restore("*filter\n:ufw-user-forward - [0:0]\n:ufw-docker-logging-deny - [0:0]\n:DOCKER-USER - [0:0]\n" +
			"-X ufw-user-forward\n-X ufw-docker-logging-deny\nCOMMIT\n")
	}
	if err := t.restore(b.String()); err != nil {
		return nil, err
	}
	if t.reachable(t.closed) || !t.reachable(t.open) {
		_ = undo()
		return nil, fmt.Errorf("ufw-docker recipe with %d allowed ports: %s reachable %v, %s reachable %v", n, t.closed, t.reachable(t.closed), t.open, t.reachable(t.open))
	}
	return undo, nil
}

// restore feeds text to iptables-nft-restore --noflush in the router.
func (t *topo) restore(text string) error {
	cmd := exec.Command("ip", "netns", "exec", t.router, "iptables-nft-restore", "--noflush")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-nft-restore in the router: %w: %s", err, out)
	}
	return nil
}
