package nft

import (
	"context"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/nft/nftplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// emptyRunner has no table installed and accepts every script.
type emptyRunner struct{}

func (emptyRunner) List(context.Context) (nftplan.Listing, error) { return nftplan.Listing{}, nil }
func (emptyRunner) Apply(context.Context, string) error           { return nil }

// The plan counts the table's rules (dockmoat_rules_installed reads it):
// it read 0 on this backend while a 13-rule table was installed.
func TestPlanCountsRules(t *testing.T) {
	cfg, snap := goldenInput()
	b := New(emptyRunner{}, logrus.New())
	plans, err := b.Plan(context.Background(), cfg, snap, true)
	if err != nil {
		t.Fatal(err)
	}
	rs, res := nftplan.Render(cfg, snap)
	rs.Ban = nftplan.BanChains(res)
	want := strings.Count(rs.Text(), `comment "dockmoat:`)
	if plans[0].Rules == nil || plans[0].Rules.Count() != want || want == 0 {
		t.Fatalf("IPv4 plan counts %v rules, the table has %d", plans[0].Rules, want)
	}
	if plans[1].Rules != nil {
		t.Error("the IPv6 plan must not count the same table again")
	}
	if got := strings.Join(plans[0].Rules.Lines(), "\n") + "\n"; got != rs.Text() {
		t.Errorf("Lines are not the table:\n%s", got)
	}
}

// The backend keeps the policy's computation between passes (a memo and
// the set grouping per family); a pass must want the table Render builds
// from scratch, whatever came before it.
func TestPlanCacheMatchesRender(t *testing.T) {
	cfg := config.Default()
	open := map[string]string{"dockmoat.allow": "8443,5432"}
	from := map[string]string{"dockmoat.allow": "5432,8443", "dockmoat.from": "198.51.100.0/24"}
	v6 := rulestest.Dual("v6", 9000, map[string]string{"dockmoat.allow": "9000"})
	v6.Endpoints[0].IPv6 = rulestest.Addr("fd00::9")
	steps := [][]rules.Container{
		{rulestest.Web("172.17.0.2"), rulestest.Dual("db", 5432, from)},
		{rulestest.Web("172.17.0.2"), rulestest.Dual("db", 5432, from), rulestest.Dual("api", 8443, open), v6},
		{rulestest.Web("172.17.0.9"), rulestest.Dual("api", 8443, open)}, // moved, removed
		{rulestest.Web("172.17.0.9"), rulestest.Dual("api", 8443, from)}, // relabelled
		{},
		{rulestest.Web("172.17.0.2"), rulestest.Dual("db", 5432, from)},
	}
	b := New(emptyRunner{}, logrus.New())
	elems := 0
	for i, cs := range steps {
		snap := rules.Snapshot{Containers: cs}
		if _, err := b.Plan(context.Background(), cfg, snap, true); err != nil {
			t.Fatal(err)
		}
		want, res := nftplan.Render(cfg, snap)
		want.Ban = nftplan.BanChains(res)
		if got := b.want.Text(); got != want.Text() {
			t.Fatalf("step %d: the cached pass wants\n%s\nRender builds\n%s", i, got, want.Text())
		}
		for _, set := range want.Sets {
			elems += len(set.Elems)
		}
	}
	if elems < 8 {
		t.Errorf("only %d set elements over all steps: the sets were not exercised", elems)
	}
}
