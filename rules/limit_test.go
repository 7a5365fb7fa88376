package rules_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// limitLabel prefixes a rate-limit label (dockmoat.limit.PORT).
const limitLabel = "dockmoat.limit."

func limitedWeb(labels map[string]string) rules.Container {
	c := rules.Container{ID: "w", Name: "web", Labels: labels, Endpoints: []rules.Endpoint{{Network: "bridge", IPv4: netip.MustParseAddr("172.17.0.2"), IPv6: netip.MustParseAddr("fd00::2")}}}
	c.Ports = []rules.PortBinding{{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}, {HostIP: netip.MustParseAddr("::"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
		{HostPort: 9090, ContainerPort: 90, Proto: "tcp"}}
	return c
}

func TestLimitLabel(t *testing.T) {
	c := limitedWeb(map[string]string{rules.LabelAllow: "8080,9090", limitLabel + "8080": "10/minute,burst=5"})
	want := config.RateLimit{Rate: 10, Per: time.Minute, Burst: 5}
	for _, fam := range []rules.Family{rules.IPv4, rules.IPv6} {
		res := policy.Build(config.Default(), rules.Snapshot{Containers: []rules.Container{c}}, fam, policy.Options{Sets: true})
		if len(res.Limits) != 1 || res.Limits[0].Rate != want || res.Limits[0].Binding.HostPort != 8080 || res.Limits[0].Container != "web" {
			t.Fatalf("%s: limits %+v", fam, res.Limits)
		}
		for _, d := range res.Decisions() {
			limited := d.Binding.HostPort == 8080
			if !d.Open || (d.Limit == want) != limited || strings.Contains(d.Reason, "limited to 10/minute,burst=5") != limited {
				t.Errorf("%s: %+v", fam, d)
			}
		}
		if len(res.Problems) != 0 {
			t.Errorf("%s: problems %v", fam, res.Problems)
		}
	}
}

// A config rule's limit and a label's add up to the strictest.
func TestLimitStrictestWins(t *testing.T) {
	cfg := config.Default()
	cfg.Allow = []config.AllowRule{{Container: "web", Ports: []config.PortSpec{{From: 8080, To: 9090}}, From: config.Sources{Any: true},
		Limit: config.RateLimit{Rate: 1, Per: time.Second, Burst: 1}}}
	c := limitedWeb(map[string]string{limitLabel + "8080": "100/second"})
	res := policy.Build(cfg, rules.Snapshot{Containers: []rules.Container{c}}, rules.IPv4, policy.Options{})
	if len(res.Limits) != 2 {
		t.Fatalf("limits %+v", res.Limits)
	}
	for _, l := range res.Limits {
		if l.Rate.Rate != 1 || l.Rate.Per != time.Second {
			t.Errorf("%d: %s, want the config's 1/second", l.Binding.HostPort, l.Rate)
		}
	}
}

func TestLimitProblems(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		fatal  bool
		msg    string
	}{
		{map[string]string{rules.LabelAllow: "8080", limitLabel + "8080": "10/fortnight"}, true, "N/minute"},
		{map[string]string{rules.LabelAllow: "8080", limitLabel + "*": "10/minute"}, true, "one port or range"},
		{map[string]string{rules.LabelAllow: "8080", limitLabel + "9090": "10/minute"}, false, "a limit opens nothing"},
		{map[string]string{rules.LabelAllow: "8080", limitLabel + "7070": "10/minute"}, false, "not published"},
		{map[string]string{rules.LabelAllow: "8080", "dockmoat.Limit.8080": "10/minute"}, true, "did you mean dockmoat.limit.8080"},
	} {
		res := policy.Build(config.Default(), rules.Snapshot{Containers: []rules.Container{limitedWeb(tc.labels)}}, rules.IPv4, policy.Options{})
		if len(res.Problems) != 1 || res.Problems[0].Fatal != tc.fatal || !strings.Contains(res.Problems[0].String(), tc.msg) {
			t.Errorf("%v: problems %v", tc.labels, res.Problems)
			continue
		}
		if tc.fatal && (len(res.Limits) != 0 || res.Decisions()[0].Open) {
			t.Errorf("%v: an invalid label must close the container", tc.labels)
		}
		if !tc.fatal && len(res.Limits) != 0 {
			t.Errorf("%v: a limit on a closed or unpublished port installs nothing: %+v", tc.labels, res.Limits)
		}
	}
}

func TestLimitDescRoundTrip(t *testing.T) {
	l := rules.Limit{Container: "web-1", Binding: rules.PortBinding{HostPort: 8080, Proto: "udp"}, Rate: config.RateLimit{Rate: 10, Per: time.Minute, Burst: 5}}
	for _, proxy := range []bool{false, true} {
		port, container, via, ok := rules.ParseLimitDesc(l.Desc(proxy))
		if !ok || port != "8080/udp" || container != "web-1" || via != proxy {
			t.Errorf("%q: %q %q %v %v", l.Desc(proxy), port, container, via, ok)
		}
	}
	for _, s := range []string{"default deny", "rate limit 8080/tcp", "trusted source 10.0.0.0/8"} {
		if _, _, _, ok := rules.ParseLimitDesc(s); ok {
			t.Errorf("%q is not a limit's description", s)
		}
	}
}
