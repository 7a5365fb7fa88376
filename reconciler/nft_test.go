package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

// fakeNFT keeps the table text the way `nft list table` would show it.
type fakeNFT struct {
	table   string
	applies int
	fail    error
}

func (f *fakeNFT) List(context.Context) (string, error) { return f.table, nil }

func (f *fakeNFT) Apply(_ context.Context, script string) error {
	if f.fail != nil {
		return f.fail
	}
	f.applies++
	if i := strings.Index(script, "table inet dockmoat {"); i >= 0 {
		f.table = script[i:]
	} else if strings.HasPrefix(script, "delete table inet dockmoat") {
		f.table = ""
	}
	return nil
}

func TestNFTBackend(t *testing.T) {
	nft := &fakeNFT{}
	d := &fakeDocker{snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{web("172.17.0.2")}}}
	log, _ := test.NewNullLogger()
	rec := NewNFT(nft, d, config.Default(), log)
	ctx := context.Background()
	res, err := rec.Sync(ctx)
	if err != nil || !res.Applied || nft.applies != 1 {
		t.Fatalf("first pass: %+v %v", res, err)
	}
	if !strings.Contains(nft.table, "elements = { 172.17.0.2 . tcp . 80 }") ||
		!strings.Contains(nft.table, "meta l4proto tcp ct original proto-dst 8080 accept") ||
		!strings.Contains(nft.table, "drop comment") {
		t.Errorf("table:\n%s", nft.table)
	}
	if res, _ := rec.Sync(ctx); res.Applied || nft.applies != 1 {
		t.Error("an in-sync pass rewrote the table")
	}
	// Someone deletes a rule: detected and repaired without Docker.
	nft.table = strings.Replace(nft.table, "\t\tdrop comment", "\t\t# gone", 1)
	if ok, _ := rec.Intact(ctx); ok {
		t.Fatal("drift not seen")
	}
	d.set(rules.Snapshot{}, errors.New("docker down"))
	found, err := rec.RepairLast(ctx)
	if err != nil || len(found) == 0 || !strings.Contains(nft.table, "drop comment") {
		t.Errorf("repair: %v %v\n%s", found, err, nft.table)
	}
	// An element deleted by hand (nft delete element) is seen by the
	// next pass, which puts the table back.
	nft.table = strings.Replace(nft.table, "elements = { 172.17.0.2 . tcp . 80 }", "", 1)
	d.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{web("172.17.0.2")}}, nil)
	if res, err := rec.Sync(ctx); err != nil || !res.Applied || !strings.Contains(nft.table, "172.17.0.2 . tcp . 80") {
		t.Errorf("set element not put back: %+v %v\n%s", res, err, nft.table)
	}
	// ipset: off keeps one rule per allow here too.
	rec.SetConfig(config.Config{UFW: config.UFWAuto, NoIPSet: true})
	if _, err := rec.Sync(ctx); err != nil || !strings.Contains(nft.table, "ip daddr 172.17.0.2 tcp dport 80 ct status dnat ct original proto-dst 8080 accept") || strings.Contains(nft.table, "set open4") {
		t.Errorf("one rule per allow: %v\n%s", err, nft.table)
	}
	d.set(rules.Snapshot{Bridges: []string{"docker0"}}, nil)
	if _, err := rec.Sync(ctx); err != nil || strings.Contains(nft.table, "172.17.0.2") {
		t.Errorf("container gone, allow kept: %v\n%s", err, nft.table)
	}
	if err := rec.Uninstall(ctx); err != nil || nft.table != "" {
		t.Errorf("uninstall: %v %q", err, nft.table)
	}
	done, err := rec.Guard(ctx, config.Default())
	if err != nil || !strings.Contains(nft.table, "ct status dnat jump ingress") || strings.Contains(nft.table, " accept comment \\\"dockmoat:") {
		t.Errorf("guard: %v %v\n%s", done, err, nft.table)
	}
}

// ParseNFTSets reads sets as nft 1.0 lists them: elements over several
// lines, host prefixes as plain addresses, empty sets without elements.
func TestParseNFTSets(t *testing.T) {
	listing := `table inet dockmoat {
	set open4 {
		type ipv4_addr . inet_proto . inet_service
		elements = { 172.17.0.3 . udp . 53,
			     172.17.0.2 . tcp . 80 }
	}

	set from4 {
		type ipv4_addr . inet_proto . inet_service . ipv4_addr
		flags interval
		elements = { 172.17.0.2 . tcp . 80 . 198.51.100.0/24,
			     172.17.0.2 . tcp . 443 . 203.0.113.7 }
	}

	set open6 {
		type ipv6_addr . inet_proto . inet_service
	}

	chain forward {
		type filter hook forward priority filter - 10; policy accept;
		ct state established,related accept comment "dockmoat:0123456789abcdef replies"
	}
}
`
	got := ParseNFTSets(listing)
	want := map[string][]string{
		"open4": {"172.17.0.3 . udp . 53", "172.17.0.2 . tcp . 80"},
		"from4": {"172.17.0.2 . tcp . 80 . 198.51.100.0/24", "172.17.0.2 . tcp . 443 . 203.0.113.7"},
		"open6": {},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if owned := ParseNFT(listing); len(owned) != 1 || len(owned["forward"]) != 1 {
		t.Errorf("set lines counted as rules: %v", owned)
	}
}

// On the nftables backend the docker-proxy path is a base chain of the
// table: a pass that installs it is in sync afterwards (no jump to wait for).
func TestNFTProxyPathInSync(t *testing.T) {
	nft := &fakeNFT{}
	d := &fakeDocker{snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{dual("db", 5432, nil)}}}
	log, _ := test.NewNullLogger()
	rec := NewNFT(nft, d, config.Default(), log)
	ctx := context.Background()
	if _, err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nft.table, "chain input {") || !strings.Contains(nft.table, "meta nfproto ipv6 tcp dport 5432 drop") {
		t.Fatalf("no input chain:\n%s", nft.table)
	}
	plans, err := rec.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if !p.InSync() {
			t.Errorf("%s not in sync:\n%s", p.Family, FormatPlan(p))
		}
	}
}
