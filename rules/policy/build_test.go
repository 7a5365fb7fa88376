package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// The shared inputs (rules/rulestest).
var (
	addr        = rulestest.Addr
	ctr         = rulestest.Ctr
	pb          = rulestest.PB
	assertLines = rulestest.AssertLines
)

func TestProblems(t *testing.T) {
	cases := []struct {
		labels map[string]string
		ports  []rules.PortBinding
		fatal  bool
		want   []string // substrings of the one problem
	}{
		{map[string]string{"dockmoat.allow": "80800"}, nil, true, []string{"container c", "dockmoat.allow", "80800", "1 to 65535", "stay closed"}},
		{map[string]string{"dockmoat.allow": "80/icmp"}, nil, true, []string{"protocol \"icmp\""}},
		{map[string]string{"dockmoat.allow": "90-80"}, nil, true, []string{"below its start"}},
		{map[string]string{"dockmoat.allow": ""}, nil, true, []string{"no ports listed"}},
		{map[string]string{"dockmoat.allow": "80", "dockmoat.from": "10.0.0.300/8"}, nil, true, []string{"dockmoat.from", "not a valid CIDR"}},
		{map[string]string{"dockmoat.from": "10.0.0.0/8"}, nil, true, []string{"dockmoat.allow is not set"}},
		{map[string]string{"dockmoat.allow.http": "any"}, nil, true, []string{"dockmoat.allow.http", "must name one port"}},
		{map[string]string{"dockmoat.allow.80": ""}, nil, true, []string{"no sources listed"}},
		{map[string]string{"dockmoat.enable": "true"}, nil, true, []string{"unknown dockmoat label"}},
		// Wrong letter case must not drop a restriction (the port would open to anyone).
		{map[string]string{"dockmoat.allow": "8080", "Dockmoat.from": "198.51.100.3/32"}, []rules.PortBinding{pb(8080, 80, "tcp")}, true, []string{"Dockmoat.from", "case-sensitive", "did you mean dockmoat.from?", "stay closed"}},
		{map[string]string{"DOCKMOAT.ALLOW": "8080"}, []rules.PortBinding{pb(8080, 80, "tcp")}, true, []string{"did you mean dockmoat.allow?"}},
		{map[string]string{"dockmoat.Allow.8080": "198.51.100.3"}, []rules.PortBinding{pb(8080, 80, "tcp")}, true, []string{"did you mean dockmoat.allow.8080?"}},
		{map[string]string{"dockmoat.allow": "80"}, []rules.PortBinding{pb(8080, 80, "tcp")}, false, []string{"not published", "did you mean 8080"}},
	}
	for _, tc := range cases {
		c := ctr("c", tc.labels, "172.17.0.2", tc.ports...)
		res := Build(config.Default(), rules.Snapshot{Containers: []rules.Container{c}}, rules.IPv4, Options{})
		if len(res.Problems) != 1 {
			t.Errorf("labels %v: want 1 problem, got %v", tc.labels, res.Problems)
			continue
		}
		p := res.Problems[0]
		if p.Fatal != tc.fatal {
			t.Errorf("labels %v: fatal=%v, want %v", tc.labels, p.Fatal, tc.fatal)
		}
		for _, w := range tc.want {
			if !strings.Contains(p.String(), w) {
				t.Errorf("labels %v: problem %q lacks %q", tc.labels, p.String(), w)
			}
		}
	}
}

// One container whose allows cannot all be installed is closed and
// reported; the others are decided as usual.
func TestContainerTooLargeClosed(t *testing.T) {
	var srcs []string
	for i := range 40 {
		srcs = append(srcs, fmt.Sprintf("198.51.%d.0/24", i))
	}
	huge := ctr("huge", map[string]string{"dockmoat.allow": "20000-21999", "dockmoat.from": strings.Join(srcs, ",")}, "172.17.0.9")
	for p := uint16(20000); p < 22000; p++ {
		huge.Ports = append(huge.Ports, pb(p, p, "tcp"))
	}
	ok := ctr("ok", map[string]string{"dockmoat.allow": "80"}, "172.17.0.2", pb(80, 80, "tcp"))
	for _, opt := range []Options{{}, {Sets: true}, {Sets: true, Inc: NewIncremental(rules.IPv4)}} {
		res := Build(config.Default(), rules.Snapshot{Containers: []rules.Container{huge, ok}}, rules.IPv4, opt)
		open := map[string]int{}
		for _, d := range res.Decisions() {
			if d.Open {
				open[d.Container]++
			}
		}
		if open["huge"] != 0 || open["ok"] != 1 {
			t.Errorf("opt %+v: open ports per container %v; want huge closed, ok open", opt, open)
		}
		if len(res.Problems) != 1 || !res.Problems[0].Fatal || !strings.Contains(res.Problems[0].String(), "80000 entries") {
			t.Errorf("opt %+v: problems %v", opt, res.Problems)
		}
	}
}

func TestForeignBridges(t *testing.T) {
	links := []string{"lo", "eth0", "br-lan", "br-ex", "br-0123456789ab", "br-0123456789AB", "br-custom", "docker0", "virbr0", "br-lan"}
	got := rules.ForeignBridges(links, []string{"br-custom"})
	want := []string{"br-0123456789AB", "br-ex", "br-lan"}
	if !slices.Equal(got, want) {
		t.Errorf("ForeignBridges = %v, want %v (Docker's br-<12 hex> and listed bridges are Docker's)", got, want)
	}
	if rules.ForeignBridges(nil, nil) != nil {
		t.Error("no links known: nothing foreign")
	}
}
