package reconciler

import (
	"bufio"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/netfilter/nft"
	"github.com/dockmoat/dockmoat/rules"
)

// fakeNFT keeps the table as the script defined it; List reads it the
// way nft would report it.
type fakeNFT struct {
	table   string
	applies int
	fail    error
}

func (f *fakeNFT) List(context.Context) (nft.Listing, error) {
	if f.table == "" {
		return nft.Listing{}, nil
	}
	return nft.Listing{Chains: scriptChains(f.table), Sets: scriptSets(f.table)}, nil
}

func (f *fakeNFT) Apply(_ context.Context, script string) error {
	if f.fail != nil {
		return f.fail
	}
	f.applies++
	if i := strings.Index(script, "table inet dockmoat {"); i >= 0 {
		f.table = script[i:]
	} else if strings.Contains(script, "delete table inet dockmoat\n") {
		f.table = ""
	}
	return nil
}

func TestNFTBackend(t *testing.T) {
	fk := &fakeNFT{}
	d := &fakeDocker{snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{web("172.17.0.2")}}}
	log, _ := test.NewNullLogger()
	rec := New(nft.New(fk, log), d, config.Default(), log)
	ctx := context.Background()
	res, err := rec.Sync(ctx)
	if err != nil || !res.Applied || fk.applies != 1 {
		t.Fatalf("first pass: %+v %v", res, err)
	}
	if !strings.Contains(fk.table, "elements = { 172.17.0.2 . tcp . 80 }") ||
		!strings.Contains(fk.table, "meta l4proto tcp ct original proto-dst 8080 meta mark set meta mark | 0x20000000 accept") ||
		!strings.Contains(fk.table, "table inet dockmoat_check {") ||
		!strings.Contains(fk.table, "drop comment") {
		t.Errorf("table:\n%s", fk.table)
	}
	if res, _ := rec.Sync(ctx); res.Applied || fk.applies != 1 {
		t.Error("an in-sync pass rewrote the table")
	}
	// Someone deletes a rule: detected and repaired without Docker.
	fk.table = strings.Replace(fk.table, "\t\tdrop comment", "\t\t# gone", 1)
	if ok, _ := rec.Intact(ctx); ok {
		t.Fatal("drift not seen")
	}
	d.set(rules.Snapshot{}, errors.New("docker down"))
	found, err := rec.RepairLast(ctx)
	if err != nil || len(found) == 0 || !strings.Contains(fk.table, "drop comment") {
		t.Errorf("repair: %v %v\n%s", found, err, fk.table)
	}
	// An element deleted by hand (nft delete element) is seen by the
	// next pass, which puts the table back.
	fk.table = strings.Replace(fk.table, "elements = { 172.17.0.2 . tcp . 80 }", "", 1)
	if ok, _ := rec.Intact(ctx); ok {
		t.Error("a flushed set is not seen as drift (the drift watch would not repair it)")
	}
	d.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{web("172.17.0.2")}}, nil)
	if res, err := rec.Sync(ctx); err != nil || !res.Applied || !strings.Contains(fk.table, "172.17.0.2 . tcp . 80") {
		t.Errorf("set element not put back: %+v %v\n%s", res, err, fk.table)
	}
	// ipset: off keeps one rule per allow here too.
	rec.SetConfig(config.Config{UFW: config.UFWAuto, NoIPSet: true})
	if _, err := rec.Sync(ctx); err != nil || !strings.Contains(fk.table, "ip daddr 172.17.0.2 tcp dport 80 ct status dnat ct original proto-dst 8080 meta mark set meta mark | 0x20000000 accept") || strings.Contains(fk.table, "set open4") {
		t.Errorf("one rule per allow: %v\n%s", err, fk.table)
	}
	d.set(rules.Snapshot{Bridges: []string{"docker0"}}, nil)
	if _, err := rec.Sync(ctx); err != nil || strings.Contains(fk.table, "172.17.0.2") {
		t.Errorf("container gone, allow kept: %v\n%s", err, fk.table)
	}
	if err := rec.Uninstall(ctx); err != nil || fk.table != "" {
		t.Errorf("uninstall: %v %q", err, fk.table)
	}
	done, err := rec.Guard(ctx, config.Default(), netfilter.Boot{})
	if err != nil || !strings.Contains(fk.table, "ct status dnat jump ingress") || strings.Contains(fk.table, " accept comment \\\"dockmoat:") {
		t.Errorf("guard: %v %v\n%s", done, err, fk.table)
	}
}

