package nft

import (
	"context"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// emptyRunner has no table installed and accepts every script.
type emptyRunner struct{}

func (emptyRunner) List(context.Context) (Listing, error) { return Listing{}, nil }
func (emptyRunner) Apply(context.Context, string) error   { return nil }

// The plan counts the table's rules (dockmoat_rules_installed reads it):
// it read 0 on this backend while a 13-rule table was installed.
func TestPlanCountsRules(t *testing.T) {
	cfg, snap := goldenInput()
	b := New(emptyRunner{}, logrus.New())
	plans, err := b.Plan(context.Background(), cfg, snap, true)
	if err != nil {
		t.Fatal(err)
	}
	rs, res := Render(cfg, snap)
	rs.Ban = banChains(res)
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
