package nft

import (
	"context"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/nfgen"
	"github.com/dockmoat/dockmoat/netfilter/nft/nftplan"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// rig drives the backend as the reconcile loop does: Plan, then Apply.
type rig struct {
	b    *Backend
	cfg  config.Config
	snap rules.Snapshot
}

func (r *rig) pass(ctx context.Context) (netfilter.Applied, error) {
	plans, err := r.b.Plan(ctx, r.cfg, r.snap, false)
	if err != nil {
		return netfilter.Applied{}, err
	}
	return r.b.Apply(ctx, plans)
}

func TestNFTBackend(t *testing.T) {
	fk := &fakeNFT{}
	r := &rig{b: New(fk, logrus.New()), cfg: config.Default(), snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}}}
	ctx := context.Background()
	res, err := r.pass(ctx)
	if err != nil || !res.Wrote || fk.applies != 1 {
		t.Fatalf("first pass: %+v %v", res, err)
	}
	if !strings.Contains(fk.table, "elements = { 172.17.0.2 . tcp . 80 }") ||
		!strings.Contains(fk.table, "meta l4proto tcp ct original proto-dst 8080 meta mark set meta mark | 0x20000000 accept") ||
		!strings.Contains(fk.table, "table inet dockmoat_check {") ||
		!strings.Contains(fk.table, "drop comment") {
		t.Errorf("table:\n%s", fk.table)
	}
	if res, _ := r.pass(ctx); res.Wrote || fk.applies != 1 {
		t.Error("an in-sync pass rewrote the table")
	}
	// Someone deletes a rule: detected and repaired without Docker.
	fk.table = strings.Replace(fk.table, "\t\tdrop comment", "\t\t# gone", 1)
	if ok, _ := r.b.Intact(ctx); ok {
		t.Fatal("drift not seen")
	}
	found, err := r.b.Repair(ctx)
	if err != nil || len(found) == 0 || !strings.Contains(fk.table, "drop comment") {
		t.Errorf("repair: %v %v\n%s", found, err, fk.table)
	}
	// An element deleted by hand (nft delete element) is seen by the
	// next pass, which puts the table back.
	fk.table = strings.Replace(fk.table, "elements = { 172.17.0.2 . tcp . 80 }", "", 1)
	if ok, _ := r.b.Intact(ctx); ok {
		t.Error("a flushed set is not seen as drift (the drift watch would not repair it)")
	}
	r.snap = rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}}
	if res, err := r.pass(ctx); err != nil || !res.Wrote || !strings.Contains(fk.table, "172.17.0.2 . tcp . 80") {
		t.Errorf("set element not put back: %+v %v\n%s", res, err, fk.table)
	}
	// ipset: off keeps one rule per allow here too.
	r.cfg = config.Config{UFW: config.UFWAuto, NoIPSet: true}
	if _, err := r.pass(ctx); err != nil || !strings.Contains(fk.table, "ip daddr 172.17.0.2 tcp dport 80 ct status dnat ct original proto-dst 8080 meta mark set meta mark | 0x20000000 accept") || strings.Contains(fk.table, "set open4") {
		t.Errorf("one rule per allow: %v\n%s", err, fk.table)
	}
	r.snap = rules.Snapshot{Bridges: []string{"docker0"}}
	if _, err := r.pass(ctx); err != nil || strings.Contains(fk.table, "172.17.0.2") {
		t.Errorf("container gone, allow kept: %v\n%s", err, fk.table)
	}
	if err := r.b.Uninstall(ctx); err != nil || fk.table != "" {
		t.Errorf("uninstall: %v %q", err, fk.table)
	}
	done, err := r.b.Guard(ctx, config.Default(), netfilter.Boot{})
	if err != nil || !strings.Contains(fk.table, "ct status dnat jump ingress") || strings.Contains(fk.table, " accept comment \\\"dockmoat:") {
		t.Errorf("guard: %v %v\n%s", done, err, fk.table)
	}
}

// TestNFTListsOnlyAfterAChange: while the nf_tables generation stands
// still a pass reuses its last listing (a pass with nothing to do runs no
// nft at all); dockmoat's own transaction and someone else's change move
// it, and the next pass or check lists again and sees the change.
func TestNFTListsOnlyAfterAChange(t *testing.T) {
	fk := &fakeNFT{}
	r := &rig{b: New(fk, logrus.New()), cfg: config.Default(), snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}}}
	ctx := context.Background()
	for i := range 3 {
		if _, err := r.pass(ctx); err != nil {
			t.Fatal(err)
		}
		if want := min(i+1, 2); fk.lists != want { // the first two: empty, then after the install
			t.Fatalf("pass %d: %d listings, want %d", i+1, fk.lists, want)
		}
	}
	if ok, err := r.b.Intact(ctx); !ok || err != nil || fk.lists != 2 {
		t.Errorf("check with nothing changed: intact %v, %v, %d listings", ok, err, fk.lists)
	}
	fk.table = strings.Replace(fk.table, "\t\tdrop comment", "\t\t# gone", 1)
	if ok, _ := r.b.Intact(ctx); ok || fk.lists != 3 {
		t.Errorf("someone else's change: intact %v after %d listings", ok, fk.lists)
	}
}

