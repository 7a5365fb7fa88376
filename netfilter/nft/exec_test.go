package nft

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/netfilter"
)

// fakeBin writes an nft look-alike: `-j list table inet dockmoat` and
// `-j list ruleset` print a listing, other tables do not exist (nft's
// own words), and `-f -` keeps the script it reads, or refuses one that
// says "refuse" as nft refuses a bad script.
func fakeBin(t *testing.T) (bin, applied string) {
	t.Helper()
	dir := t.TempDir()
	applied = filepath.Join(dir, "applied.nft")
	listing := `{"nftables": [{"table": {"family": "inet", "name": "dockmoat"}},` +
		`{"chain": {"family": "inet", "table": "dockmoat", "name": "forward", "type": "filter", "hook": "forward", "prio": -5, "policy": "accept"}},` +
		`{"rule": {"family": "inet", "table": "dockmoat", "chain": "forward", "comment": "dockmoat:0123456789abcdef x", "expr": [{"accept": null}]}},` +
		`{"chain": {"family": "inet", "table": "dockmoat", "name": "ingress"}},` +
		`{"rule": {"family": "inet", "table": "dockmoat", "chain": "ingress", "comment": "dockmoat:0123456789abcdef rate limit 8080/tcp, beyond 3/hour burst 3 per source, of web",` +
		` "expr": [{"counter": {"packets": 4, "bytes": 240}}, {"drop": null}]}}]}`
	script := `#!/bin/sh
case "$*" in
"-j list table inet dockmoat"|"-j list ruleset") cat <<'JSON'
` + listing + `
JSON
;;
"-j list table "*) echo "Error: No such file or directory; did you mean table ..." >&2; exit 1 ;;
"-f -") cat > ` + applied + `; if grep -q refuse ` + applied + `; then echo "Error: syntax error" >&2; exit 1; fi ;;
*) echo "unexpected: $*" >&2; exit 2 ;;
esac
`
	bin = filepath.Join(dir, "nft")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, applied
}

func TestExec(t *testing.T) {
	bin, applied := fakeBin(t)
	e := Exec{Bin: bin}
	ctx := context.Background()
	l, err := e.List(ctx)
	if err != nil || !l.Exists() || len(l.Chains["forward"]) != 1 || l.Chains["forward"][0] != "0123456789abcdef" {
		t.Fatalf("List: %+v, %v", l, err)
	}
	if l, err := (Exec{Bin: bin, BridgeOnly: true}).List(ctx); err != nil || l.Exists() {
		t.Errorf("a missing bridge table is no table: %+v, %v", l, err)
	}
	if err := e.Apply(ctx, "table inet dockmoat {}\n"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(applied); string(got) != "table inet dockmoat {}\n" {
		t.Errorf("the script nft read: %q", got)
	}
	err = e.Apply(ctx, "refuse\n")
	var re *netfilter.RestoreError
	if !errors.As(err, &re) || !strings.Contains(re.Stderr, "syntax error") || re.Input != "refuse\n" {
		t.Errorf("a refused script: %v", err)
	}
	if rs, err := e.ListRuleset(ctx); err != nil || rs.Chain("inet", "dockmoat", "forward") == nil {
		t.Errorf("ListRuleset: %v", err)
	}
	// The meter rule's counter is what /metrics reports as refusals.
	refusals, err := New(e, nil).LimitRefusals(ctx)
	if err != nil || len(refusals) != 1 || refusals[0].Packets != 4 {
		t.Errorf("LimitRefusals: %+v, %v", refusals, err)
	}
	if _, err := (Exec{Bin: filepath.Join(t.TempDir(), "missing")}).List(ctx); err == nil {
		t.Error("no nft binary: want an error")
	}
}
