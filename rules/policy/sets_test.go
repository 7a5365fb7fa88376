package policy

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

func elems(s Set) []string {
	var out []string
	for _, e := range s.Sorted() {
		out = append(out, e.String())
	}
	return out
}

// A source list of 0.0.0.0/0 is anyone: hash:ip,port,net takes no /0.
func TestBuildSetsZeroPrefix(t *testing.T) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		ctr("a", map[string]string{rules.LabelAllow: "80", rules.LabelFrom: "0.0.0.0/0"}, "172.17.0.2", pb(80, 80, "tcp")),
	}}
	res := Build(config.Default(), snap, rules.IPv4, Options{Sets: true})
	assertLines(t, "OPEN", elems(res.Sets[0]), []string{"172.17.0.2,tcp:80"})
	assertLines(t, "FROM", elems(res.Sets[1]), nil)
}

// The memo changes no result, follows changed containers, and forgets
// everything when the configuration changes.
func TestMemoSameResult(t *testing.T) {
	snap := rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{
		ctr("web", map[string]string{rules.LabelAllow: "8080"}, "172.17.0.2", pb(8080, 80, "tcp")),
		ctr("db", map[string]string{rules.LabelAllow: "5432", rules.LabelFrom: "198.51.100.0/24"}, "172.17.0.3", pb(5432, 5432, "tcp")),
		ctr("bad", map[string]string{rules.LabelAllow: "nope"}, "172.17.0.4", pb(1, 1, "tcp")),
	}}
	memo := NewMemo()
	cfg := config.Default()
	check := func(step string) {
		t.Helper()
		want := Build(cfg, snap, rules.IPv4, Options{Sets: true})
		got := Build(cfg, snap, rules.IPv4, Options{Sets: true, Memo: memo})
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: memo result differs\n got %+v\nwant %+v", step, got, want)
		}
	}
	check("first")
	check("unchanged")
	snap.Containers[0].Endpoints[0].IPv4 = addr("172.17.0.20") // recreated
	check("new address")
	snap.Containers[1].Labels[rules.LabelFrom] = "203.0.113.0/24" // same map, edited in place
	check("label edited in place")
	snap.Containers[2].Labels = map[string]string{rules.LabelAllow: "1"}
	check("label fixed")
	snap.Containers = snap.Containers[1:]
	check("container gone")
	if len(memo.entries) != 2 {
		t.Errorf("memo keeps %d entries, want 2", len(memo.entries))
	}
	cfg.TrustedSources = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cfg.Allow = []config.AllowRule{{Container: "db", Ports: nil}}
	check("config changed")
}
