package nft

import (
	"testing"

	"github.com/dockmoat/dockmoat/netfilter/nftjson"
	"github.com/dockmoat/dockmoat/rules"
)

// The limit rules' counters are read back per family and path, by the
// rules' comments; other rules' counters are not limits.
func TestLiveLimits(t *testing.T) {
	live, err := nftjson.Parse([]byte(`{"nftables": [
{"chain": {"family": "inet", "table": "dockmoat", "name": "ingress"}},
{"rule": {"family": "inet", "table": "dockmoat", "chain": "ingress", "comment": "dockmoat:0123456789abcdef rate limit 8080/tcp, beyond 10/minute burst 5 per source, of web", "expr": [{"set": {"op": "update", "elem": {"&": [{"payload": {"protocol": "ip6", "field": "saddr"}}, "ffff:ffff:ffff:ffff::"]}, "set": "@limit_x", "stmt": [{"limit": {"rate": 10, "burst": 5, "per": "minute", "inv": true}}]}}, {"counter": {"packets": 7, "bytes": 420}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "dockmoat", "chain": "ingress", "comment": "dockmoat:0123456789abcdef rate limit 53/udp via docker-proxy, beyond 1/second burst 1 per source, of dns", "expr": [{"set": {"op": "update", "elem": {"payload": {"protocol": "ip", "field": "saddr"}}, "set": "@limit_y", "stmt": [{"limit": {"rate": 1, "per": "second", "inv": true}}]}}, {"counter": {"packets": 2, "bytes": 120}}, {"return": null}]}},
{"rule": {"family": "inet", "table": "dockmoat", "chain": "ingress", "comment": "dockmoat:0123456789abcdef default deny", "expr": [{"counter": {"packets": 99, "bytes": 1}}, {"drop": null}]}}
]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := liveLimits(live)
	if len(got) != 2 || got[0].Family != rules.IPv6 || got[0].Port != "8080/tcp" || got[0].Container != "web" || got[0].Packets != 7 || got[0].Proxy ||
		got[1].Family != rules.IPv4 || got[1].Port != "53/udp" || !got[1].Proxy || got[1].Packets != 2 {
		t.Errorf("%+v", got)
	}
}
