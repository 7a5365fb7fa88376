package rules

import (
	"fmt"
	"testing"

	"github.com/dockmoat/dockmoat/config"
)

// BenchmarkDecidePerPortLabels: one container publishing 2,000 ports,
// each opened by a per-port label (dockmoat.allow.PORT=SOURCE), as a
// generated compose file may do. Deciding it must grow linearly.
func BenchmarkDecidePerPortLabels(b *testing.B) {
	for _, n := range []int{500, 2000} {
		c := Container{ID: "1", Name: "many", Labels: map[string]string{}}
		for i := range n {
			port := uint16(10000 + i)
			c.Ports = append(c.Ports, PortBinding{HostPort: port, ContainerPort: port, Proto: "tcp"})
			c.Labels[fmt.Sprintf("dockmoat.allow.%d", port)] = "192.0.2.1"
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				Decide(config.Default(), c)
			}
		})
	}
}