// quietLog is a changeLog that answers as told.
type quietLog struct {
	quiet bool
	asked int
}

func (q *quietLog) Quiet(from, to uint32) bool { q.asked++; return q.quiet }

// TestNFTQuietGenerationsListNothing: a generation moved by other tables
// only (the notifications say so) keeps the listing; one they do not
// clear, or a listing older than listingAge, is listed again.
func TestNFTQuietGenerationsListNothing(t *testing.T) {
	fk := &fakeNFT{}
	log := &quietLog{} // dockmoat's own transactions are in its tables
	b := New(fk, logrus.New())
	b.changes = log
	r := &rig{b: b, cfg: config.Default(), snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2")}}}
	ctx := context.Background()
	for range 2 {
		if _, err := r.pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	lists := fk.lists
	log.quiet = true
	fk.others++ // Docker's connect
	if ok, err := r.b.Intact(ctx); !ok || err != nil || fk.lists != lists || log.asked == 0 {
		t.Errorf("a quiet generation: intact %v, %v, %d listing(s), asked %d", ok, err, fk.lists-lists, log.asked)
	}
	log.quiet = false
	fk.others++
	if _, err := r.b.Intact(ctx); err != nil || fk.lists != lists+1 {
		t.Errorf("a generation not cleared: %v, %d listing(s)", err, fk.lists-lists)
	}
	log.quiet = true
	b.listedAt = b.listedAt.Add(-listingAge)
	fk.others++
	if _, err := r.b.Intact(ctx); err != nil || fk.lists != lists+2 {
		t.Errorf("a listing older than %v: %v, %d listing(s)", listingAge, err, fk.lists-lists)
	}
}

// On the nftables backend the docker-proxy path is a base chain of the
// table: a pass that installs it is in sync afterwards (no jump to wait for).
func TestNFTProxyPathInSync(t *testing.T) {
	fk := &fakeNFT{}
	r := &rig{b: New(fk, logrus.New()), cfg: config.Default(), snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Dual("db", 5432, nil)}}}
	ctx := context.Background()
	if _, err := r.pass(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fk.table, "chain input {") || !strings.Contains(fk.table, "meta nfproto ipv6 tcp dport 5432 drop") {
		t.Fatalf("no input chain:\n%s", fk.table)
	}
	plans, err := r.b.Plan(ctx, r.cfg, r.snap, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if !p.InSync() {
			t.Errorf("%s not in sync:\n%s", p.Family, netfilter.FormatPlan(p))
		}
	}
}

// The fake refuses what nft would refuse or what would not swap the
// table atomically; every script the backend writes passes it.
func TestFakeChecksScripts(t *testing.T) {
	cfg, snap := goldenInput()
	snap.Containers = append(snap.Containers, proxySnap().Containers...)
	rs, res := nftplan.Render(cfg, snap)
	rs.Ban = nftplan.BanChains(res)
	good := rs.ReplaceScript()
	if err := checkScript(good); err != nil {
		t.Fatalf("the backend's own script: %v", err)
	}
	for name, bad := range map[string]string{
		"not deleted first":     strings.Replace(good, "delete table inet dockmoat\n", "", 1),
		"rule without comment":  strings.Replace(good, `drop comment "dockmoat:`, `drop # "dockmoat:`, 1),
		"unknown set":           strings.Replace(good, "@open4", "@open9", 1),
		"unbalanced":            strings.TrimSuffix(good, "}\n"),
		"ban chain not flushed": strings.Replace(good, "flush chain inet dockmoat_ban forward\n", "", 1),
		"ban table deleted":     strings.Replace(good, "flush chain inet dockmoat_ban forward\n", "delete table inet dockmoat_ban\n", 1),
	} {
		if good == bad {
			t.Fatalf("%s: the mutation changed nothing", name)
		}
		if err := checkScript(bad); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// ownTable: only dockmoat's tables (or a message that names none) count.
func TestOwnTable(t *testing.T) {
	for _, c := range []struct {
		ch   nfgen.Change
		want bool
	}{
		{nfgen.Change{Family: unix.NFPROTO_INET, Table: nftplan.TableName, Rule: true}, true},
		{nfgen.Change{Family: unix.NFPROTO_INET, Table: nftplan.CheckTable}, true},
		{nfgen.Change{Family: unix.NFPROTO_INET, Table: nftplan.BanTable}, true},
		{nfgen.Change{Family: unix.NFPROTO_BRIDGE, Table: nftplan.BridgeName}, true},
		{nfgen.Change{Family: unix.NFPROTO_INET}, true},
		{nfgen.Change{Family: 99, Table: "x"}, true},
		{nfgen.Change{Family: unix.NFPROTO_IPV4, Table: "docker-bridges", Chain: "filter-forward", Rule: true}, false},
		{nfgen.Change{Family: unix.NFPROTO_INET, Table: "firewalld"}, false},
		{nfgen.Change{Family: unix.NFPROTO_IPV4, Table: nftplan.TableName}, false}, // ip dockmoat is not ours
	} {
		if got := ownTable(c.ch); got != c.want {
			t.Errorf("%+v: %v, want %v", c.ch, got, c.want)
		}
	}
}
