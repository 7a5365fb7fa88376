package firewalld

import (
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestEvents(t *testing.T) {
	const fw, other = ":1.7", ":1.99"
	reloaded := func(sender string) *dbus.Signal {
		return &dbus.Signal{Sender: sender, Name: Name + ".Reloaded"}
	}
	owner := func(sender, name, newOwner string) *dbus.Signal {
		return &dbus.Signal{Sender: sender, Name: busName + ".NameOwnerChanged", Body: []any{name, "", newOwner}}
	}
	ev := events{owner: fw}
	for _, tc := range []struct {
		s     *dbus.Signal
		want  string
		owner string
	}{
		{reloaded(fw), "firewalld reloaded", fw},
		{reloaded(other), "", fw}, // forged by another process
		{&dbus.Signal{Sender: fw, Name: Name + ".zone.ZoneChanged"}, "", fw},
		{owner(other, Name, other), "", fw}, // forged NameOwnerChanged
		{owner(busName, "org.example.Other", other), "", fw},
		{owner(busName, Name, ""), "firewalld stopped", ""},
		{reloaded(fw), "", ""}, // the old owner is gone
		{owner(busName, Name, ":1.8"), "firewalld started", ":1.8"},
		{reloaded(":1.8"), "firewalld reloaded", ":1.8"},
	} {
		if got := ev.reason(tc.s); got != tc.want || ev.owner != tc.owner {
			t.Errorf("%s from %s %v: got %q (owner %q), want %q (owner %q)", tc.s.Name, tc.s.Sender, tc.s.Body, got, ev.owner, tc.want, tc.owner)
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
