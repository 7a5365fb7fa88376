package nftjson

import (
	"slices"
	"testing"
)

// A listing as nft 1.0.6 prints it: a base chain, a regular one, a rule
// of another chain's table, a set with concatenations, prefixes and
// ranges, and a verdict map.
const listing = `{"nftables": [
 {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "t", "handle": 1}},
 {"chain": {"family": "inet", "table": "t", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": -5, "policy": "accept"}},
 {"chain": {"family": "inet", "table": "t", "name": "deny", "handle": 2}},
 {"rule": {"family": "inet", "table": "t", "chain": "fwd", "handle": 3, "comment": "dockmoat:0123456789abcdef x", "expr": [{"jump": {"target": "deny"}}]}},
 {"rule": {"family": "ip", "table": "other", "chain": "fwd", "handle": 4, "expr": [{"accept": null}]}},
 {"set": {"family": "inet", "table": "t", "name": "open4", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 5,
   "elem": [{"concat": ["172.17.0.2", "tcp", 80]}, {"elem": {"val": {"prefix": {"addr": "10.0.0.0", "len": 8}}, "timeout": 600}}, {"range": ["192.0.2.1", "192.0.2.9"]}]}},
 {"map": {"family": "inet", "table": "t", "name": "vm", "type": "ipv4_addr", "map": "verdict", "handle": 6, "elem": [["10.1.1.1", {"drop": null}]]}}
]}`

func TestParse(t *testing.T) {
	rs, err := Parse([]byte(listing))
	if err != nil {
		t.Fatal(err)
	}
	fwd, deny := rs.Chain("inet", "t", "fwd"), rs.Chain("inet", "t", "deny")
	if fwd == nil || deny == nil || len(rs.Chains) != 2 {
		t.Fatalf("chains %+v", rs.Chains)
	}
	if fwd.Hook != "forward" || fwd.Prio != -5 || fwd.Policy != "accept" || fwd.Label() != "inet t/fwd" || deny.Hook != "" {
		t.Errorf("base chain %+v, regular %+v", fwd, deny)
	}
	// The rule of table ip other names no chain read: it is dropped, not
	// put in inet t's chain of the same name.
	if len(fwd.Rules) != 1 || fwd.Rules[0].Comment != "dockmoat:0123456789abcdef x" || fwd.Rules[0].Expr[0]["jump"] == nil {
		t.Errorf("rules %+v", fwd.Rules)
	}
	set := rs.Sets[SetKey("inet", "t", "open4")]
	if set == nil || set.Map != "" {
		t.Fatalf("set %+v", set)
	}
	var got []string
	for _, e := range set.Elems {
		got = append(got, ValueText(e))
	}
	if want := []string{"172.17.0.2 . tcp . 80", "10.0.0.0/8", "192.0.2.1-192.0.2.9"}; !slices.Equal(got, want) {
		t.Errorf("elements %q, want %q", got, want)
	}
	if m := rs.Sets[SetKey("inet", "t", "vm")]; m == nil || m.Map != "verdict" || len(m.Elems) != 1 {
		t.Errorf("map %+v", m)
	}
}

func TestParseBad(t *testing.T) {
	if _, err := Parse([]byte(`{"nftables": [`)); err == nil {
		t.Error("truncated JSON accepted")
	}
	// Something ValueText cannot read stays its JSON text: it matches no
	// element a script writes.
	if got := ValueText(map[string]any{"set": []any{"a"}}); got != `{"set":["a"]}` {
		t.Errorf("ValueText = %q", got)
	}
}
