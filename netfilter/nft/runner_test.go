package nft

import (
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/netfilter/nftjson"
)

// Banned reads the ban table's sets as nft lists them: an element with a
// timeout, a prefix, an empty set.
func TestLiveBanned(t *testing.T) {
	live, err := nftjson.Parse([]byte(`{"nftables":[{"table":{"family":"inet","name":"dockmoat_ban"}},
{"set":{"family":"inet","name":"ban4","table":"dockmoat_ban","type":"ipv4_addr","flags":["interval","timeout"],
"elem":[{"prefix":{"addr":"198.51.100.0","len":24}},{"elem":{"val":"203.0.113.7","timeout":600,"expires":599}}]}},
{"set":{"family":"inet","name":"ban6","table":"dockmoat_ban","type":"ipv6_addr","flags":["interval","timeout"]}},
{"set":{"family":"inet","name":"ban4","table":"other","type":"ipv4_addr","elem":["192.0.2.1"]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := Banned(live)
	if strings.Join(got["ban4"], " ") != "198.51.100.0/24 203.0.113.7" || got["ban6"] == nil || len(got["ban6"]) != 0 {
		t.Errorf("banned: %q", got)
	}
}
