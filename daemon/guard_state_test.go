package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// The published ports the daemon records after a pass are what the guard
// reads at the next boot, per family; a damaged record is an error (the
// guard then closes the DNAT path only, and says so), a missing one none.
func TestLastPublished(t *testing.T) {
	dir := t.TempDir()
	pass := netfilter.SyncResult{Plans: []netfilter.FamilyPlan{
		{Family: rules.IPv4, Result: policy.Result{Input: policy.InputPath{All: []policy.PortRun{
			{PortRange: policy.PortRange{Proto: "tcp", Lo: 8080, Hi: 8082}, Containers: []string{"a"}},
			{HostIP: netip.MustParseAddr("192.0.2.1"), PortRange: policy.PortRange{Proto: "udp", Lo: 53, Hi: 53}}}}}},
		{Family: rules.IPv6, Result: policy.Result{Input: policy.InputPath{All: []policy.PortRun{{PortRange: policy.PortRange{Proto: "tcp", Lo: 443, Hi: 443}}}}}},
		{Family: rules.IPv4, Layer: true, Result: policy.Result{Input: policy.InputPath{All: []policy.PortRun{{PortRange: policy.PortRange{Proto: "tcp", Lo: 9, Hi: 9}}}}}},
	}}
	write := publishedWriter(dir, logrus.New())
	write(pass, nil, 0)
	file := filepath.Join(dir, publishedFile)
	first, _ := os.Stat(file)
	// The same ports again: nothing written (a pass that only moved a
	// container costs no file).
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	write(pass, nil, 0)
	if _, err := os.Stat(file); err == nil || first == nil {
		t.Fatalf("record rewritten though the ports did not change (or never written: %v)", first)
	}
	write = publishedWriter(dir, logrus.New())
	write(pass, nil, 0)
	got, err := LastPublished(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0]) != 2 || got[0][0].Lo != 8080 || got[0][0].Hi != 8082 || got[0][1].HostIP != netip.MustParseAddr("192.0.2.1") ||
		len(got[1]) != 1 || got[1][0].Proto != "tcp" || got[1][0].Lo != 443 {
		t.Errorf("read back %+v", got)
	}
	if err := writeJSONFile(dir, publishedFile, publishedRecord{IPv6: []publishedRun{{Proto: "tcp -j ACCEPT", Lo: 1, Hi: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := LastPublished(dir); err == nil {
		t.Error("a damaged record must not reach the rules")
	}
	if got, err := LastPublished(filepath.Join(dir, "none")); !os.IsNotExist(err) || len(got[0])+len(got[1]) != 0 {
		t.Errorf("missing: %v %v", got, err)
	}
}
