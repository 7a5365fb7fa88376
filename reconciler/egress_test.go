package reconciler

import (
	"net/netip"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
)

func TestEgressCut(t *testing.T) {
	a := netip.MustParseAddr
	allow, _ := config.ParseEgressDest("203.0.113.10:443/tcp")
	eg := []rules.Egress{{Container: "db", From: []rules.EgressFrom{{Bridge: "docker0", Addr: a("172.17.0.2")}},
		Allow: []config.EgressDest{allow}, DNS: []netip.Addr{a("192.0.2.53")}}}
	local := []netip.Prefix{netip.MustParsePrefix("172.17.0.0/16"), netip.MustParsePrefix("203.0.113.1/32")}
	cut := egressCut(eg, local)
	for _, tc := range []struct {
		name string
		f    Flow
		want bool
	}{
		{"not allowed", Flow{Proto: "tcp", Src: a("172.17.0.2"), OrigDst: a("203.0.113.10"), OrigDstPort: 80, ReplySrc: a("203.0.113.10")}, true},
		{"allowed", Flow{Proto: "tcp", Src: a("172.17.0.2"), OrigDst: a("203.0.113.10"), OrigDstPort: 443, ReplySrc: a("203.0.113.10")}, false},
		{"dns", Flow{Proto: "udp", Src: a("172.17.0.2"), OrigDst: a("192.0.2.53"), OrigDstPort: 53, ReplySrc: a("192.0.2.53")}, false},
		{"to the host", Flow{Proto: "tcp", Src: a("172.17.0.2"), OrigDst: a("203.0.113.1"), OrigDstPort: 22, ReplySrc: a("203.0.113.1")}, true},
		{"own network", Flow{Proto: "tcp", Src: a("172.17.0.2"), OrigDst: a("172.17.0.3"), OrigDstPort: 5432, ReplySrc: a("172.17.0.3")}, false},
		{"another container", Flow{Proto: "tcp", Src: a("172.17.0.9"), OrigDst: a("203.0.113.10"), OrigDstPort: 80, ReplySrc: a("203.0.113.10")}, false},
		{"inbound to db", Flow{Proto: "tcp", Src: a("203.0.113.10"), OrigDst: a("203.0.113.1"), OrigDstPort: 8080, ReplySrc: a("172.17.0.2")}, false},
	} {
		if got := cut(tc.f); got != tc.want {
			t.Errorf("%s: cut = %v, want %v", tc.name, got, tc.want)
		}
	}
	if egressKey(eg) == egressKey(nil) || egressKey(eg) != egressKey(append([]rules.Egress(nil), eg...)) {
		t.Error("egressKey")
	}
}
