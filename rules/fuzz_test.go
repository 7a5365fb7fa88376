package rules_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// FuzzLabels feeds arbitrary dockmoat labels ("key=value" lines) to Build.
// Whatever the input: no panic; a container with an invalid label opens
// nothing; every allow targets the container's own address; comments fit.
// (That the rendered chains end in the default deny is netfilter/ipt's
// golden tests.)
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
		c := rules.Container{ID: "x", Name: "fuzz", Labels: labels, Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: ip}},
			Ports: []rules.PortBinding{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, {HostPort: 53, ContainerPort: 53, Proto: "udp"},
				{HostPort: 9005, ContainerPort: 9005, Proto: "tcp"}, {HostPort: 443, ContainerPort: 8443, Proto: "tcp"}}}
		res := policy.Build(config.Default(), rules.Snapshot{Containers: []rules.Container{c}, Bridges: []string{"docker0"}}, rules.IPv4, policy.Options{})
		fatal := false
		for _, p := range res.Problems {
			fatal = fatal || p.Fatal
		}
		for _, a := range res.Allows() {
			// The rendered comment is the prefix, a 16-digit hash, a space
			// and this text; iptables takes 256 bytes.
			if n := len(rules.CommentPrefix) + 17 + len(a.Describe()); n > 256 {
				t.Fatalf("comment too long (%d): %q", n, a.Describe())
			}
			if a.Addr != ip {
				t.Fatalf("allow not pinned to the container address: %+v", a)
			}
		}
		if fatal && len(res.Allows()) > 0 {
			t.Fatalf("invalid labels %q opened %d allows", labels, len(res.Allows()))
		}
	})
}