// On the nftables backend the docker-proxy path is a base chain of the
// table: a pass that installs it is in sync afterwards (no jump to wait for).
func TestNFTProxyPathInSync(t *testing.T) {
	fk := &fakeNFT{}
	d := &fakeDocker{snap: rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{dual("db", 5432, nil)}}}
	log, _ := test.NewNullLogger()
	rec := New(nft.New(fk, log), d, config.Default(), log)
	ctx := context.Background()
	if _, err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fk.table, "chain input {") || !strings.Contains(fk.table, "meta nfproto ipv6 tcp dport 5432 drop") {
		t.Fatalf("no input chain:\n%s", fk.table)
	}
	plans, err := rec.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if !p.InSync() {
			t.Errorf("%s not in sync:\n%s", p.Family, netfilter.FormatPlan(p))
		}
	}
}

// The fake's reader of its own script text (production reads nft -j).
var (
	nftSetRe   = regexp.MustCompile(`^\s*set (\S+) \{`)
	nftChainRe = regexp.MustCompile(`^\s*chain (\S+) \{`)
	nftTableRe = regexp.MustCompile(`^table inet (\S+) \{`)
	nftHashRe  = regexp.MustCompile(`comment "` + regexp.QuoteMeta(rules.CommentPrefix) + `([0-9a-f]{16})`)
)

// scriptChains reads the hashes of dockmoat's rules per chain from a listing.
func scriptChains(listing string) map[string][]string {
	owned := map[string][]string{}
	chain, prefix := "", ""
	sc := bufio.NewScanner(strings.NewReader(listing))
	sc.Buffer(make([]byte, 64*1024), 8*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := nftTableRe.FindStringSubmatch(line); m != nil {
			prefix = ""
			if m[1] == nft.CheckTable {
				prefix = nft.CheckTable + "/"
			}
			continue
		}
		if m := nftChainRe.FindStringSubmatch(line); m != nil {
			chain = prefix + m[1]
			owned[chain] = []string{}
			continue
		}
		if nftSetRe.MatchString(line) {
			chain = "" // a set's lines are not rules (see scriptSets)
			continue
		}
		t := strings.TrimSpace(line)
		if chain == "" || t == "" || t == "}" || strings.HasPrefix(t, "type ") {
			continue
		}
		h := ""
		if m := nftHashRe.FindStringSubmatch(line); m != nil {
			h = m[1]
		}
		owned[chain] = append(owned[chain], h)
	}
	return owned
}

// scriptSets reads the elements of each set from a listing, as nft
// prints them ("172.17.0.2 . tcp . 80"), in listing order.
func scriptSets(listing string) map[string][]string {
	sets := map[string][]string{}
	name, inElems := "", false
	var text strings.Builder
	for _, line := range strings.Split(listing, "\n") {
		if m := nftSetRe.FindStringSubmatch(line); m != nil {
			name = m[1]
			sets[name] = []string{}
			continue
		}
		if name == "" {
			continue
		}
		t := strings.TrimSpace(line)
		if !inElems {
			if rest, ok := strings.CutPrefix(t, "elements = {"); ok {
				inElems = true
				text.Reset()
				t = rest
			} else {
				if t == "}" {
					name = ""
				}
				continue
			}
		}
		if before, done := strings.CutSuffix(t, "}"); done {
			text.WriteString(" " + before)
			for _, e := range strings.Split(text.String(), ",") {
				if e = strings.Join(strings.Fields(e), " "); e != "" {
					sets[name] = append(sets[name], e)
				}
			}
			inElems = false
			continue
		}
		text.WriteString(" " + t)
	}
	return sets
}
