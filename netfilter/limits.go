package netfilter

import (
	"context"

	"github.com/dockmoat/dockmoat/rules"
)

// LimitRefusal is what one rate limit rule (rules.Limit) has refused:
// packets of new connections beyond the rate, since the rule was last
// written (a rewrite starts the count again, as a counter reset).
type LimitRefusal struct {
	Family          rules.Family
	Port, Container string // "8080/tcp"; the container (or the start of its name)
	Proxy           bool   // the docker-proxy path's rule
	Packets         uint64
}

// LimitCounter is a backend that reads its limit rules' counters. It
// only reads the kernel: it may run beside the loop.
type LimitCounter interface {
	LimitRefusals(ctx context.Context) ([]LimitRefusal, error)
}

// LimitRefusals reads b's limit counters; a layered backend's come from
// its main backend (the layer refuses the same connections again).
func LimitRefusals(ctx context.Context, b Backend) ([]LimitRefusal, error) {
	if l, ok := b.(Layered); ok {
		b = l.Main
	}
	if c, ok := b.(LimitCounter); ok {
		return c.LimitRefusals(ctx)
	}
	return nil, nil
}
