package metrics

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
)

// rateLimited gathers dockmoat_rate_limited_packets_total as
// "port container family path = value" lines, sorted.
func rateLimited(t *testing.T, m *Metrics) []string {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "dockmoat_rate_limited_packets_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out = append(out, fmt.Sprintf("%s %s %s %s = %g", l["port"], l["container"], l["family"], l["path"], s.GetCounter().GetValue()))
		}
	}
	slices.Sort(out)
	return out
}

func TestRateLimitedPackets(t *testing.T) {
	m := New()
	if got := rateLimited(t, m); len(got) != 0 {
		t.Fatalf("before the daemon wires it: %v", got)
	}
	m.CountLimits(func(context.Context) ([]netfilter.LimitRefusal, error) {
		return []netfilter.LimitRefusal{
			{Family: rules.IPv4, Port: "8080/tcp", Container: "web", Packets: 7},
			{Family: rules.IPv4, Port: "8080/tcp", Container: "web", Proxy: true, Packets: 2},
			{Family: rules.IPv6, Port: "8080/tcp", Container: "web", Packets: 1},
		}, nil
	})
	want := []string{"8080/tcp web ipv4 dnat = 7", "8080/tcp web ipv4 docker-proxy = 2", "8080/tcp web ipv6 dnat = 1"}
	if got := rateLimited(t, m); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
