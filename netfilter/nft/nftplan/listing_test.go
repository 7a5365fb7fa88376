package nftplan

import (
	"os"
	"strings"
	"testing"
)

// testdata/listing.json is `nft -j list ruleset` (both tables) as nft 1.0.6
// printed it after loading the table Render makes for goldenInput plus
// proxySnap (regenerate: load ReplaceScript() with `nft -f` in a scratch
// network namespace and list it). Reading it back must find exactly the
// table Render wants: every chain's hashes in order and every set element
// (addresses, prefixes, host sources, IPv6) written as Render writes them.
func TestParseJSONAgreesWithRender(t *testing.T) {
	data, err := os.ReadFile("testdata/listing.json")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	cfg, snap := goldenInput()
	snap.Containers = append(snap.Containers, proxySnap().Containers...)
	rs, _ := Render(cfg, snap)
	if !l.Exists() || len(l.Sets) != 6 || len(l.Chains) != len(rs.All()) || len(rs.Check) != 2 {
		t.Fatalf("listing: %d chains, %d sets", len(l.Chains), len(l.Sets))
	}
	if d := TableDiff(rs, l.Chains, l.Sets); d != nil {
		t.Errorf("the kernel's own listing differs from the table loaded: %v", d)
	}
	if got := strings.Join(l.Sets["from4"], "|"); !strings.Contains(got, "172.17.0.2 . tcp . 80 . 198.51.100.0/24") {
		t.Errorf("from4 = %s", got)
	}
	if got := strings.Join(l.Sets["fromaddr4"], "|"); got == "" || strings.Contains(got, "/") {
		t.Errorf("fromaddr4 (single-address sources) = %s", got)
	}
	// Someone deletes an element and edits a rule's comment: both seen.
	l.Sets["open4"] = l.Sets["open4"][1:]
	l.Chains["deny"][0] = ""
	if d := TableDiff(rs, l.Chains, l.Sets); len(d) != 2 {
		t.Errorf("changes not seen: %v", d)
	}
}

func TestParseJSONForeignAndBad(t *testing.T) {
	l, err := ParseJSON([]byte(`{"nftables":[{"table":{"family":"inet","name":"dockmoat"}},
		{"chain":{"family":"inet","table":"dockmoat","name":"forward"}},
		{"rule":{"family":"inet","table":"dockmoat","chain":"forward","expr":[{"accept":null}]}},
		{"rule":{"family":"inet","table":"other","chain":"forward","comment":"dockmoat:0123456789abcdef x"}},
		{"set":{"family":"inet","table":"dockmoat","name":"open4","elem":[{"weird":1}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if h := l.Chains["forward"]; len(h) != 1 || h[0] != "" {
		t.Errorf("a rule without our comment counts, with no hash: %v", h)
	}
	if e := l.Sets["open4"]; len(e) != 1 || e[0] != `{"weird":1}` {
		t.Errorf("an unknown element is kept as text (never equal to a wanted one): %v", e)
	}
	if _, err := ParseJSON([]byte("table inet dockmoat {")); err == nil {
		t.Error("text is not JSON")
	}
	if (Listing{}).Exists() {
		t.Error("an empty listing is no table")
	}
}
