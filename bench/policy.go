package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// policyFigures times the policy alone (policy.Build, no kernel) for one
// container publishing N ports, each opened by a per-port label, as a
// generated compose file may do: deciding it must grow linearly in N.
func policyFigures(b *strings.Builder) error {
	b.WriteString("\n## Policy: one container with N per-port labels\n\n" +
		"`policy.Build` for one container publishing N ports, each opened by its own `dockmoat.allow.PORT=SOURCE` label " +
		"(no kernel, no Docker): the cost of deciding a container, paid on every change of it.\n\n" +
		"| N labels | build |\n|---|---|\n")
	for _, n := range []int{500, 2000} {
		snap := perPortSnapshot(n)
		s, err := measure(5, func() (time.Duration, error) {
			start := time.Now()
			policy.Build(config.Default(), snap, rules.IPv4, policy.Options{Sets: true})
			return time.Since(start), nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(b, "| %d | %s |\n", n, s)
	}
	b.WriteString("\n")
	return nil
}

func perPortSnapshot(n int) rules.Snapshot {
	c := rules.Container{ID: "1", Name: "many", Labels: map[string]string{},
		Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")}}}
	for i := range n {
		port := uint16(10000 + i)
		c.Ports = append(c.Ports, rules.PortBinding{HostPort: port, ContainerPort: port, Proto: "tcp"})
		c.Labels[fmt.Sprintf("dockmoat.allow.%d", port)] = "192.0.2.1"
	}
	return rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{c}}
}
