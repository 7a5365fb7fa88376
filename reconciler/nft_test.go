package reconciler

import (
	"context"
	"errors"
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
	if !strings.Contains(nft.table, "ip daddr 172.17.0.2 tcp dport 80 ct status dnat ct original proto-dst 8080 accept") ||
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
