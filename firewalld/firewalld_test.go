package firewalld

import (
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestReasonOf(t *testing.T) {
	for _, tc := range []struct {
		s    *dbus.Signal
		want string
	}{
		{&dbus.Signal{Name: Name + ".Reloaded"}, "firewalld reloaded"},
		{&dbus.Signal{Name: "org.freedesktop.DBus.NameOwnerChanged", Body: []any{Name, "", ":1.7"}}, "firewalld started"},
		{&dbus.Signal{Name: "org.freedesktop.DBus.NameOwnerChanged", Body: []any{Name, ":1.7", ""}}, "firewalld stopped"},
		{&dbus.Signal{Name: Name + ".zone.ZoneChanged"}, ""},
	} {
		if got := reasonOf(tc.s); got != tc.want {
			t.Errorf("%s %v: got %q, want %q", tc.s.Name, tc.s.Body, got, tc.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	st := State{Version: "1.3.3", Backend: "nftables", DefaultZone: "public",
		Zones: map[string][]string{"docker": {"br-1", "docker0"}, "public": {"eth0"}}}
	got := strings.Join(st.Describe(), "\n")
	for _, want := range []string{"firewalld 1.3.3 runs (backend nftables, default zone public)", "zone docker filters what arrives on br-1, docker0",
		"zone public filters what arrives on eth0", "no StrictForwardPorts setting"} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
	st.StrictForwardPorts = "yes"
	if !strings.Contains(strings.Join(st.Describe(), "\n"), "StrictForwardPorts=yes") {
		t.Error("StrictForwardPorts not told")
	}
}
