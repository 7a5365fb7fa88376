package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseEgressDest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"203.0.113.10", "203.0.113.10"},
		{"203.0.113.10:53", "203.0.113.10:53"},
		{"203.0.113.10:53/udp", "203.0.113.10:53/udp"},
		{"10.1.2.3/8:1000-2000/TCP", "10.0.0.0/8:1000-2000/tcp"},
		{"10.0.0.0/8/udp", "10.0.0.0/8/udp"},
		{" 0.0.0.0/0:443 ", "0.0.0.0/0:443"},
		{"2001:db8::1", "2001:db8::1"},
		{"2001:db8::/32:443/tcp", "[2001:db8::/32]:443/tcp"},
		{"[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"[2001:db8::/48]", "2001:db8::/48"},
		{"::ffff:192.0.2.1:80", ""}, // ambiguous without brackets: an error
	} {
		d, err := ParseEgressDest(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: want an error, got %s", tc.in, d)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if d.String() != tc.want {
			t.Errorf("%q: got %s, want %s", tc.in, d, tc.want)
		}
		back, err := ParseEgressDest(d.String())
		if err != nil || back != d {
			t.Errorf("%q: String %q does not parse back (%v)", tc.in, d, err)
		}
	}
	for _, bad := range []string{"", "example.com", "10.0.0.0/33", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:9-3", "[2001:db8::1", "10.0.0.0/8x", "1.2.3.4:53/icmp"} {
		if d, err := ParseEgressDest(bad); err == nil {
			t.Errorf("%q: want an error, got %s", bad, d)
		}
	}
}

func TestEgressDestAllows(t *testing.T) {
	d, _ := ParseEgressDest("10.0.0.0/8:5432/tcp")
	all, _ := ParseEgressDest("192.0.2.0/24")
	both, _ := ParseEgressDest("192.0.2.1:53")
	for _, tc := range []struct {
		d     EgressDest
		dst   string
		port  uint16
		proto string
		want  bool
	}{
		{d, "10.9.9.9", 5432, "tcp", true},
		{d, "10.9.9.9", 5432, "udp", false},
		{d, "10.9.9.9", 5433, "tcp", false},
		{d, "11.0.0.1", 5432, "tcp", false},
		{all, "192.0.2.7", 1, "icmp", true},
		{both, "192.0.2.1", 53, "udp", true},
		{both, "192.0.2.1", 53, "tcp", true},
		{both, "192.0.2.1", 0, "icmp", false},
	} {
		if got := tc.d.Allows(mustAddr(tc.dst), tc.port, tc.proto); got != tc.want {
			t.Errorf("%s allows %s %d/%s = %v", tc.d, tc.dst, tc.port, tc.proto, got)
		}
	}
}

func TestParseEgressFile(t *testing.T) {
	cfg, err := Parse([]byte(`
egress:
  - container: "worker-*"
    allow: ["10.0.0.0/8:5432/tcp", "[2001:db8::1]:443"]
  - service: shop/*
    policy: deny
egress_dns: [192.0.2.53]
`))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Egress.Rules); n != 2 || !cfg.Egress.Rules[0].Deny || len(cfg.Egress.Rules[0].Allow) != 2 || !cfg.Egress.Rules[1].Deny {
		t.Fatalf("rules: %+v", cfg.Egress.Rules)
	}
	if !cfg.Egress.Rules[0].Matches("worker-1", nil) || cfg.Egress.Rules[0].Matches("web", nil) {
		t.Error("container glob")
	}
	if len(cfg.Egress.DNS) != 1 || cfg.Egress.DNS[0].String() != "192.0.2.53" {
		t.Errorf("dns: %v", cfg.Egress.DNS)
	}
	for _, tc := range []struct{ doc, want string }{
		{"egress: [{allow: [10.0.0.1]}]", "needs container"},
		{"egress: [{container: a, policy: maybe}]", "not one of deny, allow"},
		{"egress: [{container: a, policy: allow, allow: [10.0.0.1]}]", "needs policy deny"},
		{"egress: [{container: a, allow: [example.com]}]", "egress[0]: allow: destination"},
		{"egress_dns: [resolver]", "egress_dns[0]"},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
