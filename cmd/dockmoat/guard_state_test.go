package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/dockmoat/dockmoat/rules"
)

// The published ports the daemon records after a pass are what the guard
// reads at the next boot, per family; a damaged record is an error (the
// guard then closes the DNAT path only, and says so), a missing one none.
func TestLastPublished(t *testing.T) {
	dir := t.TempDir()
	st := daemonStatus{Families: []familyStatus{
		{Family: rules.IPv4.String(), Published: []publishedRun{{Proto: "tcp", Lo: 8080, Hi: 8082}, {Proto: "udp", Lo: 53, Hi: 53, Host: "192.0.2.1"}}},
		{Family: rules.IPv6.String(), Published: []publishedRun{{Proto: "tcp", Lo: 443, Hi: 443}}},
	}}
	if err := writeStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	got, err := lastPublished(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0]) != 2 || got[0][0].Lo != 8080 || got[0][0].Hi != 8082 || got[0][1].HostIP != netip.MustParseAddr("192.0.2.1") ||
		len(got[1]) != 1 || got[1][0].Proto != "tcp" || got[1][0].Lo != 443 {
		t.Errorf("read back %+v", got)
	}
	st.Families[1].Published[0].Proto = "tcp -j ACCEPT"
	if err := writeStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	if _, err := lastPublished(dir); err == nil {
		t.Error("a damaged record must not reach the rules")
	}
	if got, err := lastPublished(filepath.Join(dir, "none")); !os.IsNotExist(err) || len(got[0])+len(got[1]) != 0 {
		t.Errorf("missing: %v %v", got, err)
	}
}
