package rules

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
)

// FuzzLabels feeds arbitrary dockmoat labels ("key=value" lines) to Build.
// Whatever the input: no panic; a container with an invalid label opens
// nothing; every allow targets the container's own address; comments fit.
func FuzzLabels(f *testing.F) {
	for _, seed := range []string{
		"dockmoat.allow=8080",
		"dockmoat.allow=8080, 443/tcp, 51820/udp, 9000-9010",
		"dockmoat.allow=*\ndockmoat.from=198.51.100.0/24, 2001:db8::/48",
		"dockmoat.allow.8443/tcp=192.0.2.1\ndockmoat.allow=8443",
		"dockmoat.allow=80800",
		"dockmoat.alow=80",
		"dockmoat.allow=1-65535/sctp",
		"dockmoat.allow.0=any",
		"dockmoat.from=any\ndockmoat.allow=,,,",
		"dockmoat.allow=\"8080\"\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		labels := map[string]string{}
		for _, line := range strings.Split(input, "\n") {
			k, v, _ := strings.Cut(line, "=")
			labels[k] = v
		}
		ip := netip.MustParseAddr("172.17.0.2")
		c := Container{ID: "x", Name: "fuzz", Labels: labels, Endpoints: []Endpoint{{Network: "bridge", IPv4: ip}},
			Ports: []PortBinding{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, {HostPort: 53, ContainerPort: 53, Proto: "udp"},
				{HostPort: 9005, ContainerPort: 9005, Proto: "tcp"}, {HostPort: 443, ContainerPort: 8443, Proto: "tcp"}}}
		res := Build(config.Default(), Snapshot{Containers: []Container{c}, Bridges: []string{"docker0"}}, IPv4, Options{})
		fatal := false
		for _, p := range res.Problems {
			fatal = fatal || p.Fatal
		}
		ing, _ := res.Ruleset.Chain(ChainIngress)
		allows := 0
		for _, r := range ing.Rules {
			if len(r.Comment()) > 256 {
				t.Fatalf("comment too long: %q", r.Comment())
			}
			if strings.HasPrefix(r.Desc, "allow ") {
				allows++
				if !strings.Contains(strings.Join(r.Spec, " "), "-d 172.17.0.2/32") {
					t.Fatalf("allow not pinned to the container address: %v", r.Spec)
				}
			}
		}
		if fatal && allows > 0 {
			t.Fatalf("invalid labels %q opened %d rules", labels, allows)
		}
		if last := ing.Rules[len(ing.Rules)-1]; last.Desc != "default deny" {
			t.Fatalf("last rule is not the default deny: %v", last)
		}
	})
}
