package nft

import (
	"fmt"
	"testing"
)

// ParseSets reads sets as nft 1.0 lists them: elements over several
// lines, host prefixes as plain addresses, empty sets without elements.
func TestParseSets(t *testing.T) {
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
	got := ParseSets(listing)
	want := map[string][]string{
		"open4": {"172.17.0.3 . udp . 53", "172.17.0.2 . tcp . 80"},
		"from4": {"172.17.0.2 . tcp . 80 . 198.51.100.0/24", "172.17.0.2 . tcp . 443 . 203.0.113.7"},
		"open6": {},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if owned := Parse(listing); len(owned) != 1 || len(owned["forward"]) != 1 {
		t.Errorf("set lines counted as rules: %v", owned)
	}
}
