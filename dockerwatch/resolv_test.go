package dockerwatch

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHostResolvers(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(p, []byte("# generated\nsearch example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver 192.0.2.53\noptions ndots:0\nnameserver bogus\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := HostResolvers(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].String() != "192.0.2.53" || got[1].String() != "2001:db8::53" || got[2].String() != "fe80::1" {
		t.Errorf("got %v", got)
	}
	if _, err := HostResolvers(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file must be an error, not \"no resolvers\"")
	}
}
