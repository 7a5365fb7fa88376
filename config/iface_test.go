package config

import (
	"slices"
	"strings"
	"testing"
)

// iface:NAME is a source wherever one is written; a trailing * is the
// only pattern, and anything else is refused, not widened.
func TestIfaceSources(t *testing.T) {
	srcs, err := ParseSources("iface:wg0, 198.51.100.0/24, iface:tailscale*, iface:wg0")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(srcs.Ifaces, []string{"tailscale*", "wg0"}) || len(srcs.Prefixes) != 1 || srcs.Any {
		t.Errorf("ParseSources = %+v", srcs)
	}
	if only, err := ParseSources("iface:wg0"); err != nil || len(only.Ifaces) != 1 || only.Any || len(only.Prefixes) != 0 {
		t.Errorf("an interface alone: %+v, %v", only, err)
	}
	if all, _ := ParseSources("iface:wg0, any"); !all.Any || all.Ifaces != nil {
		t.Errorf("any wins: %+v", all)
	}
	for _, bad := range []string{"iface:", "iface:*", "iface:w*g", "iface:wg+", "iface:eth0;reboot", "iface:abcdefghijklmnop", `iface:"wg0"`} {
		if _, err := ParseSources(bad); err == nil || !strings.Contains(err.Error(), "iface:NAME") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{{"wg0", "wg0", true}, {"wg0", "wg01", false}, {"wg*", "wg01", true}, {"wg*", "eth0", false}, {"wg*", "wg", true}} {
		if IfaceMatches(c.pattern, c.name) != c.want {
			t.Errorf("IfaceMatches(%q, %q) != %v", c.pattern, c.name, c.want)
		}
	}
	u := Sources{Ifaces: []string{"wg0"}}.Union(Sources{Prefixes: srcs.Prefixes, Ifaces: []string{"tun*", "wg0"}})
	if !slices.Equal(u.Ifaces, []string{"tun*", "wg0"}) || len(u.Prefixes) != 1 {
		t.Errorf("Union = %+v", u)
	}
}

func TestIfaceInConfig(t *testing.T) {
	cfg, err := Parse([]byte(`
trusted_sources: [10.0.0.0/8, "iface:wg*"]
deny_sources: ["iface:eth9"]
allow:
  - container: web
    ports: [8080]
    from: ["iface:tailscale0", 192.0.2.1]
`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.TrustedIfaces, []string{"wg*"}) || len(cfg.TrustedSources) != 1 || !slices.Equal(cfg.DenyIfaces, []string{"eth9"}) || len(cfg.DenySources) != 0 {
		t.Errorf("trusted %v %v, deny %v %v", cfg.TrustedSources, cfg.TrustedIfaces, cfg.DenySources, cfg.DenyIfaces)
	}
	if from := cfg.Allow[0].From; !slices.Equal(from.Ifaces, []string{"tailscale0"}) || len(from.Prefixes) != 1 {
		t.Errorf("from = %+v", from)
	}
	_, err = Parse([]byte("trusted_sources: [\"iface:w*0\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "trusted_sources[0]") {
		t.Errorf("a bad interface in trusted_sources: %v", err)
	}
}
