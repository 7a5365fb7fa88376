package observe

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/reconciler"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

var a = netip.MustParseAddr

// snap: db (compose service shop/db) publishes 5432 on IPv4 and IPv6 from
// an IPv4-only address; IPv6 clients meet docker-proxy.
func snap() rules.Snapshot {
	db := rulestest.Dual("db", 5432, map[string]string{config.LabelComposeProject: "shop", config.LabelComposeService: "db"})
	return rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{db, rulestest.Web("172.17.0.2")}}
}

func dnat(src string, sport uint16) reconciler.Flow {
	return reconciler.Flow{Proto: "tcp", Src: a(src), SrcPort: sport, OrigDst: a("203.0.113.1"), OrigDstPort: 5432,
		ReplySrc: a("172.17.0.5"), ReplySrcPort: 80, Mark: rules.ObserveMark}
}

func TestAddCountsEachConnectionOnce(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)
	o := New(Record{}, t0)
	proxied := reconciler.Flow{Proto: "tcp", Src: a("2001:db8::7"), SrcPort: 50000, OrigDst: a("2001:db8::1"), OrigDstPort: 5432,
		ReplySrc: a("2001:db8::1"), ReplySrcPort: 5432}
	stray := reconciler.Flow{Proto: "tcp", Src: a("198.51.100.9"), OrigDst: a("203.0.113.1"), OrigDstPort: 9999, ReplySrc: a("172.17.0.9"), ReplySrcPort: 80}
	n, fresh := o.Add([]reconciler.Flow{dnat("198.51.100.5", 40000), proxied, stray}, snap(), t0)
	if n != 2 || len(fresh) != 2 {
		t.Fatalf("first poll: %d connections, fresh %v", n, fresh)
	}
	// The same entries again, and one new connection of a known source.
	n, fresh = o.Add([]reconciler.Flow{dnat("198.51.100.5", 40000), proxied, dnat("198.51.100.5", 40001)}, snap(), t0.Add(time.Minute))
	if n != 1 || len(fresh) != 0 {
		t.Fatalf("second poll: %d connections, fresh %v", n, fresh)
	}
	if len(o.Rec.Ports) != 1 || o.Rec.Ports[0].Service != "shop/db" || o.Rec.Ports[0].Port != 5432 {
		t.Fatalf("record: %+v", o.Rec.Ports)
	}
	s := o.Rec.Ports[0].Sources
	if s["198.51.100.5"].Count != 2 || s["2001:db8::7"].Count != 1 || !s["198.51.100.5"].Last.Equal(t0.Add(time.Minute)) {
		t.Errorf("sources: %+v %+v", s["198.51.100.5"], s["2001:db8::7"])
	}
}

// The suggestion is a valid config; enforcing it opens the port to the
// sources observed, and to no other.
func TestSuggestKeepsExactlyWhatWasSeen(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)
	o := New(Record{}, t0)
	o.Add([]reconciler.Flow{dnat("198.51.100.5", 1), dnat("198.51.100.6", 2), dnat("198.51.100.7", 3), dnat("203.0.113.9", 4)}, snap(), t0)
	var b strings.Builder
	if err := WriteConfig(&b, o.Rec); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("the suggestion does not parse: %v\n%s", err, b.String())
	}
	res := policy.Build(cfg, snap(), rules.IPv4, policy.Options{})
	var db rules.Decision
	for _, d := range res.Decisions() {
		if d.Container == "db" {
			db = d
		}
	}
	open := func(src string) bool {
		return db.Open && (db.Sources.Any || slices.ContainsFunc(db.Sources.Prefixes, func(p netip.Prefix) bool { return p.Contains(a(src)) }))
	}
	for src, want := range map[string]bool{"198.51.100.5": true, "198.51.100.77": true, "203.0.113.9": true, "203.0.113.10": false, "192.0.2.1": false} {
		if open(src) != want {
			t.Errorf("%s: open %v, want %v (decision %+v)", src, open(src), want, db)
		}
	}
	b.Reset()
	if err := WriteLabels(&b, o.Rec); err != nil || !strings.Contains(b.String(), `dockmoat.allow.5432/tcp: "198.51.100.0/24, 203.0.113.9"`) {
		t.Errorf("labels (%v):\n%s", err, b.String())
	}
}

func TestCollapse(t *testing.T) {
	got := Collapse([]netip.Addr{a("192.0.2.1"), a("192.0.2.2"), a("198.51.100.1"), a("198.51.100.2"), a("198.51.100.3"),
		a("2001:db8::1"), a("2001:db8::2"), a("2001:db8:1::1")})
	var s []string
	for _, p := range got {
		s = append(s, p.String())
	}
	want := "192.0.2.1/32 192.0.2.2/32 198.51.100.0/24 2001:db8::/64 2001:db8:1::1/128"
	if strings.Join(s, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(s, " "), want)
	}
}
